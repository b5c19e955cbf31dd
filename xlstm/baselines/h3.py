"""H3 ("Hungry Hungry Hippos", Fu et al. 2023) and the skeleton it shares with Hyena (``xlstm.baselines.hyena``).

Skeleton (``LongConvBackbone``): pre-LayerNorm residual blocks ``x += mixer(LN(x)); x += GeLUMLP(LN(x))`` (MLP width
4D, biases), a final LayerNorm. Init as safari's ``_init_weights`` (GPT-2): every nn.Linear weight ~ N(0, 0.02), the
residual out-projections (``mixer.out``, ``mlp.down``) ~ N(0, 0.02 / sqrt(2 * num_blocks)), Linear biases 0;
the SSM / filter parameters keep their own inits (below). ``num_heads`` is ignored (head_dim 1: one channel per head).

H3 mixer, x (B, S, D) -> (B, S, D), after safari ``src/models/sequence/h3.py`` with head_dim 1:
    q, k, v = W_q x + b_q, W_k x + b_k, W_v x + b_v                            (three D x D Linear, transposed to (B, D, S))
    k~ = shift(k): causal FIR of length N = d_state per channel, weight (D, N) ~ N(0, 1). The shift SSM's kernel
         C shift^t B is an arbitrary length-N filter; safari keeps B (e_0 at init) and C (randn) and a skip, all three
         folded here into the one (D, N) filter.
    y = diag_ssm(k~ * v) = long_conv(k~ * v, K, skip=Dskip),  out = W_out (q * y) + b_out
Diagonal SSM (S4D-Lin, zero-order hold; Gu et al. 2022 "On the parameterization ... of diagonal SSMs"), N/2 complex
modes per channel: A = -exp(log_A_real) + i A_imag (log_A_real = log 0.5, A_imag = pi n at init), dt = exp(log_dt)
(log_dt ~ U[log 1e-3, log 1e-1]), C complex ~ N(0, 1) (stored as (D, N/2, 2) reals), B = 1 folded into C, Dskip ~ N(0, 1):
    K[d, t] = 2 Re( sum_n C[d,n] (exp(dt_d A[d,n]) - 1) / A[d,n] * exp(dt_d A[d,n] t) ),   t = 0 .. S-1,
the kernel of h_t = exp(dt A) h_{t-1} + (exp(dt A) - 1)/A u_t, y_t = 2 Re(C h_t) + Dskip u_t.
Parameters per mixer (D=1024, N=64): 4 (D^2 + D) (q, k, v, out) + D N (shift) + D (dt) + D N (A) + D N (C) + D
(skip) = 4,397,056; safari also keeps the shift SSM's B and skip and the diagonal SSM's B: +2 D N + D.

Decoding by recomputation (``conv_continue``): a mixer's state is, per long convolution, the prefix of its input
signal (B, D, T) (H3: k, and k~ * v). A call with S new positions appends them and recomputes: S == 1 is
``causal_conv_last`` over the whole prefix (O(B D T) per token, plus the filter of length T: O(D N T) for H3), S > 1
is ``long_conv`` over prefix + new, keeping the last S outputs. Every convolution is time-invariant, so this equals
one call on the whole sequence. (H3's SSMs would also admit an O(D N) recurrent step; this suite does not use it.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from kernels.longconv import BACKENDS, causal_conv_last, long_conv
from ..backbone import Backbone
from ..components import PreNormBlock, ResidualStack, gpt2_init_
from ..config import BackboneConfig, require
from .transformer import GeLUMLP


def check_backend(backend: str) -> None:
    require(backend == "auto" or backend in BACKENDS, "conv_backend", "auto | " + " | ".join(BACKENDS), backend)


@dataclass
class H3Config(BackboneConfig):
    name: str = "h3"
    d_state: int = 64  # N: shift-filter length and 2 x the complex modes of the diagonal SSM
    conv_backend: str = "auto"  # kernels.longconv backend

    def check(self) -> None:
        super().check()
        require(self.d_state >= 2 and self.d_state % 2 == 0, "d_state", "even and >= 2", self.d_state)
        check_backend(self.conv_backend)


def conv_continue(u: torch.Tensor, prefix: torch.Tensor | None, filter_fn: Callable[[int], torch.Tensor],
                  skip: torch.Tensor | None, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal long convolution of new positions u (B, D, S) that follow ``prefix`` (B, D, T) (None: none).

    filter_fn(L) -> (D, <= L) is the filter for a signal of length L. Returns (y (B, D, S), prefix + u (B, D, T + S)),
    the state of the next call. Per new token O(T): the filter of length T and one dot product over the prefix."""
    full = u if prefix is None else torch.cat([prefix, u], dim=-1)
    L, S = full.shape[-1], u.shape[-1]
    if prefix is not None and S == 1:
        return causal_conv_last(full, filter_fn(L), skip)[..., None], full
    return long_conv(full, filter_fn(L), skip=skip, backend=backend)[..., L - S:], full


class LongConvBackbone(Backbone):
    """The blocks around a mixer ``(x (B, S, D), state) -> (y, state)`` built by ``make_mixer()``; the state is the
    list of the mixers' states."""

    def __init__(self, config: BackboneConfig, make_mixer: Callable[[], nn.Module]):
        super().__init__(config)
        D, n = config.embedding_dim, config.num_blocks
        self.stack = ResidualStack([PreNormBlock(nn.LayerNorm(D), make_mixer(), nn.LayerNorm(D), GeLUMLP(D, 4 * D),
                                                 config.dropout) for _ in range(n)], nn.LayerNorm(D))
        gpt2_init_(self, n, linear_only=True)

    def forward_state(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        return self.stack(x, state)


class H3Mixer(nn.Module):
    """q * diag_ssm(shift(k) * v); state (k prefix (B, D, T), (shift(k) * v) prefix (B, D, T)) or None."""

    def __init__(self, dim: int, d_state: int, backend: str):
        super().__init__()
        self.backend, half = backend, d_state // 2
        self.q_proj, self.k_proj, self.v_proj = (nn.Linear(dim, dim) for _ in range(3))
        self.out = nn.Linear(dim, dim)
        self.shift = nn.Parameter(torch.randn(dim, d_state))  # (D, N) FIR taps 0 .. N-1
        self.log_dt = nn.Parameter(torch.empty(dim).uniform_(math.log(1e-3), math.log(1e-1)))
        self.log_A_real = nn.Parameter(torch.full((dim, half), math.log(0.5)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(half, dtype=torch.float32).repeat(dim, 1))
        self.C = nn.Parameter(torch.randn(dim, half, 2) * math.sqrt(0.5))  # complex N(0, 1) as (re, im)
        self.skip = nn.Parameter(torch.randn(dim))

    def shift_filter(self, L: int) -> torch.Tensor:
        """(D, min(N, L)): long_conv zero-pads it to the sequence; a shorter sequence meets only its first L taps."""
        return self.shift[:, :L]

    def ssm_kernel(self, L: int) -> torch.Tensor:
        """K (D, L) of the ZOH-discretised diagonal SSM (module docstring), in the parameters' precision."""
        A = torch.complex(-self.log_A_real.exp(), self.A_imag)  # (D, N/2)
        dt_A = self.log_dt.exp()[:, None] * A
        C = torch.view_as_complex(self.C) * (dt_A.exp() - 1) / A  # C * B-bar (B = 1)
        t = torch.arange(L, device=dt_A.device, dtype=self.log_dt.dtype)
        return 2 * torch.einsum("dn,dnl->dl", C, torch.exp(dt_A[..., None] * t)).real  # (D, N/2, L) Vandermonde

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        q, k, v = (proj(x).transpose(1, 2) for proj in (self.q_proj, self.k_proj, self.v_proj))  # (B, D, S)
        k_prefix, kv_prefix = state if state is not None else (None, None)
        k, k_prefix = conv_continue(k, k_prefix, self.shift_filter, None, self.backend)
        y, kv_prefix = conv_continue(k * v, kv_prefix, self.ssm_kernel, self.skip, self.backend)
        return self.out((q * y).transpose(1, 2)), (k_prefix, kv_prefix)


class H3(LongConvBackbone):
    config_class = H3Config

    def __init__(self, config: H3Config):
        super().__init__(config, lambda: H3Mixer(config.embedding_dim, config.d_state, config.conv_backend))
