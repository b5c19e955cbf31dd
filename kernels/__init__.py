"""Sequence-mixing ops with every form side by side: ``kernels.mlstm.mlstm`` and ``kernels.slstm.slstm``."""
from .mlstm import mlstm
from .slstm import slstm

__all__ = ["mlstm", "slstm"]
