"""RetNet (Sun et al. 2023): multi-scale retention on the shared linear-attention backbone (Table 1 baseline).

Layout of flash-linear-attention's ``layers/multiscale_retention.py`` (the library the paper trained it with),
per block ``x += out(GatedHeadNorm(retention(x), g_proj(x))); x += SwiGLU(x)`` (pre-RMSNorm, see
``linear_attention``). With H heads, DK = D * expand_k / H, DV = D * expand_v / H:

    q, k = RoPE(q_proj(x)), RoPE(k_proj(x))      (B, H, S, DK), rotary at absolute positions (``transformer.rotary``)
    v = v_proj(x)                                (B, H, S, DV)
    S_t = gamma_h S_{t-1} + k_t^T v_t,   o_t = DK^-0.5 q_t S_t       gamma_h = 1 - 2^(-5 - h), h = 0..H-1 (fixed)
    y = out(RMSNorm_head(o) * swish(g_proj(x)))  (B, S, D)

i.e. the parallel form o = ((q k^T) * Dmask) v with Dmask[t, s] = gamma^(t - s) for s <= t. The recurrence is the
scalar-decay case of ``kernels.gla`` (log_decay (H,) = log gamma_h, computed, not a parameter) run through ``run_gla``; the state
is (positions so far, gla state (B, H, DK, DV)), so RoPE continues at the right positions.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kernels.gla.recurrent import compute_dtype

from .linear_attention import GatedOutputMixer, LinearAttentionBackbone, LinearAttentionConfig, run_gla
from .transformer import rotary
from ..config import require


@dataclass
class RetNetConfig(LinearAttentionConfig):
    name: str = "retnet"
    num_heads: int = 8  # flash-linear-attention's RetNet default
    expand_k: float = 1.0
    expand_v: float = 1.0  # Table 1's count (431M) needs 1; flash-linear-attention's layer default is 2 (README)
    rope_base: float = 10000.0

    def check(self) -> None:
        super().check()
        for key in ("expand_k", "expand_v", "rope_base"):
            require(getattr(self, key) > 0, key, "> 0", getattr(self, key))


class MultiScaleRetention(GatedOutputMixer):
    """(x (B, S, D), state (positions so far, gla state (B, H, DK, DV)) or None) -> (y (B, S, D), state)."""

    def __init__(self, config: RetNetConfig):
        super().__init__(config)
        if self.head_k % 2:  # rotate-half RoPE pairs the two halves of each head's key channels
            raise ValueError(f"RetNet's RoPE needs an even key size per head, got embedding_dim * expand_k / "
                             f"num_heads = {self.key_dim} / {self.num_heads} = {self.head_k}")

    def log_decay(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """log gamma_h (H,), fixed, not trained: head h keeps ~2^(5 + h) positions (32 .. 4096 at H = 8). Computed
        in the recurrence's dtype at each call, so casting the model (bf16, float64) never rounds the decays."""
        return torch.log1p(-(2.0 ** (-5.0 - torch.arange(self.num_heads, dtype=dtype, device=device))))

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        start, gla_state = (0, None) if state is None else state
        q, k, v = self.qkv(x)  # (B, H, S, DK), (B, H, S, DK), (B, H, S, DV)
        q, k = (rotary(t, start, self.config.rope_base) for t in (q, k))
        log_decay = self.log_decay(compute_dtype(x.dtype), x.device)
        o, gla_state = run_gla(self.config, q, k, v, log_decay, gla_state, scale=self.head_k ** -0.5)
        return self.output(o, x), (start + x.shape[1], gla_state)


class RetNet(LinearAttentionBackbone):
    config_class = RetNetConfig

    def make_mixer(self, layer: int) -> nn.Module:
        return MultiScaleRetention(self.config)
