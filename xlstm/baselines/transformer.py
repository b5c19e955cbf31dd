"""Transformer baselines: Llama (pre-RMSNorm, RoPE, SwiGLU) and GPT-3 (learned positions, LayerNorm, GeLU MLP,
tied embeddings). Causal attention runs through torch's scaled_dot_product_attention (flash on GPU); decoding
keeps a KV cache per layer, so ``step`` costs O(cache length) per token.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import Backbone
from ..components import PreNormBlock, ResidualStack, SwiGLU, gpt2_init_
from ..config import BackboneConfig
from ..sizes import llama_mlp_hidden


@dataclass
class LlamaConfig(BackboneConfig):
    name: str = "llama"
    num_heads: int = 4
    mlp_hidden: Optional[int] = None  # None: 8/3 D rounded up to a multiple of 64
    rope_base: float = 10000.0
    norm_eps: float = 1e-5


@dataclass
class GPT3Config(BackboneConfig):
    name: str = "gpt3"
    num_heads: int = 4
    tie_embeddings: bool = True  # the only tied model of Table 1
    mlp_factor: int = 4


def rotary(x: torch.Tensor, start: int, base: float) -> torch.Tensor:
    """Rotary position embedding (rotate-half form) of x (B, NH, S, DH) at positions start .. start + S - 1."""
    S, DH = x.shape[-2], x.shape[-1]
    inv_freq = base ** (-torch.arange(0, DH, 2, device=x.device, dtype=torch.float32) / DH)
    angles = torch.arange(start, start + S, device=x.device, dtype=torch.float32)[:, None] * inv_freq
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    x1, x2 = x.float().chunk(2, dim=-1)
    return (x.float() * cos + torch.cat([-x2, x1], -1) * sin).to(x.dtype)


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention with a KV cache: (x (B, S, D), cache (k, v) or None) -> (y, cache)."""

    def __init__(self, dim: int, num_heads: int, bias: bool, dropout: float, rope_base: float | None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embedding_dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads, self.rope_base, self.dropout = num_heads, rope_base, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.out = nn.Linear(dim, dim, bias=bias)

    def forward(self, x: torch.Tensor, cache: Any = None) -> tuple[torch.Tensor, Any]:
        B, S, D = x.shape
        q, k, v = (t.view(B, S, self.num_heads, -1).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
        start = 0 if cache is None else cache[0].shape[2]
        if self.rope_base is not None:
            q, k = rotary(q, start, self.rope_base), rotary(k, start, self.rope_base)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        dropout = self.dropout if self.training else 0.0
        if start == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        else:  # queries at positions start..start+S-1 see every key up to their own position
            visible = torch.ones(S, k.shape[2], dtype=torch.bool, device=x.device).tril(diagonal=start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=visible, dropout_p=dropout)
        return self.out(y.transpose(1, 2).reshape(B, S, D)), (k, v)


class _Transformer(Backbone):
    """Blocks, final norm; the state is the list of per-layer KV caches."""

    def _init_blocks(self, blocks: list[PreNormBlock], final_norm: nn.Module) -> None:
        self.stack = ResidualStack(blocks, final_norm)
        gpt2_init_(self, len(blocks))

    def _positions(self, x: torch.Tensor, start: int) -> torch.Tensor:
        return x

    def forward_state(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        start = 0 if state is None else state[0][0].shape[2]  # tokens already in the KV caches
        return self.stack(self._positions(x, start), state)


class GeLUMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.up, self.down = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x)))


class Llama(_Transformer):
    config_class = LlamaConfig

    def __init__(self, config: LlamaConfig):
        super().__init__(config)
        c, D = config, config.embedding_dim
        hidden = c.mlp_hidden or llama_mlp_hidden(D)
        self._init_blocks([
            PreNormBlock(nn.RMSNorm(D, eps=c.norm_eps), CausalSelfAttention(D, c.num_heads, False, c.dropout,
                                                                                 c.rope_base),
                              nn.RMSNorm(D, eps=c.norm_eps), SwiGLU(D, hidden), c.dropout)
            for _ in range(c.num_blocks)], nn.RMSNorm(D, eps=c.norm_eps))


class GPT3(_Transformer):
    config_class = GPT3Config

    def __init__(self, config: GPT3Config):
        super().__init__(config)
        c, D = config, config.embedding_dim
        self.position = nn.Embedding(c.context_length, D)
        self._init_blocks([
            PreNormBlock(nn.LayerNorm(D), CausalSelfAttention(D, c.num_heads, True, c.dropout, None),
                              nn.LayerNorm(D), GeLUMLP(D, c.mlp_factor * D), c.dropout)
            for _ in range(c.num_blocks)], nn.LayerNorm(D))
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)

    @property
    def max_positions(self) -> int:
        return self.config.context_length

    def _positions(self, x: torch.Tensor, start: int) -> torch.Tensor:
        end = start + x.shape[1]
        if end > self.config.context_length:
            raise ValueError(f"GPT-3 has learned positions up to context_length={self.config.context_length}; "
                             f"got position {end - 1}")
        return x + self.position(torch.arange(start, end, device=x.device))
