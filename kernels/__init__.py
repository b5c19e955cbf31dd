"""Sequence-mixing ops with every form side by side: ``kernels.mlstm.mlstm``, ``kernels.slstm.slstm`` and
``kernels.gla.gla`` (gated linear attention: RetNet, GLA, HGRN(2), RWKV-5/6) and ``kernels.longconv.long_conv`` (the
causal long convolution of H3 and Hyena)."""
from .gla import gla
from .longconv import long_conv
from .mlstm import mlstm
from .slstm import slstm

__all__ = ["gla", "long_conv", "mlstm", "slstm"]
