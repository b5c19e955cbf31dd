"""HGRN (Qin et al. 2023) and HGRN2 (Qin et al. 2024) on the shared linear-attention backbone (``linear_attention``:
pre-RMSNorm blocks with a SwiGLU MLP, GPT-2 init), in the layout of flash-linear-attention's ``layers/hgrn.py``,
``layers/hgrn2.py``, ``models/hgrn``, ``models/hgrn2`` (the library the paper's HGRN/HGRN2 runs used).

Forget-gate lower bounds (both models, HGRN Sec. 3; model-level as in ``models/hgrn``): a parameter
``lower_bounds`` (L, D), zeros at init, gives layer l the bound b_l = cumsum(softmax(lower_bounds, 0))_l - softmax_0,
so b_0 = 0 exactly and 0 <= b_1 <= ... <= b_{L-1} < 1 (deeper layers keep longer memories). Layer l's gate is
f = b_l + (1 - b_l) sigmoid(f_proj(x)), its log computed without a log of an underflowed sigmoid (``log_forget``).
The bounds couple all layers, so the backbone computes them once per forward and hands block l the state
(b_l, recurrent state_l); each mixer returns only its new recurrent state (the backbone's state is that list).
``use_lower_bound=False``: f = sigmoid(f_proj(x)) and no parameter.

HGRN mixer (``layers/hgrn.py``; x (B, S, D), every projection D -> D without bias; ``num_heads`` is NOT used):
    i, z, g = i_proj(x), f_proj(x), g_proj(x);   f = b + (1 - b) sigmoid(z);   v = silu(i) (1 - f)
    h_t = f_t * h_{t-1} + v_t   per channel      (gla with H = D heads of DK = DV = 1: q = k = 1, log_decay = log f
                                                  (B, D, S, 1), scale 1, so o_t = h_t; state (B, D, 1, 1))
    y = out(RMSNorm_D(h) * silu(g))              (one RMSNorm over all D channels: fla's FusedRMSNormGated)
HGRN2 mixer (``layers/hgrn2.py``; H = num_heads, DK = DV = D / H; paper sizes H = D / 128, i.e. expand_ratio 128):
    q = silu(q_proj(x)), z = f_proj(x), i = i_proj(x)     (B, S, D) -> (B, H, S, DK)
    log_decay = log(b + (1 - b) sigmoid(z)), k = 1 - exp(log_decay), v = i     (key tied to the forget gate)
    S_t = Diag(f_t) S_{t-1} + k_t^T v_t,   o_t = DK^-0.5 q_t S_t               (gla, state (B, H, DK, DV))
    y = out(RMSNorm_D(flatten(o)))                (one RMSNorm over all H * DV channels, no output gate: fla's
                                                  g_norm is RMSNorm(hidden_size) on the flattened heads; its D
                                                  weights are what the Table 7 parameter counts need)
All recurrences run through ``run_gla`` (``kernels.gla``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kernels.gla.recurrent import compute_dtype

from .linear_attention import GatedHeadNorm, LinearAttentionBackbone, LinearAttentionConfig, head_split, run_gla


@dataclass
class HGRNConfig(LinearAttentionConfig):
    """num_heads is not used: the recurrence is per channel (expand_ratio 1)."""

    name: str = "hgrn"
    use_lower_bound: bool = True  # False: f = sigmoid(f_proj(x)), no lower_bounds parameter


@dataclass
class HGRN2Config(LinearAttentionConfig):
    name: str = "hgrn2"
    use_lower_bound: bool = True


def log_forget(z: torch.Tensor, bound: torch.Tensor | None) -> torch.Tensor:
    """log(b + (1 - b) sigmoid(z)) in z's dtype; ``bound`` None is b = 0 (layer 0): logsigmoid(z).

    As logaddexp(log b, log(1 - b) + logsigmoid(z)): never the log of a sigmoid that underflowed to 0. b is clamped
    to the smallest normal number inside the log, so an underflowed softmax gives gradient 0, not 0 * inf."""
    if bound is None:
        return F.logsigmoid(z)
    b = bound.to(z.dtype)
    return torch.logaddexp(b.clamp_min(torch.finfo(b.dtype).tiny).log(), torch.log1p(-b) + F.logsigmoid(z))


class _GatedMixer(nn.Module):
    """The parts HGRN and HGRN2 share: i_proj, f_proj, out (D -> D, no bias) and the lower-bounded log forget gate."""

    def __init__(self, config: LinearAttentionConfig, layer: int):
        super().__init__()
        D = config.embedding_dim
        self.config, self.layer = config, layer
        self.i_proj, self.f_proj = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.out = nn.Linear(D, D, bias=False)  # named "out": the backbone scales it as a residual output

    def log_forget(self, x: torch.Tensor, bound: torch.Tensor | None) -> torch.Tensor:
        """x (B, S, D) -> log f (B, S, D) in float32 (float64 for float64 x)."""
        return log_forget(self.f_proj(x).to(compute_dtype(x.dtype)), bound)


class HGRNMixer(_GatedMixer):
    def __init__(self, config: HGRNConfig, layer: int):
        super().__init__(config, layer)
        D = config.embedding_dim
        self.g_proj = nn.Linear(D, D, bias=False)
        self.norm = GatedHeadNorm(D, config.norm_eps)  # one "head" of D channels: RMSNorm over D times swish(g)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor | None, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        bound, h = state  # bound (D,) or None; h (B, D, 1, 1) or None
        B, S, D = x.shape
        log_f = self.log_forget(x, bound)  # (B, S, D)
        v = F.silu(self.i_proj(x)) * -torch.expm1(log_f)  # input tied to the gate: silu(i) (1 - f)
        channels = lambda t: t.transpose(1, 2)[..., None]  # noqa: E731  (B, S, D) -> (B, D, S, 1): a head per channel
        ones = x.new_ones(1, 1, 1, 1).expand(B, D, S, 1)
        o, h = run_gla(self.config, ones, ones, channels(v), channels(log_f), h, scale=1.0)  # o (B, D, S, 1) = h_t
        o = o[..., 0].transpose(1, 2)[:, :, None, :]  # (B, S, 1, D)
        return self.out(self.norm(o, self.g_proj(x))), h


class HGRN2Mixer(_GatedMixer):
    def __init__(self, config: HGRN2Config, layer: int):
        super().__init__(config, layer)
        D = config.embedding_dim
        self.H, self.DK = config.num_heads, head_split(D, config.num_heads, "embedding_dim")
        self.q_proj = nn.Linear(D, D, bias=False)
        self.norm = nn.RMSNorm(D, eps=config.norm_eps)  # over the flattened heads (not per head), D weights

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor | None, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        bound, S_prev = state  # bound (D,) or None; S_prev (B, H, DK, DV) or None
        B, S, D = x.shape
        heads = lambda t: t.view(B, S, self.H, self.DK).transpose(1, 2)  # noqa: E731  (B, S, D) -> (B, H, S, DK)
        log_f = heads(self.log_forget(x, bound))
        k = -torch.expm1(log_f)  # 1 - f, accurate for f near 1
        q, v = heads(F.silu(self.q_proj(x))), heads(self.i_proj(x))
        o, S_new = run_gla(self.config, q, k, v, log_f, S_prev)  # o (B, H, S, DV), default scale DK^-0.5
        return self.out(self.norm(o.transpose(1, 2).flatten(-2))), S_new  # (B, S, H * DV)


class _LowerBoundBackbone(LinearAttentionBackbone):
    """The shared backbone plus the model-level forget-gate lower bounds (see the module docstring)."""

    mixer_class: type[nn.Module] = nn.Module

    def __init__(self, config: LinearAttentionConfig):
        super().__init__(config)
        # created after the GPT-2 init (which normals every 2-D parameter): zeros, i.e. b_l = l / L at init
        self.lower_bounds = (nn.Parameter(torch.zeros(config.num_blocks, config.embedding_dim))
                             if config.use_lower_bound else None)

    def make_mixer(self, layer: int) -> nn.Module:
        return self.mixer_class(self.config, layer)

    def lower_bound_values(self) -> torch.Tensor | None:
        """b (L, D): b_l = sum_{j <= l} softmax_j - softmax_0 (b_0 = 0 exactly), in float32 or float64."""
        if self.lower_bounds is None:
            return None
        p = self.lower_bounds.to(compute_dtype(self.lower_bounds.dtype)).softmax(0)
        return p.cumsum(0) - p[0]

    def forward_state(self, x: torch.Tensor, state: list | None = None) -> tuple[torch.Tensor, list]:
        L = self.config.num_blocks
        b = self.lower_bound_values()
        # layer 0 gets None (its bound is exactly 0): a plain logsigmoid gate, no log of a zero bound
        bounds = [None] + list(b.unbind(0)[1:]) if b is not None else [None] * L
        recurrent = state if state is not None else [None] * L
        return self.stack(x, list(zip(bounds, recurrent)))  # stack state: each mixer's new recurrent state


class HGRN(_LowerBoundBackbone):
    config_class = HGRNConfig
    mixer_class = HGRNMixer


class HGRN2(_LowerBoundBackbone):
    config_class = HGRN2Config
    mixer_class = HGRN2Mixer
