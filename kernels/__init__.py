"""Sequence-mixing ops with every form side by side: ``kernels.mlstm.mlstm``, ``kernels.slstm.slstm`` and
``kernels.longconv.long_conv`` (the causal long convolution of H3 and Hyena)."""
from .longconv import long_conv
from .mlstm import mlstm
from .slstm import slstm

__all__ = ["long_conv", "mlstm", "slstm"]
