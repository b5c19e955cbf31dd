"""RWKV-6 "Finch" (Peng et al., 2024): RWKV-5 with a data-dependent token shift and a data-dependent decay.

Time mixing (official RWKV-LM ``RWKV_Tmix_x060``), heads of size N = D / H, xx = x_{t-1} - x_t:
    xxx = x + xx * maa_x;   (m_w, m_k, m_v, m_r, m_g) = tanh(xxx A) B      A (D, 5 R), B (5, R, D), R = 32
    x_c = x + xx * (maa_c + m_c)                                          c = w, k, v, r, g   ("ddlerp")
    r, k, v = W_r x_r, W_k x_k, W_v x_v;   g = silu(W_g x_g)
    w_t = time_decay + tanh(x_w C) E                                      C (D, 64), E (64, D)
    o_t = r_t (S_{t-1} + Diag(u) k_t^T v_t),   S_t = Diag(exp(-exp(w_t))) S_{t-1} + k_t^T v_t   per head
    y = W_o (GroupNorm_H(o / 8) * g)
The recurrence runs through ``kernels.gla`` with the data-dependent log_decay -exp(w_t) of shape (B, H, S, N).
Channel mixing: RWKV-4's with hidden F = int(3.5 D // 32 * 32) (the official x060's dim_ffn), whose (1 - mix)
equals x060's maa. Parameters per layer: 6 D^2 + 2 D F + 464 D (with R = 32 and the decay rank 64).

Inits follow the official code: maa_c = 1 - the RWKV-5 mix vectors, A and C zero, B and E uniform(-0.01, 0.01)
(so the LoRA paths start at zero but get gradients), time_decay and time_faaaa as RWKV-5. The output path, the
block and the backbone are RWKV-5's (rwkv5.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import require
from .rwkv4 import _shift
from .rwkv5 import HeadwiseTimeMix, RWKV5Config, RWKVHeadBackbone, layer_ratios


@dataclass
class RWKV6Config(RWKV5Config):
    name: str = "rwkv6"
    mix_lora_rank: int = 32  # R of the ddlerp LoRA (official D_MIX_LORA)
    decay_lora_rank: int = 64  # rank of the decay LoRA (official D_DECAY_LORA)

    def check(self) -> None:
        super().check()
        require(self.mix_lora_rank >= 1 and self.decay_lora_rank >= 1, "mix_lora_rank/decay_lora_rank", ">= 1",
                (self.mix_lora_rank, self.decay_lora_rank))


class TimeMix6(HeadwiseTimeMix):
    def __init__(self, config: RWKV6Config, layer: int):
        super().__init__(config, layer)
        D, R, RD = config.embedding_dim, config.mix_lora_rank, config.decay_lora_rank
        ratio_0_to_1, ratio_1_to_0, position = layer_ratios(layer, config.num_blocks, D)
        self.time_maa_x = nn.Parameter(1.0 - position ** ratio_1_to_0)
        self.time_maa_w = nn.Parameter(1.0 - position ** ratio_1_to_0)
        self.time_maa_k = nn.Parameter(1.0 - position ** ratio_1_to_0)
        self.time_maa_v = nn.Parameter(1.0 - (position ** ratio_1_to_0 + 0.3 * ratio_0_to_1))
        self.time_maa_r = nn.Parameter(1.0 - position ** (0.5 * ratio_1_to_0))
        self.time_maa_g = nn.Parameter(1.0 - position ** (0.5 * ratio_1_to_0))
        self.time_maa_w1 = nn.Parameter(torch.zeros(D, 5 * R))
        self.time_maa_w2 = nn.Parameter(torch.empty(5, R, D).uniform_(-0.01, 0.01))
        self.time_decay_w1 = nn.Parameter(torch.zeros(D, RD))
        self.time_decay_w2 = nn.Parameter(torch.empty(RD, D).uniform_(-0.01, 0.01))

    def forward(self, x: torch.Tensor, previous: torch.Tensor | None,
                wkv_state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        xx = _shift(x, previous) - x  # (B, S, D)
        xxx = torch.tanh((x + xx * self.time_maa_x) @ self.time_maa_w1)  # (B, S, 5 R), the 5 groups consecutive
        m = torch.einsum("bsfr,frd->fbsd", xxx.unflatten(-1, (5, -1)), self.time_maa_w2)  # (5, B, S, D)
        m_w, m_k, m_v, m_r, m_g = m.unbind(0)
        x_w = x + xx * (self.time_maa_w + m_w)
        r = self.receptance(x + xx * (self.time_maa_r + m_r))
        k = self.key(x + xx * (self.time_maa_k + m_k))
        v = self.value(x + xx * (self.time_maa_v + m_v))
        g = F.silu(self.gate(x + xx * (self.time_maa_g + m_g)))
        w = self.time_decay + torch.tanh(x_w @ self.time_decay_w1) @ self.time_decay_w2  # (B, S, D)
        o, wkv_state = self.wkv(r, k, v, w, wkv_state)
        return self.out(o, g), wkv_state


class RWKV6(RWKVHeadBackbone):
    config_class = RWKV6Config
    time_mix_class = TimeMix6

    @staticmethod
    def default_ffn_hidden(dim: int) -> int:
        return int((3.5 * dim) // 32 * 32)
