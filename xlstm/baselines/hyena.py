"""Hyena (Poli et al. 2023), order 2, on the long-convolution skeleton of ``xlstm.baselines.h3``.

Mixer, x (B, S, D) -> (B, S, D), after safari ``standalone_hyena.py`` (HyenaOperator, order 2, one head):
    z = short_conv(W_in x + b_in)                  (3D channels; depthwise causal conv of length ``short_conv``)
    x0, x1, v = split(z)                           (each (B, D, S), in that order)
    y = long_conv(v * x1, h, skip=bias) * x0,      out = W_out y + b_out
Implicit filter h (D, S) (HyenaFilter): positional features of t = 0 .. S-1, with t_norm = t / l_max,
l_max = context_length, and K = (filter_emb_dim - 1) / 2 bands of frequencies f_k = linspace(1e-4, K - 1, K):
    z(t) = [t_norm, cos(2 pi f_k t_norm), sin(2 pi f_k t_norm)]                                    (emb_dim features)
    h(t) = Linear_D(Sin(Linear(Sin(Linear(Sin(Linear(z(t)))))))) * exp(-t_norm |delta_d|)    (widths emb -> 64 x 3 -> D)
Sin(x) = sin(freq * x), a learnable freq per channel (init 1; one Sin per layer, where safari shares one module);
delta_d = linspace(log(1e-2) / 1.5, log(1e-2) / 0.3, D) (slow / fast decay); bias (D,) ~ N(0, 1) is the learnable
skip. Differences to safari: z and t are computed, not stored tables of length l_max, so the filter exists for any S
(S > l_max extrapolates: t_norm > 1, where the window has decayed below 1e-2 in every channel); the last filter
Linear has a bias. The filter MLP's Linears take the GPT-2 init like every Linear (as safari's LM does).
Parameters per layer (D=1024, order 64, emb 3): in 3D^2 + 3D, out D^2 + D, short conv 12D, filter 75,328,
bias D: 4,287,040 (~4.29M).

Decoding recomputes (``xlstm.baselines.h3.conv_continue``): the state is (short-conv state (B, K-1, 3D), prefix of
v * x1 (B, D, T)); per token O(T): the filter of length T (O(T (64^2 + 64 D))) and a dot product over the prefix.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..components import CausalConv1d
from ..config import BackboneConfig, require
from .h3 import LongConvBackbone, check_backend, conv_continue


@dataclass
class HyenaConfig(BackboneConfig):
    name: str = "hyena"
    filter_order: int = 64  # width of the implicit filter's MLP
    filter_emb_dim: int = 3  # positional features: t_norm and a cos/sin pair per band
    short_conv: int = 3  # length of the depthwise causal conv on the 3D projections
    conv_backend: str = "auto"  # kernels.longconv backend

    def check(self) -> None:
        super().check()
        require(self.filter_emb_dim >= 3 and self.filter_emb_dim % 2 == 1, "filter_emb_dim", "odd and >= 3",
                self.filter_emb_dim)
        require(self.filter_order >= 1, "filter_order", ">= 1", self.filter_order)
        require(self.short_conv >= 1, "short_conv", ">= 1", self.short_conv)
        check_backend(self.conv_backend)


class Sin(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.freq = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class HyenaFilter(nn.Module):
    """``filter(L) -> h (D, L)``; ``bias`` (D,) is the skip of the long convolution."""

    def __init__(self, dim: int, l_max: int, emb_dim: int, order: int,
                 fast_decay_pct: float = 0.3, slow_decay_pct: float = 1.5, target: float = 1e-2):
        super().__init__()
        self.l_max, self.bands = l_max, (emb_dim - 1) // 2
        self.decay = (math.log(target) / slow_decay_pct, math.log(target) / fast_decay_pct)  # delta range over D
        self.mlp = nn.Sequential(nn.Linear(emb_dim, order), Sin(order), nn.Linear(order, order), Sin(order),
                                 nn.Linear(order, order), Sin(order), nn.Linear(order, dim))
        self.bias = nn.Parameter(torch.randn(dim))

    def features(self, L: int) -> tuple[torch.Tensor, torch.Tensor]:
        """t_norm (L, 1) and z (L, emb_dim), in the parameters' dtype."""
        p = self.bias
        t = torch.arange(L, device=p.device, dtype=p.dtype)[:, None] / self.l_max
        f = torch.linspace(1e-4, self.bands - 1, self.bands, device=p.device, dtype=p.dtype)
        angle = 2 * math.pi * f * t  # (L, K)
        return t, torch.cat([t, angle.cos(), angle.sin()], dim=-1)

    def forward(self, L: int) -> torch.Tensor:
        t, z = self.features(L)
        p = self.bias
        delta = torch.linspace(*self.decay, p.shape[0], device=p.device, dtype=p.dtype)  # (D,)
        return (self.mlp(z) * torch.exp(-t * delta.abs())).T  # (L, D) -> (D, L)


class HyenaMixer(nn.Module):
    """Order-2 Hyena operator; state (short-conv state (B, K-1, 3D), prefix of v * x1 (B, D, T)) or None."""

    def __init__(self, config: HyenaConfig):
        super().__init__()
        D = config.embedding_dim
        self.backend = config.conv_backend
        self.in_proj, self.out = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.short_conv = CausalConv1d(3 * D, config.short_conv)
        self.filter = HyenaFilter(D, config.context_length, config.filter_emb_dim, config.filter_order)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        conv_state, prefix = state if state is not None else (None, None)
        z, conv_state = self.short_conv(self.in_proj(x), conv_state)  # (B, S, 3D)
        x0, x1, v = z.transpose(1, 2).chunk(3, dim=1)  # (B, D, S) each
        y, prefix = conv_continue(v * x1, prefix, self.filter, self.filter.bias, self.backend)
        return self.out((y * x0).transpose(1, 2)), (conv_state, prefix)


class Hyena(LongConvBackbone):
    config_class = HyenaConfig

    def __init__(self, config: HyenaConfig):
        super().__init__(config, lambda: HyenaMixer(config))
