"""Helpers for testing kernels against references: the ratio check and input factories."""
from __future__ import annotations

import torch


def rel_error(ref: torch.Tensor, out: torch.Tensor) -> float:
    """||ref - out|| / ||ref|| in float64 (0 when both are 0)."""
    ref, out = ref.detach().double(), out.detach().double()
    denom = ref.norm().item()
    diff = (ref - out).norm().item()
    return diff / denom if denom > 0 else diff


def assert_close(name: str, ref: torch.Tensor, out: torch.Tensor, ratio: float) -> None:
    """Shapes equal, no NaN/Inf in ``out`` where ``ref`` is finite, and relative RMS error below ``ratio``."""
    assert ref.shape == out.shape, f"{name}: shape {tuple(out.shape)} != {tuple(ref.shape)}"
    finite = torch.isfinite(ref)
    assert torch.isfinite(out[finite]).all(), f"{name}: NaN/Inf where the reference is finite"
    ref, out = torch.where(finite, ref.double(), 0), torch.where(finite, out.double(), 0)
    err = rel_error(ref, out)
    assert err <= ratio, f"{name}: relative error {err:.3e} > {ratio:.1e}"


def mlstm_inputs(B: int, NH: int, S: int, DK: int, DV: int, dtype=torch.float64, seed: int = 0,
                 gate_scale: float = 1.0, forget_bias: float = 2.0, with_state: bool = False):
    """Random q, k, v, igate, fgate (and optionally an initial state in stabilized units)."""
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(B, NH, S, DK, generator=g), torch.randn(B, NH, S, DK, generator=g)
    v = torch.randn(B, NH, S, DV, generator=g)
    igate = torch.randn(B, NH, S, generator=g) * gate_scale
    fgate = torch.randn(B, NH, S, generator=g) * gate_scale + forget_bias
    tensors = [t.to(dtype) for t in (q, k, v, igate, fgate)]
    if not with_state:
        return tensors, None
    c0 = torch.randn(B, NH, DK, DV, generator=g).to(dtype)
    n0 = torch.randn(B, NH, DK, generator=g).abs().to(dtype)
    m0 = torch.randn(B, NH, generator=g).to(dtype)
    return tensors, (c0, n0, m0)
