"""GLA (gated linear attention, Yang et al. 2024) on the shared linear-attention backbone (Table 1 baseline).

Layout of flash-linear-attention's ``layers/gla.py`` (the library the paper trained it with) with its defaults:
no short convolution, no bonus term, low-rank data-dependent vector decay. Per block
``x += out(GatedHeadNorm(gla(x), g_proj(x))); x += SwiGLU(x)`` (pre-RMSNorm, see ``linear_attention``). With H
heads, DK = D * expand_k / H, DV = D * expand_v / H:

    q, k = q_proj(x), k_proj(x)                           (B, H, S, DK)
    v = v_proj(x)                                         (B, H, S, DV)
    gk = logsigmoid(W2 W1 x + b2) / gate_logit_normalizer (B, H, S, DK), W1: D -> r (no bias), W2: r -> D * expand_k
    S_t = Diag(exp(gk_t)) S_{t-1} + k_t^T v_t,   o_t = DK^-0.5 q_t S_t
    y = out(RMSNorm_head(o) * swish(g_proj(x)))           (B, S, D)

The normalizer (16) keeps the decays near 1 (exp(logsigmoid(0) / 16) = 0.958 at init, b2 = 0 as in
flash-linear-attention's zero bias init). The recurrence is the vector-decay case of ``kernels.gla`` run through
``run_gla``; the state is the gla state (B, H, DK, DV).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .linear_attention import GatedOutputMixer, LinearAttentionBackbone, LinearAttentionConfig, run_gla, split_heads
from ..config import require


@dataclass
class GLAConfig(LinearAttentionConfig):
    name: str = "gla"
    num_heads: int = 4  # the paper's GLA runs (and flash-linear-attention's default)
    expand_k: float = 0.5
    expand_v: float = 1.0
    gate_low_rank_dim: int = 16
    gate_logit_normalizer: float = 16.0

    def check(self) -> None:
        super().check()
        for key in ("expand_k", "expand_v", "gate_logit_normalizer"):
            require(getattr(self, key) > 0, key, "> 0", getattr(self, key))
        require(self.gate_low_rank_dim >= 1, "gate_low_rank_dim", ">= 1", self.gate_low_rank_dim)


class GatedLinearAttention(GatedOutputMixer):
    """(x (B, S, D), state (B, H, DK, DV) or None) -> (y (B, S, D), state)."""

    def __init__(self, config: GLAConfig):
        super().__init__(config)
        self.gk_proj = nn.Sequential(nn.Linear(config.embedding_dim, config.gate_low_rank_dim, bias=False),
                                     nn.Linear(config.gate_low_rank_dim, self.key_dim, bias=True))

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        H = self.num_heads
        q, k, v = self.qkv(x)  # (B, H, S, DK), (B, H, S, DK), (B, H, S, DV)
        # log decays in float32 at least (bf16 would round them to 3 digits); the op computes in float32 anyway
        logits = self.gk_proj(x)
        gk = F.logsigmoid(logits.to(torch.promote_types(logits.dtype, torch.float32)))
        gk = split_heads(gk / self.config.gate_logit_normalizer, H)  # (B, H, S, DK), <= 0
        o, state = run_gla(self.config, q, k, v, gk, state, scale=self.head_k ** -0.5)
        return self.output(o, x), state


class GLA(LinearAttentionBackbone):
    config_class = GLAConfig

    def reset_mixer_parameters(self) -> None:
        for block in self.stack.blocks:  # the decay bias starts at 0 (decay 0.958 per step before W2 W1 x)
            nn.init.zeros_(block.mixer.gk_proj[1].bias)

    def make_mixer(self, layer: int) -> nn.Module:
        return GatedLinearAttention(self.config)
