"""The block-diagonal linear map of the mLSTM's q/k/v (and the sLSTM's gate) projections.

``block_diagonal(x, weight, *, parts=1, backend="auto")``: x (..., NB BI), weight (NB, BO, BI) -> y (..., NB BO) with
y[..., n BO + o] = sum_i weight[n, o, i] x[..., n BI + i], returned as ``parts`` tensors (..., NB BO / parts) of
consecutive outputs of every block: several maps of one input with their weights stacked along BO (the mLSTM's q and
k) in one pass, each output its own contiguous tensor. Backends: "torch" (one einsum, the reference) and "cpp"
(``block_diagonal.cpp``: forward and backward as single passes over the rows, CPU float32/float64, built on first use
by kernels/native.py). The mLSTM's blocks of 4 inputs make the einsum a batched matmul of 4 x 4 (or 4 x 8) tiles
behind layout copies: at B 2 x S 2048 x 256 channels the cpp pass runs fwd+bwd 2.5-2.7x faster than the einsum
(``python -m kernels.bench.blockdiag_cpu``, results/kernels/blockdiag_cpu.csv). "auto" takes cpp for CPU float32/float64 inputs with blocks of
4 inputs outside autocast when it builds here, torch otherwise.

The cpp backend is a torch custom op (``xlstm_suite::block_diagonal``) with its own backward op, so that
torch.compile treats it as one opaque node inside a compiled block instead of breaking the graph around it.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from ..native import DTYPE_SUFFIX, available as _built, entry, pointer as _ptr

SOURCE = Path(__file__).with_name("block_diagonal.cpp")


@torch.compiler.assume_constant_result  # a fixed fact of the machine: no graph break where a compiled block asks
def cpp_available() -> bool:
    return _built(SOURCE)


def block_diagonal_torch(x: torch.Tensor, weight: torch.Tensor, parts: int = 1) -> list[torch.Tensor]:
    NB, BO, BI = weight.shape
    y = torch.einsum("...ni,noi->...no", x.reshape(*x.shape[:-1], NB, BI), weight)  # (..., NB, BO)
    return [part.reshape(*x.shape[:-1], NB * (BO // parts)) for part in y.chunk(parts, dim=-1)]


def _entry(name: str, dtype: torch.dtype):
    return entry(SOURCE, name, dtype, "the block-diagonal backend 'cpp'", "backend='torch' (or auto)")


def _rows(x: torch.Tensor) -> torch.Tensor:
    """x as (rows, channels) with unit channel stride; a view where possible (the mLSTM's x_m is a column slice)."""
    rows = x.reshape(-1, x.shape[-1])
    return rows if rows.stride(-1) == 1 else rows.contiguous()


def _sizes(rows: torch.Tensor, weight: torch.Tensor, parts: int) -> list:
    NB, BO, BI = weight.shape
    return [ctypes.c_int64(rows.stride(0)), ctypes.c_int64(rows.shape[0]), ctypes.c_int64(NB), ctypes.c_int64(BO),
            ctypes.c_int64(BI), ctypes.c_int64(parts)]


@torch.library.custom_op("xlstm_suite::block_diagonal", mutates_args=())
def _forward_op(x: torch.Tensor, weight: torch.Tensor, parts: int) -> torch.Tensor:
    """-> (parts, ..., NB BO / parts)"""
    rows, weight = _rows(x), weight.contiguous()
    NB, BO, _ = weight.shape
    y = x.new_empty(parts, rows.shape[0], NB * BO // parts)
    stride, R, NB, BO, BI, parts_ = _sizes(rows, weight, parts)
    _entry("block_diagonal_forward", x.dtype)(
        _ptr(rows), stride, _ptr(weight), _ptr(y), R, NB, BO, BI, parts_, ctypes.c_int(torch.get_num_threads()))
    return y.view(parts, *x.shape[:-1], y.shape[-1])


@_forward_op.register_fake
def _(x, weight, parts):
    return x.new_empty(parts, *x.shape[:-1], weight.shape[0] * weight.shape[1] // parts)


@torch.library.custom_op("xlstm_suite::block_diagonal_backward", mutates_args=())
def _backward_op(x: torch.Tensor, weight: torch.Tensor, dy: torch.Tensor, parts: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    rows, weight, dy = _rows(x), weight.contiguous(), dy.contiguous()
    dx, dw = x.new_empty(rows.shape), torch.empty_like(weight)
    stride, R, NB, BO, BI, parts_ = _sizes(rows, weight, parts)
    _entry("block_diagonal_backward", x.dtype)(
        _ptr(rows), stride, _ptr(weight), _ptr(dy), _ptr(dx), _ptr(dw), R, NB, BO, BI, parts_,
        ctypes.c_int(torch.get_num_threads()))
    return dx.view(x.shape), dw


@_backward_op.register_fake
def _(x, weight, dy, parts):
    return x.new_empty(x.shape), torch.empty_like(weight)


def _setup_context(ctx, inputs, output):
    x, weight, ctx.parts = inputs
    ctx.save_for_backward(x, weight)


def _backward(ctx, dy):
    x, weight = ctx.saved_tensors
    dx, dw = _backward_op(x, weight, dy, ctx.parts)
    return dx, dw, None


_forward_op.register_autograd(_backward, setup_context=_setup_context)


def resolve_backend(backend: str, x: torch.Tensor, weight: torch.Tensor) -> str:
    if backend == "auto":
        fits = (x.device.type == "cpu" and x.dtype in DTYPE_SUFFIX and weight.dtype == x.dtype
                and weight.shape[2] == 4 and not torch.is_autocast_enabled("cpu"))
        return "cpp" if fits and cpp_available() else "torch"
    if backend not in ("torch", "cpp"):
        raise ValueError(f"unknown block-diagonal backend {backend!r}; valid: auto, torch, cpp")
    if backend == "cpp" and (x.device.type != "cpu" or x.dtype not in DTYPE_SUFFIX or weight.dtype != x.dtype):
        raise ValueError(f"the block-diagonal backend 'cpp' takes CPU float32/float64 tensors of one dtype (got "
                         f"{x.device.type} {x.dtype} and {weight.dtype}); use backend='torch' (or auto)")
    return backend


def block_diagonal(x: torch.Tensor, weight: torch.Tensor, *, parts: int = 1, backend: str = "auto"
                   ) -> list[torch.Tensor]:
    """x (..., NB BI), weight (NB, BO, BI) -> ``parts`` tensors (..., NB BO / parts)."""
    NB, BO, BI = weight.shape
    if x.shape[-1] != NB * BI or BO % parts:
        raise ValueError(f"block_diagonal: x's last dim {x.shape[-1]} is not NB x BI = {NB} x {BI}, or {BO} outputs "
                         f"per block do not split into {parts} parts")
    if resolve_backend(backend, x, weight) == "cpp":
        return list(_forward_op(x, weight, parts).unbind(0))
    return block_diagonal_torch(x, weight, parts)


__all__ = ["block_diagonal", "block_diagonal_torch", "cpp_available", "resolve_backend"]
