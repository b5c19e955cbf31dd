"""The direct (quadratic) form of the long convolution: the reference the FFT form is tested against.

Per channel d the causal convolution is a lower-triangular Toeplitz matrix T_d[t, s] = filter[d, t - s] for
0 <= t - s < L (zero elsewhere), and y[b, d] = T_d @ u[b, d]. O(D S^2) memory and O(B D S^2) time; every output is a
plain sum of products, so in float64 it is exact to rounding and its autograd gradients are the true ones.
"""
from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 inputs are computed in float64, everything else (float32, bfloat16, float16) in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def toeplitz(filter: torch.Tensor, S: int) -> torch.Tensor:
    """(D, L) filter -> (D, S, S) lower-triangular Toeplitz matrices, T[d, t, s] = filter[d, t - s] (0 if t - s
    is negative or >= L, which zero-pads a filter shorter than the sequence)."""
    L = filter.shape[-1]
    pos = torch.arange(S, device=filter.device)
    lag = pos[:, None] - pos[None, :]  # (S, S), lag[t, s] = t - s
    inside = (lag >= 0) & (lag < L)
    taps = filter[:, lag.clamp(0, L - 1)]  # (D, S, S)
    return torch.where(inside, taps, torch.zeros((), dtype=filter.dtype, device=filter.device))


def long_conv_direct(u: torch.Tensor, filter: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
    """u (B, D, S), filter (D, L <= S), skip (D,) or None -> y (B, D, S) in u's dtype."""
    ct = compute_dtype(u.dtype)
    uc = u.to(ct)
    y = torch.einsum("dts,bds->bdt", toeplitz(filter.to(ct), u.shape[-1]), uc)
    if skip is not None:
        y = y + skip.to(ct)[:, None] * uc
    return y.to(u.dtype)
