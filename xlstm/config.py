"""Model configurations shared by every registered model.

Each model family has one dataclass that extends ``BackboneConfig``. The same dataclasses are the Hydra schemas
of ``configs/model/*.yaml`` (registered by ``experiments.schema``), so a misspelled key or a value of the wrong
type fails when the config is composed.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class BackboneConfig:
    """Fields every model has, so that experiment grids can set them for any model.

    name: the registry key (``xlstm.MODELS``), e.g. "lstm", "llama", "xlstm[1:0]".
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


@dataclass
class FeedForwardConfig:
    """Feed-forward settings of post-up-projection blocks (flat fields so overrides stay one key deep).

    The official xLSTM code uses a gated GeLU with factor 1.3, hidden size rounded up to a multiple of 64;
    the paper's text says 4/3 (the parameter counts confirm 1.3).
    """

    ffn_proj_factor: float = 1.3
    ffn_round_to: int = 64
    ffn_act: str = "gelu"  # gelu | relu | relu2 | silu
    ffn_gated: bool = True
