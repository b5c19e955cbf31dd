"""The long convolution of H3 and Hyena: one signature, two forms.

``long_conv(u, filter, *, skip=None, backend="auto") -> y``; u (B, D, S), filter (D, L) with 1 <= L <= S (a shorter
filter is zero-padded to S), skip (D,) or None:
    y[b, d, t] = sum_{s=0..t} filter[d, s] * u[b, d, t - s] + skip[d] * u[b, d, t]        (causal)
y has u's dtype; float64 inputs are computed in float64, all others in float32 (filter and skip are cast to that).
Forms: ``direct--torch`` (Toeplitz matrix, O(S^2), the reference) and ``fft--torch`` (zero-padded rfft/irfft,
O(S log S)); "auto" = fft--torch.

Generation: H3 and Hyena have no fixed-size recurrent state for a free-form filter; decoding recomputes the output
at the newest position over the whole prefix. ``causal_conv_last(u_prefix, filter, skip)`` does just that, a dot
product of the prefix with the reversed filter, O(B D T) per token instead of a full convolution.
"""
from __future__ import annotations

from typing import Callable

import torch

from .direct import compute_dtype, long_conv_direct, toeplitz
from .fft import fft_length, long_conv_fft

BACKENDS: dict[str, Callable] = {
    "direct--torch": long_conv_direct,
    "fft--torch": long_conv_fft,
}


def resolve_backend(backend: str) -> str:
    """"auto" = fft--torch; an unknown name raises ValueError listing the valid ones."""
    if backend == "auto":
        return "fft--torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown long_conv backend {backend!r}; valid: auto, {', '.join(BACKENDS)}")
    return backend


def _check(name: str, u: torch.Tensor, filter: torch.Tensor, skip: torch.Tensor | None, filter_up_to_S: bool) -> None:
    """One-line ValueErrors for anything but u (B, D, S >= 1), filter (D, L >= 1) (L <= S if ``filter_up_to_S``),
    skip (D,) or None, all real floating point."""
    shapes = (f"{name}: shapes u {tuple(u.shape)}, filter {tuple(filter.shape)}, "
              f"skip {None if skip is None else tuple(skip.shape)}")
    if not (u.is_floating_point() and filter.is_floating_point() and (skip is None or skip.is_floating_point())):
        raise ValueError(f"{name}: u, filter and skip must be real floating-point tensors")
    if u.dim() != 3 or filter.dim() != 2 or filter.shape[0] != u.shape[1]:
        raise ValueError(f"{shapes} do not fit u (B, D, S), filter (D, L), skip (D,)")
    if skip is not None and tuple(skip.shape) != (u.shape[1],):
        raise ValueError(f"{shapes} do not fit: skip must be (D,) = ({u.shape[1]},)")
    L, S = filter.shape[1], u.shape[2]
    if S < 1 or L < 1 or (filter_up_to_S and L > S):
        raise ValueError(f"{shapes} do not fit: need {'1 <= L <= S' if filter_up_to_S else 'S >= 1 and L >= 1'}")


def long_conv(u: torch.Tensor, filter: torch.Tensor, *, skip: torch.Tensor | None = None,
              backend: str = "auto") -> torch.Tensor:
    """y (B, D, S) = causal convolution of u (B, D, S) with filter (D, L <= S), plus skip (D,) * u."""
    _check("long_conv", u, filter, skip, filter_up_to_S=True)
    return BACKENDS[resolve_backend(backend)](u, filter, skip)


def causal_conv_last(u_prefix: torch.Tensor, filter: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
    """The output at the last position of ``long_conv(u_prefix, filter, skip=skip)``, (B, D), in u's dtype.

    u_prefix (B, D, T) is everything generated so far; filter (D, L) may be longer than the prefix (the filter of the
    longest sequence, as in decoding): only its first min(T, L) taps meet the prefix.
    y[b, d] = sum_{s < min(T, L)} filter[d, s] * u[b, d, T - 1 - s] + skip[d] * u[b, d, T - 1]."""
    _check("causal_conv_last", u_prefix, filter, skip, filter_up_to_S=False)
    ct = compute_dtype(u_prefix.dtype)
    T = u_prefix.shape[-1]
    m = min(T, filter.shape[-1])
    window = u_prefix[..., T - m:].to(ct)  # u[T-m .. T-1], multiplied by taps m-1 .. 0
    y = torch.einsum("bdm,dm->bd", window, filter[:, :m].flip(-1).to(ct))
    if skip is not None:
        y = y + skip.to(ct) * window[..., -1]
    return y.to(u_prefix.dtype)


__all__ = ["BACKENDS", "causal_conv_last", "compute_dtype", "fft_length", "long_conv", "long_conv_direct",
           "long_conv_fft", "resolve_backend", "toeplitz"]
