"""The sLSTM op (the contract: docs/contracts.md).

``slstm(x, R, b, *, backend="auto", initial_state=None, return_last_state=False)``: x (B, S, 4, NH, DH) input
pre-activations in gate order (i, f, z, o); R (4, NH, DH, DH) with R[g, h] @ h_prev; b (4, NH, DH).
Returns h (B, S, NH, DH); with ``return_last_state`` also (h, c, n, m), each (B, NH, DH).
"""
from __future__ import annotations

from typing import Callable

import torch

from .fused import slstm_torch_fused
from .native import available as cpp_available, slstm_cpp
from .reference import slstm_step, slstm_torch, zero_state

# "torch": the reference loop (autograd through every op); "torch_fused": the same loop as one autograd node with a
# hand-written backward; "cpp": that node's loops compiled (CPU, built on first use); "triton": the CUDA kernels
BACKENDS: dict[str, Callable] = {"torch": slstm_torch, "torch_fused": slstm_torch_fused, "cpp": slstm_cpp}

# "auto" on a CPU: the compiled loops while a step holds at most this many numbers (B NH DH) per thread, where the
# torch loop's op dispatch outweighs its vectorized math (kernels.bench.slstm_cpu: 15x at B 1, NH 4, DH 32;
# 1.4-1.5x at 512 per thread; 0.9x at 1024 per thread on one thread, 1.1x on two)
CPP_MAX_STEP_ELEMENTS_PER_THREAD = 768

try:  # triton is a Linux dependency; elsewhere only the torch loop exists
    from .triton import slstm_triton
except ImportError:  # pragma: no cover
    pass
else:
    BACKENDS["triton"] = slstm_triton


def resolve_backend(backend: str, device: torch.device, head_dim: int = 64, igate_activation: str = "exp",
                    step_elements: int | None = None) -> str:
    """"auto" = triton on CUDA tensors when it is installed and tiles the head dim (at least 16); on a CPU, cpp when it
    builds here and a step's B NH DH numbers (``step_elements``) are few per thread (see above); torch_fused otherwise.
    The sigmoid input gate (an ablation) exists in the torch and cpp loops only."""
    if backend == "auto":
        if device.type == "cuda":
            fits = "triton" in BACKENDS and head_dim >= 16 and igate_activation == "exp"
            return "triton" if fits else "torch_fused"
        few = step_elements is not None and step_elements <= CPP_MAX_STEP_ELEMENTS_PER_THREAD * torch.get_num_threads()
        return "cpp" if few and device.type == "cpu" and cpp_available() else "torch_fused"
    if backend not in BACKENDS:
        raise ValueError(f"unknown sLSTM backend {backend!r}; valid: auto, {', '.join(BACKENDS)}")
    if igate_activation != "exp" and backend == "triton":
        raise ValueError(f"the sLSTM backend {backend!r} has the exponential input gate only; use slstm_backend=torch "
                         f"(or auto) with slstm_igate_activation={igate_activation!r}")
    return backend


def slstm_forward(x: torch.Tensor, R: torch.Tensor, b: torch.Tensor, *, backend: str = "auto",
                  initial_state=None, return_last_state: bool = False, recurrent_grad_clip: float | None = None,
                  igate_activation: str = "exp"):
    """``slstm`` plus the paper's option to clip the recurrent gradient and the input-gate ablation (used by the sLSTM
    layer)."""
    B, S, G, NH, DH = x.shape
    if G != 4 or R.shape != (4, NH, DH, DH) or b.shape != (4, NH, DH):
        raise ValueError(f"slstm: shapes x {tuple(x.shape)}, R {tuple(R.shape)}, b {tuple(b.shape)} do not fit "
                         "x (B, S, 4, NH, DH), R (4, NH, DH, DH), b (4, NH, DH)")
    name = resolve_backend(backend, x.device, DH, igate_activation, step_elements=B * NH * DH)
    extra = {"igate_activation": igate_activation} if name != "triton" else {}
    return BACKENDS[name](x, R, b, initial_state=initial_state, return_last_state=return_last_state,
                          recurrent_grad_clip=recurrent_grad_clip, **extra)


def slstm(x: torch.Tensor, R: torch.Tensor, b: torch.Tensor, *, backend: str = "auto", initial_state=None,
          return_last_state: bool = False):
    return slstm_forward(x, R, b, backend=backend, initial_state=initial_state, return_last_state=return_last_state)


__all__ = ["BACKENDS", "slstm", "slstm_forward", "slstm_step", "resolve_backend", "zero_state"]
