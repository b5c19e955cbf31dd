"""The FFT form of the long convolution: O(B D S log S), the form "auto" picks.

Why zero padding to n >= 2S is causal: multiplying n-point DFTs computes the *circular* convolution
    c[t] = sum_{s=0..L-1} filter[s] * u[(t - s) mod n].
Both signals are zero-padded to n. For a kept output t < S and a tap s < L, t - s >= -(L - 1): if t - s >= 0 the
term is the causal one; if it is negative it wraps to index n + t - s >= n - L + 1, which is >= S, a padded zero of u,
whenever n >= S + L - 1. Padding to n >= 2S covers every L <= S, so c[t] is exactly the causal linear convolution for
t < S; the outputs t >= S (the tail of the full convolution) are dropped. With n = S (no padding) the wrapped
terms u[t - s + S] for t < s would leak future inputs into early outputs, which the tests check does not happen.
"""
from __future__ import annotations

import torch

from .direct import compute_dtype


def fft_length(n: int) -> int:
    """The smallest 5-smooth integer (2^a 3^b 5^c) >= n: lengths every FFT library (pocketfft, cuFFT) runs fast,
    and never more than ~n * 1.1 for large n, where the next power of two could cost nearly 2x."""
    best, p5 = 1 << max(n - 1, 0).bit_length(), 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def long_conv_fft(u: torch.Tensor, filter: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
    """u (B, D, S), filter (D, L <= S), skip (D,) or None -> y (B, D, S) in u's dtype; computed in float32 for
    float32/bfloat16/float16 inputs, in float64 for float64. rfft zero-pads both signals to n = 2 * fft_length(S)."""
    S = u.shape[-1]
    n = 2 * fft_length(S)  # even and >= 2S: no wrap-around (module docstring)
    ct = compute_dtype(u.dtype)
    uc = u.to(ct)
    spectrum = torch.fft.rfft(uc, n=n) * torch.fft.rfft(filter.to(ct), n=n)  # (B, D, n//2+1) * (D, n//2+1)
    y = torch.fft.irfft(spectrum, n=n)[..., :S]
    if skip is not None:
        y = y + skip.to(ct)[:, None] * uc
    return y.to(u.dtype)
