"""The mLSTM op: one signature, several forms (the contract: docs/contracts.md).

``mlstm(q, k, v, igate, fgate, *, backend="auto", chunk_size=64, eps=1e-6, initial_state=None,
return_last_state=False)``; q, k (B, NH, S, DK), v (B, NH, S, DV), igate/fgate (B, NH, S) pre-activations.
Input gate exp(igate), forget gate sigmoid(fgate) in log space, q.k scaled by DK**-0.5 inside the op.
"""
from __future__ import annotations

from typing import Callable

import torch

from .chunkwise import mlstm_chunkwise
from .fused import mlstm_chunkwise_fused
from .native import available as cpp_available, mlstm_chunkwise_cpp
from .recurrent import mlstm_recurrent, mlstm_step, zero_state
from .reference import mlstm_parallel
from .variants import NORMALIZERS, STABILIZERS, mlstm_variant, mlstm_variant_step

BACKENDS: dict[str, Callable] = {
    "parallel--torch": mlstm_parallel,
    "chunkwise--torch": mlstm_chunkwise_fused,  # one autograd node with a hand-written backward
    "chunkwise--torch_autograd": mlstm_chunkwise,  # the same equations, every op recorded by autograd
    "chunkwise--cpp": mlstm_chunkwise_cpp,  # the fused form's equations in C++ for CPUs (built on first use)
    "recurrent--torch": mlstm_recurrent,
}

try:  # triton is a Linux dependency; elsewhere only the torch forms exist
    from .triton import mlstm_chunkwise_triton, mlstm_recurrent_triton
except ImportError:  # pragma: no cover
    pass
else:
    BACKENDS["chunkwise--triton"] = mlstm_chunkwise_triton
    BACKENDS["recurrent--triton"] = mlstm_recurrent_triton


def resolve_backend(backend: str, device: torch.device, head_dims: tuple[int, int] = (64, 64),
                    chunk_size: int = 64) -> str:
    """"auto" = chunkwise--triton on CUDA tensors when it is installed and tiles these shapes (head dims of at least
    16, chunk 16/32/64/128); chunkwise--cpp on CPU tensors when this machine builds it; chunkwise--torch otherwise."""
    if backend == "auto":
        triton_fits = ("chunkwise--triton" in BACKENDS and all(d >= 16 for d in head_dims)
                       and chunk_size in (16, 32, 64, 128))
        if device.type == "cuda" and triton_fits:
            return "chunkwise--triton"
        return "chunkwise--cpp" if device.type == "cpu" and cpp_available() else "chunkwise--torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown mLSTM backend {backend!r}; valid: auto, {', '.join(BACKENDS)}")
    return backend


def mlstm(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, igate: torch.Tensor, fgate: torch.Tensor, *,
          backend: str = "auto", chunk_size: int = 64, eps: float = 1e-6, initial_state=None,
          return_last_state: bool = False):
    """h (B, NH, S, DV); with ``return_last_state``: (h, (C (B,NH,DK,DV), n (B,NH,DK), m (B,NH)))."""
    if q.shape != k.shape or q.shape[:3] != v.shape[:3] or igate.shape != q.shape[:3] or fgate.shape != q.shape[:3]:
        raise ValueError(f"mlstm: shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, "
                         f"igate {tuple(igate.shape)}, fgate {tuple(fgate.shape)} do not fit (B, NH, S, D)")
    fn = BACKENDS[resolve_backend(backend, q.device, (q.shape[-1], v.shape[-1]), chunk_size)]
    return fn(q, k, v, igate, fgate, chunk_size=chunk_size, eps=eps, initial_state=initial_state,
              return_last_state=return_last_state)


__all__ = ["BACKENDS", "NORMALIZERS", "STABILIZERS", "mlstm", "mlstm_step", "mlstm_variant", "mlstm_variant_step",
           "resolve_backend", "zero_state"]
