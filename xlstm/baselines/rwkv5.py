"""RWKV-5 "Eagle" (Peng et al., 2024): RWKV-4's block with a multi-head matrix-valued state.

Time mixing (official RWKV-LM ``RWKV_Tmix_x052``), heads h = 1..H of size N = D / H, static token shift with four
mix vectors x'_c = mu_c * x_t + (1 - mu_c) * x_{t-1} (c = r, k, v, g):
    r, k, v = W_r x'_r, W_k x'_k, W_v x'_v;   g = silu(W_g x'_g)                       (all D x D, no bias)
    o_t = r_t (S_{t-1} + Diag(u) k_t^T v_t),   S_t = Diag(w) S_{t-1} + k_t^T v_t          per head, S_t (N, N)
    w = exp(-exp(time_decay)) fixed per channel, u = time_faaaa (the bonus of the current token)
    y = W_o (GroupNorm_H(o / head_size_divisor) * g)        (H groups, eps 1e-5)
(x060 writes GroupNorm_H(o) with eps 1e-5 * divisor^2, which is the same function: dividing o by the divisor divides
the variance by divisor^2.)
The recurrence runs through ``kernels.gla`` (scale 1, log_decay = -exp(time_decay) of shape (H, N), bonus u),
in float32 for half-precision inputs. Channel mixing: RWKV-4's sigmoid(W_r x'_r) * W_v relu(W_k x'_k)^2 with
hidden F = 4 D (``ffn_hidden``). Blocks are RWKV-4's: ln0 on the embedding in block 0, x += TimeMix(ln1(x)),
x += ChannelMix(ln2(x)), a final LayerNorm. Parameters per layer: 6 D^2 + 2 D F + 14 D.

Inits follow the official code: mix vectors from channel positions (i / D) ** ratio_1_to_almost0, decay speed
-6 + 5 (n / (D - 1)) ** (0.7 + 1.3 ratio_0_to_1), bonus ratio_0_to_1 (1 - n / (D - 1)) + zigzag 0.1, W_o zero.
The head-wise output path, the block and the backbone here are shared with RWKV-6 (rwkv6.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn

from kernels.gla.recurrent import compute_dtype

from ..backbone import Backbone
from ..components import ResidualStack
from ..config import BackboneConfig, require
from .linear_attention import head_split, run_gla
from .rwkv4 import ChannelMix, _shift

BlockState = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # time-mix x_{t-1} (B, D), S (B, H, N, N), cm x_{t-1}


@dataclass
class RWKV5Config(BackboneConfig):
    name: str = "rwkv5"
    ffn_hidden: Optional[int] = None  # channel-mix hidden size; None = the model's own default (4 D for RWKV-5)
    head_size_divisor: int = 8
    gla_backend: str = "auto"  # kernels.gla form: auto | chunkwise--torch | recurrent--torch | chunkwise--triton
    gla_chunk_size: int = 64

    def check(self) -> None:
        super().check()
        require(self.embedding_dim % self.num_heads == 0, "embedding_dim", f"divisible by num_heads={self.num_heads}",
                self.embedding_dim)
        require(self.ffn_hidden is None or self.ffn_hidden >= 1, "ffn_hidden", "None or >= 1", self.ffn_hidden)
        require(self.head_size_divisor > 0, "head_size_divisor", "> 0", self.head_size_divisor)
        require(self.gla_chunk_size >= 1, "gla_chunk_size", ">= 1", self.gla_chunk_size)


def layer_ratios(layer: int, num_layers: int, dim: int) -> tuple[float, float, torch.Tensor]:
    """The official inits' ratio_0_to_1, ratio_1_to_almost0 and channel positions i / D, (D,)."""
    return layer / max(num_layers - 1, 1), 1.0 - layer / num_layers, torch.arange(dim) / dim


class HeadwiseTimeMix(nn.Module):
    """What the RWKV-5 and RWKV-6 time mixes share: the r, k, v, g, o projections, time_decay (D,) and the bonus
    time_faaaa (H, N) with their official inits, the WKV through ``gla`` and the output path W_o(GroupNorm(o/8) * g).
    Subclasses implement ``forward(x, previous, wkv_state) -> (y, wkv_state)``."""

    def __init__(self, config: RWKV5Config, layer: int):
        super().__init__()
        D = config.embedding_dim
        self.num_heads, self.head_size = config.num_heads, head_split(D, config.num_heads, "embedding_dim")
        self.divisor = config.head_size_divisor
        self.config = config  # the gla form and chunk size (run_gla)
        ratio_0_to_1, _, _ = layer_ratios(layer, config.num_blocks, D)
        n = torch.arange(D) / max(D - 1, 1)
        # decay speed from slow (-6) to fast (-1) over channels, faster in deeper layers; zigzag bonus
        self.time_decay = nn.Parameter(-6 + 5 * n ** (0.7 + 1.3 * ratio_0_to_1))
        zigzag = ((torch.arange(D) + 1) % 3 - 1) * 0.1
        self.time_faaaa = nn.Parameter((ratio_0_to_1 * (1 - n) + zigzag).reshape(self.num_heads, self.head_size))
        self.receptance, self.key, self.value, self.gate = (nn.Linear(D, D, bias=False) for _ in range(4))
        self.output = nn.Linear(D, D, bias=False)
        nn.init.zeros_(self.output.weight)
        self.ln_x = nn.GroupNorm(self.num_heads, D, eps=1e-5)  # on o / divisor: x052's form, x060's function

    def wkv(self, r: torch.Tensor, k: torch.Tensor, v: torch.Tensor, decay: torch.Tensor,
            state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """r, k, v (B, S, D); decay exponent w of log_decay = -exp(w): (D,) fixed or (B, S, D) data-dependent.
        Returns o (B, S, D) in r's dtype and the state (B, H, N, N) (float32, float64 for float64 inputs)."""
        B, S, D = r.shape
        H, N = self.num_heads, self.head_size
        ct = compute_dtype(r.dtype)
        heads = lambda t: t.to(ct).reshape(B, S, H, N).transpose(1, 2)  # noqa: E731  (B, S, D) -> (B, H, S, N)
        log_decay = -torch.exp(decay.to(ct))
        log_decay = log_decay.reshape(H, N) if decay.dim() == 1 else heads(log_decay)
        o, state = run_gla(self.config, heads(r), heads(k), heads(v), log_decay, state, bonus=self.time_faaaa.to(ct),
                           scale=1.0)
        return o.transpose(1, 2).reshape(B, S, D).to(r.dtype), state

    def out(self, o: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """W_o(GroupNorm(o / divisor) * g); GroupNorm wants (B*S, D)."""
        B, S, D = o.shape
        return self.output(self.ln_x((o / self.divisor).reshape(B * S, D)).reshape(B, S, D) * g)


class TimeMix5(HeadwiseTimeMix):
    def __init__(self, config: RWKV5Config, layer: int):
        super().__init__(config, layer)
        ratio_0_to_1, ratio_1_to_0, position = layer_ratios(layer, config.num_blocks, config.embedding_dim)
        self.mix_k = nn.Parameter(position ** ratio_1_to_0)
        self.mix_v = nn.Parameter(position ** ratio_1_to_0 + 0.3 * ratio_0_to_1)
        self.mix_r = nn.Parameter(position ** (0.5 * ratio_1_to_0))
        self.mix_g = nn.Parameter(position ** (0.5 * ratio_1_to_0))

    def forward(self, x: torch.Tensor, previous: torch.Tensor | None,
                wkv_state: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        shifted = _shift(x, previous)
        lerp = lambda mix: x * mix + shifted * (1 - mix)  # noqa: E731
        r, k, v = self.receptance(lerp(self.mix_r)), self.key(lerp(self.mix_k)), self.value(lerp(self.mix_v))
        g = F.silu(self.gate(lerp(self.mix_g)))
        o, wkv_state = self.wkv(r, k, v, self.time_decay, wkv_state)
        return self.out(o, g), wkv_state


class RWKVBlock(nn.Module):
    """ln0 (block 0 only), x += TimeMix(ln1(x)), x += ChannelMix(ln2(x)); state: see ``BlockState``."""

    def __init__(self, config: RWKV5Config, layer: int, time_mix: nn.Module, ffn_hidden: int):
        super().__init__()
        D, L = config.embedding_dim, config.num_blocks
        self.ln0 = nn.LayerNorm(D) if layer == 0 else None  # RWKV normalises the embedding once, in block 0
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.time_mix = time_mix
        self.channel_mix = ChannelMix(D, ffn_hidden, layer, L)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, state: BlockState | None = None) -> tuple[torch.Tensor, BlockState]:
        tm_previous, wkv_state, cm_previous = state if state is not None else (None, None, None)
        if self.ln0 is not None:
            x = self.ln0(x)
        h = self.ln1(x)
        y, wkv_state = self.time_mix(h, tm_previous, wkv_state)
        x = x + self.dropout(y)
        y, cm_previous = self.channel_mix(self.ln2(x), cm_previous)
        return x + self.dropout(y), (h[:, -1], wkv_state, cm_previous)


class RWKVHeadBackbone(Backbone):
    """The RWKV-5/6 stack; subclasses set ``config_class``, ``time_mix_class`` and ``default_ffn_hidden``."""

    time_mix_class: ClassVar[type[HeadwiseTimeMix]]

    @staticmethod
    def default_ffn_hidden(dim: int) -> int:
        raise NotImplementedError

    def __init__(self, config: RWKV5Config):
        super().__init__(config)
        head_split(config.embedding_dim, config.num_heads, "embedding_dim")  # one clear error before any layer
        D = config.embedding_dim
        hidden = config.ffn_hidden if config.ffn_hidden is not None else self.default_ffn_hidden(D)
        blocks = [RWKVBlock(config, i, self.time_mix_class(config, i), hidden) for i in range(config.num_blocks)]
        self.stack = ResidualStack(blocks, nn.LayerNorm(D))

    def forward_state(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        return self.stack(x, state)


class RWKV5(RWKVHeadBackbone):
    config_class = RWKV5Config
    time_mix_class = TimeMix5

    @staticmethod
    def default_ffn_hidden(dim: int) -> int:
        return 4 * dim
