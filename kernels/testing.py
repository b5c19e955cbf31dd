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


def gla_inputs(B: int, H: int, S: int, DK: int, DV: int, kind: str = "vector", bonus: bool = False,
               with_state: bool = False, seed: int = 0, min_log_decay: float | None = None) -> dict:
    """float64 inputs of ``kernels.gla.gla`` by name; log_decay of ``kind`` vector (B, H, S, DK), fixed_vector (H, DK)
    or scalar (H,), = -exp(N(-0.5, 1)) (RWKV-6's parametrization: a_t in ~(0.01, 1)) or, with ``min_log_decay``,
    uniform in [min_log_decay, 0]."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    shape = {"vector": (B, H, S, DK), "fixed_vector": (H, DK), "scalar": (H,)}[kind]
    if min_log_decay is None:
        log_decay = -torch.exp(rand(*shape) - 0.5)
    else:
        log_decay = torch.rand(*shape, generator=g, dtype=torch.float64) * min_log_decay
    return {"q": rand(B, H, S, DK), "k": rand(B, H, S, DK), "v": rand(B, H, S, DV), "log_decay": log_decay,
            "bonus": rand(H, DK) if bonus else None, "initial_state": rand(B, H, DK, DV) if with_state else None}


def gla_run(backend: str, inputs: dict, dtype: torch.dtype, chunk: int = 16, scale=None) -> dict:
    """Output ``o``, last state ``S_T`` and the gradient ``d<name>`` of every input of ``gla_inputs`` cast to
    ``dtype``, under a loss on both with fixed random weights (applied in float64)."""
    from .gla import gla

    leaves = {n: None if t is None else t.to(dtype).clone().requires_grad_() for n, t in inputs.items()}
    o, s = gla(leaves["q"], leaves["k"], leaves["v"], leaves["log_decay"], bonus=leaves["bonus"], scale=scale,
               initial_state=leaves["initial_state"], backend=backend, chunk_size=chunk, return_last_state=True)
    g = torch.Generator().manual_seed(1)
    loss = sum((t.double() * torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.device)).sum() for t in (o, s))
    loss.backward()
    return {"o": o, "S_T": s, **{"d" + n: t.grad for n, t in leaves.items() if t is not None}}
