"""Model configurations shared by every registered model.

Each model family has one dataclass that extends ``BackboneConfig``. The same dataclasses are the Hydra schemas
of ``configs/model/*.yaml`` (registered by ``experiments.schema``), so a misspelled key or a value of the wrong
type fails when the config is composed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


SLSTM_BIAS_INITS = ("powerlaw_blockdependent", "small_init", "zeros", "standard")  # the official code's options
SLSTM_RECURRENT_INITS = ("zeros", "standard")
STABILIZERS, NORMALIZERS = ("max", "none"), ("max", "abs", "one")  # kernels.mlstm.variants (no torch import here)
GATE_ACTIVATIONS = ("exp", "sigmoid")


def require(condition: bool, key: str, rule: str, value) -> None:
    """Raise the one-line error of a config value a run cannot use, naming the key (relative to the model)."""
    if not condition:
        raise ValueError(f"{key} must be {rule}, got {value!r}")


@dataclass
class BackboneConfig:
    """Fields every model has, so that experiment grids can set them for any model.

    name: the registry key (``xlstm.MODELS``), e.g. "lstm", "llama", "xlstm_1_0".
    embedding_dim: the residual width D of the backbone ``(B, S, D) -> (B, S, D)``.
    num_blocks: residual blocks (layers for the plain LSTM).
    num_heads: heads of the sequence mixer (attention heads, mLSTM/sLSTM heads).
    vocab_size, context_length: only used when the backbone is wrapped as a language model.
    """

    name: str = ""
    embedding_dim: int = 128
    num_blocks: int = 2
    num_heads: int = 4
    dropout: float = 0.0
    vocab_size: int = 50304
    context_length: int = 2048
    tie_embeddings: bool = False

    def check(self) -> None:
        """Values the types allow but no model can use; each model's own rules are checked when it is built."""
        for key in ("embedding_dim", "num_blocks", "num_heads", "vocab_size", "context_length"):
            require(getattr(self, key) >= 1, key, ">= 1", getattr(self, key))
        require(0.0 <= self.dropout < 1.0, "dropout", "in [0, 1)", self.dropout)


@dataclass
class FeedForwardConfig:
    """Feed-forward settings of post-up-projection blocks (flat fields so overrides stay one key deep).

    The official xLSTM code uses a gated GeLU with factor 1.3, hidden size rounded up to a multiple of 64;
    the paper's text says 4/3 (the parameter counts confirm 1.3).
    """

    ffn_enabled: bool = True  # False: mixer-only residual blocks (Table 2 top, "+ ResNet backbone")
    ffn_proj_factor: float = 1.3
    ffn_round_to: int = 64
    ffn_act: str = "gelu"  # gelu | relu | relu2 | silu
    ffn_gated: bool = True

    def check(self) -> None:
        super().check()  # the next class in the model config's MRO (BackboneConfig)
        require(self.ffn_proj_factor > 0, "ffn_proj_factor", "> 0", self.ffn_proj_factor)
        require(self.ffn_round_to >= 1, "ffn_round_to", ">= 1", self.ffn_round_to)


@dataclass
class xLSTMConfig(FeedForwardConfig, BackboneConfig):
    """The xLSTM[a:b] stack. ``ratio`` = [a, b] is the mLSTM:sLSTM ratio; ``slstm_at`` (block indices) overrides where
    the sLSTM blocks go (None = the paper's positions, see ``xlstm.stack.slstm_positions``).

    Defaults are the paper's language-model settings (App. A/B): mLSTM in pre-up-projection blocks (factor 2, causal
    conv 4, q/k/v block size 4, 4 heads), sLSTM in post-up-projection blocks (conv 4, 4 heads, gated GeLU FFN 1.3).
    """

    name: str = "xlstm_1_0"
    num_heads: int = 4
    ratio: list[int] = field(default_factory=lambda: [1, 0])  # [mLSTM, sLSTM] blocks: the a:b of xLSTM[a:b]
    slstm_at: Optional[list[int]] = None
    # mLSTM block
    mlstm_block: str = "pre_up"  # pre_up (paper default) | post_up (Table 8: mLSTM mixer + FFN, no up-projection)
    mlstm_proj_factor: float = 2.0
    mlstm_proj_round_to: int = 64  # inner width = proj_factor * D rounded up to a multiple of this (official code)
    mlstm_conv_kernel: int = 4  # 0 = no convolution (Table 8)
    mlstm_qkv_block_size: int = 4
    mlstm_backend: str = "auto"  # see kernels.mlstm.BACKENDS; "variant--torch" = the switchable form below
    mlstm_chunk_size: int = 64
    mlstm_eps: float = 1e-6
    # memory ablations (kernels.mlstm.variants): stabilizer max | none; normalizer max (paper) | abs | one.
    # Off their defaults they run the switchable parallel form, O(S^2), in the run's own precision.
    mlstm_stabilizer: str = "max"
    mlstm_normalizer: str = "max"
    # mLSTM gates (Table 2, bottom): bias init "linspace(a,b)", "normal(mean,std)", "constant(v)" or "inf"
    mlstm_igate_activation: str = "exp"  # exp | sigmoid
    mlstm_igate_input_dependent: bool = True
    mlstm_igate_learnable_bias: bool = True
    mlstm_igate_bias_init: str = "normal(0,0.1)"
    mlstm_fgate_input_dependent: bool = True
    mlstm_fgate_learnable_bias: bool = True
    mlstm_fgate_bias_init: str = "linspace(3,6)"
    # sLSTM block
    slstm_num_heads: Optional[int] = None  # None = num_heads
    slstm_conv_kernel: int = 4  # 0 = no convolution (the paper's synthetic tasks)
    slstm_backend: str = "auto"  # see kernels.slstm.BACKENDS
    slstm_recurrent_init: str = "zeros"  # zeros | standard (U(+-1/sqrt(D)))
    slstm_bias_init: str = "powerlaw_blockdependent"  # | small_init | zeros | standard (see xlstm.slstm_layer)
    slstm_recurrent_grad_clip: Optional[float] = None  # the paper clips the recurrent gradient at 10
    slstm_igate_activation: str = "exp"  # exp | sigmoid (inside the recurrence; the torch backend)
    slstm_memory_mixing: bool = True  # False: no recurrent weights (R fixed at 0, not a parameter)

    def check(self) -> None:
        super().check()
        require(len(self.ratio) == 2 and min(self.ratio) >= 0 and max(self.ratio) >= 1, "ratio",
                "[a, b] with a, b >= 0, not both 0", list(self.ratio))
        require(self.mlstm_proj_round_to >= 1, "mlstm_proj_round_to", ">= 1", self.mlstm_proj_round_to)
        require(self.mlstm_chunk_size >= 1, "mlstm_chunk_size", ">= 1", self.mlstm_chunk_size)
        require(self.mlstm_qkv_block_size >= 1, "mlstm_qkv_block_size", ">= 1", self.mlstm_qkv_block_size)
        require(self.slstm_bias_init in SLSTM_BIAS_INITS, "slstm_bias_init", " | ".join(SLSTM_BIAS_INITS),
                self.slstm_bias_init)
        require(self.slstm_recurrent_init in SLSTM_RECURRENT_INITS, "slstm_recurrent_init",
                " | ".join(SLSTM_RECURRENT_INITS), self.slstm_recurrent_init)
        for key, valid in (("mlstm_stabilizer", STABILIZERS), ("mlstm_normalizer", NORMALIZERS),
                           ("mlstm_igate_activation", GATE_ACTIVATIONS), ("slstm_igate_activation", GATE_ACTIVATIONS)):
            require(getattr(self, key) in valid, key, " | ".join(valid), getattr(self, key))
        require(self.mlstm_conv_kernel >= 0 and self.slstm_conv_kernel >= 0, "mlstm_conv_kernel/slstm_conv_kernel",
                ">= 0", (self.mlstm_conv_kernel, self.slstm_conv_kernel))
