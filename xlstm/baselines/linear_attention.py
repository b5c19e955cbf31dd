"""The backbone shared by the flash-linear-attention family of baselines (RetNet, GLA, HGRN, HGRN2).

Layout (flash-linear-attention's ``models/<name>``, which the paper's RetNet/GLA/HGRN/HGRN2 runs used):
pre-RMSNorm residual blocks ``x += mixer(RMSNorm(x)); x += SwiGLU(RMSNorm(x))`` with the SwiGLU hidden size
``round_up(D * hidden_ratio * 2/3, 256)`` (2048 at D = 768, 2816 at D = 1024), a final RMSNorm, and GPT-2's
init (normal std 0.02; each block's two residual output projections, ``mixer.out`` and ``mlp.down``, scaled by
1 / sqrt(2 L)). Each model supplies only its mixer ``(x (B, S, D), state) -> (y, state)`` through ``make_mixer``.

``GatedHeadNorm`` is the output path of RetNet and GLA: RMSNorm over each head's channels (one weight of the head
size, shared by the heads) times swish(gate).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from kernels.gla import gla

from ..backbone import Backbone
from ..components import PreNormBlock, ResidualStack, SwiGLU, gpt2_init_
from ..config import BackboneConfig, require


def swiglu_hidden(dim: int, hidden_ratio: float = 4.0, multiple: int = 256) -> int:
    """SwiGLU hidden size with the parameters of a ``hidden_ratio`` x MLP: D * ratio * 2/3, rounded up."""
    return int(math.ceil(int(dim * hidden_ratio * 2 / 3) / multiple) * multiple)


@dataclass
class LinearAttentionConfig(BackboneConfig):
    """Fields every flash-linear-attention-style model has; the models add their mixer's."""

    hidden_ratio: float = 4.0  # SwiGLU width, see swiglu_hidden
    mlp_hidden: Optional[int] = None  # an explicit SwiGLU width (None: swiglu_hidden(D, hidden_ratio))
    norm_eps: float = 1e-6
    gla_backend: str = "auto"  # kernels.gla form: auto | chunkwise--torch | recurrent--torch | chunkwise--triton
    gla_chunk_size: int = 64

    def check(self) -> None:
        super().check()
        require(self.hidden_ratio > 0, "hidden_ratio", "> 0", self.hidden_ratio)
        require(self.mlp_hidden is None or self.mlp_hidden >= 1, "mlp_hidden", ">= 1 or null", self.mlp_hidden)
        require(self.gla_chunk_size >= 1, "gla_chunk_size", ">= 1", self.gla_chunk_size)


def head_split(dim: int, num_heads: int, what: str) -> int:
    """The per-head size of ``dim`` channels, or one ValueError line when they do not divide."""
    if dim % num_heads:
        raise ValueError(f"{what}={dim} must be divisible by num_heads={num_heads}")
    return dim // num_heads


def head_dims(dim: int, expand: float, num_heads: int, what: str) -> tuple[int, int]:
    """(all-head width D * expand, per-head width), or one ValueError line when it is fractional or does not split."""
    width = dim * expand
    if width != int(width):
        raise ValueError(f"embedding_dim * {what} = {dim} * {expand} = {width} must be a whole number of channels")
    return int(width), head_split(int(width), num_heads, f"embedding_dim * {what}")


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, S, H * DH) -> (B, H, S, DH)."""
    return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)


def run_gla(config: LinearAttentionConfig, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
            log_decay: torch.Tensor, state: torch.Tensor | None, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixer's recurrence through ``kernels.gla`` with the config's form: (o, last state), continuing ``state``."""
    return gla(q, k, v, log_decay, backend=config.gla_backend, chunk_size=config.gla_chunk_size,
               initial_state=state, return_last_state=True, **kwargs)


class GatedHeadNorm(nn.Module):
    """o (B, S, H, DV), gate (B, S, H * DV) -> RMSNorm_per_head(o) * swish(gate), (B, S, H * DV)."""

    def __init__(self, head_dim: int, eps: float):
        super().__init__()
        self.norm = nn.RMSNorm(head_dim, eps=eps)

    def forward(self, o: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return self.norm(o).flatten(-2) * F.silu(gate)


class GatedOutputMixer(nn.Module):
    """The projections RetNet and GLA share, none with bias: q, k (D -> D * expand_k), v and the output gate g
    (D -> D * expand_v), the gated head norm and ``out`` (D * expand_v -> D); H = num_heads heads of
    DK = D * expand_k / H and DV = D * expand_v / H. Subclasses add their decay and write ``forward``."""

    def __init__(self, config: LinearAttentionConfig):
        super().__init__()
        D, H = config.embedding_dim, config.num_heads
        self.key_dim, self.head_k = head_dims(D, config.expand_k, H, "expand_k")
        value_dim, head_v = head_dims(D, config.expand_v, H, "expand_v")
        self.config, self.num_heads = config, H
        self.q_proj, self.k_proj = nn.Linear(D, self.key_dim, bias=False), nn.Linear(D, self.key_dim, bias=False)
        self.v_proj, self.g_proj = nn.Linear(D, value_dim, bias=False), nn.Linear(D, value_dim, bias=False)
        self.norm = GatedHeadNorm(head_v, config.norm_eps)
        self.out = nn.Linear(value_dim, D, bias=False)

    def qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, S, D) -> q, k (B, H, S, DK), v (B, H, S, DV)."""
        return tuple(split_heads(proj(x), self.num_heads) for proj in (self.q_proj, self.k_proj, self.v_proj))

    def output(self, o: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """o (B, H, S, DV), the mixer's input x (B, S, D) -> out(RMSNorm_head(o) * swish(g_proj(x))), (B, S, D)."""
        return self.out(self.norm(o.transpose(1, 2), self.g_proj(x)))


class LinearAttentionBackbone(Backbone):
    """Subclasses set ``config_class`` and implement ``make_mixer(layer) -> nn.Module``."""

    def __init__(self, config: LinearAttentionConfig):
        super().__init__(config)
        D, L = config.embedding_dim, config.num_blocks
        hidden = config.mlp_hidden or swiglu_hidden(D, config.hidden_ratio)
        blocks = [PreNormBlock(nn.RMSNorm(D, eps=config.norm_eps), self.make_mixer(layer),
                               nn.RMSNorm(D, eps=config.norm_eps), SwiGLU(D, hidden), config.dropout)
                  for layer in range(L)]
        self.stack = ResidualStack(blocks, nn.RMSNorm(D, eps=config.norm_eps))
        gpt2_init_(self, L)
        self.reset_mixer_parameters()

    def make_mixer(self, layer: int) -> nn.Module:
        raise NotImplementedError

    def reset_mixer_parameters(self) -> None:
        """Model-specific inits applied after the GPT-2 init (gate biases, decay parameters)."""

    def forward_state(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        return self.stack(x, state)
