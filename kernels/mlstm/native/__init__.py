"""The chunkwise mLSTM as compiled C++ on a CPU (backend "chunkwise--cpp"); ``chunkwise.cpp`` holds it.

Same equations, stabilizers and gradients as "chunkwise--torch" (../fused.py). The torch form runs each step as a
batched op over every chunk, so its L x L intermediates and per-chunk states go through memory and its 64-wide
matmuls run far below the machine's speed; here each (batch, head) chain runs on one OpenMP thread from its first
chunk to its last with every intermediate in cache. The backward recomputes the chunk states instead of saving them
(the op saves only its inputs and h). Both passes are torch custom ops (``xlstm_suite::mlstm_chunkwise``), so a
``torch.compile``'d block keeps them as single nodes. q, k, v may be strided views (the mLSTM layer's heads are
views of (B, S, NH, D) tensors): they are read in place, and h and the gradients come in the same layout.
float32 and float64 (half-precision inputs compute in float32, as in the torch forms); CPU tensors only. The
library is built on first use (kernels/native.py); ``available()`` says whether this machine can build it.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import torch
import torch.nn.functional as F

from ...native import available as _built, entry, pointer as _ptr
from ..chunkwise import start_state
from ..reference import State, compute_dtype

SOURCE = Path(__file__).with_name("chunkwise.cpp")


@torch.compiler.assume_constant_result  # a fixed fact of the machine: no graph break where a compiled block asks
def available() -> bool:
    return _built(SOURCE)


def _entry(name: str, dtype: torch.dtype):
    return entry(SOURCE, name, dtype, "the mLSTM backend 'chunkwise--cpp'", "backend='chunkwise--torch' (or auto)")


def _heads(t: torch.Tensor) -> torch.Tensor:
    """(B, NH, S, D) with unit stride in D (a view where it has one)."""
    return t if t.stride(-1) == 1 else t.contiguous()


def _like(t: torch.Tensor) -> torch.Tensor:
    """An empty tensor in t's layout where that has unit stride in the last dim, else contiguous."""
    out = torch.empty_like(t)
    return out if out.stride(-1) == 1 else torch.empty(t.shape, dtype=t.dtype)


def _strides(*tensors: torch.Tensor):
    values = [s for t in tensors for s in t.stride()[:3]]
    return (ctypes.c_int64 * len(values))(*values)


def _common(q, k, v, igate, log_f, c_init, n_init, m_init, chunk_size, eps, h):
    """The arguments both entry points start with; igate, log f and the states made contiguous."""
    B, NH, S, DK = q.shape
    shape = (ctypes.c_int64 * 6)(B, NH, S, DK, v.shape[-1], chunk_size)
    tensors = [t.contiguous() for t in (igate, log_f, c_init, n_init, m_init)]
    return tensors, [_ptr(q), _ptr(k), _ptr(v), *map(_ptr, tensors), _strides(q, k, v, h), shape,
                     ctypes.c_double(DK ** -0.5), ctypes.c_double(eps)]


@torch.library.custom_op("xlstm_suite::mlstm_chunkwise", mutates_args=())
def _forward_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, igate: torch.Tensor, log_f: torch.Tensor,
                c_init: torch.Tensor, n_init: torch.Tensor, m_init: torch.Tensor, chunk_size: int, eps: float
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> h (in v's layout), the final C, n, m"""
    q, k, v = _heads(q), _heads(k), _heads(v)
    h = _like(v)
    c, n, m = torch.empty_like(c_init), torch.empty_like(n_init), torch.empty_like(m_init)
    kept, args = _common(q, k, v, igate, log_f, c_init, n_init, m_init, chunk_size, eps, h)  # kept: alive in the call
    _entry("mlstm_chunkwise_forward", q.dtype)(*args, _ptr(h), _ptr(c), _ptr(n), _ptr(m),
                                               ctypes.c_int(torch.get_num_threads()))
    return h, c, n, m


@_forward_op.register_fake
def _(q, k, v, igate, log_f, c_init, n_init, m_init, chunk_size, eps):
    return _like(v), torch.empty_like(c_init), torch.empty_like(n_init), torch.empty_like(m_init)


@torch.library.custom_op("xlstm_suite::mlstm_chunkwise_backward", mutates_args=())
def _backward_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, igate: torch.Tensor, log_f: torch.Tensor,
                 c_init: torch.Tensor, n_init: torch.Tensor, m_init: torch.Tensor, h: torch.Tensor, dh: torch.Tensor,
                 dc_last: torch.Tensor, dn_last: torch.Tensor, chunk_size: int, eps: float) -> list[torch.Tensor]:
    """-> dq, dk, dv (in q's, k's, v's layout), di, dlog_f, dC, dn, dm of the initial state"""
    q, k, v, h, dh = (_heads(t) for t in (q, k, v, h, dh))
    dq, dk, dv = _like(q), _like(k), _like(v)
    di, dlf = q.new_empty(igate.shape), q.new_empty(igate.shape)  # contiguous
    dc, dn, dm = torch.empty_like(c_init), torch.empty_like(n_init), torch.empty_like(m_init)
    kept, args = _common(q, k, v, igate, log_f, c_init, n_init, m_init, chunk_size, eps, h)
    dc_last, dn_last = dc_last.contiguous(), dn_last.contiguous()
    _entry("mlstm_chunkwise_backward", q.dtype)(
        *args, _ptr(h), _ptr(dh), _ptr(dc_last), _ptr(dn_last), _strides(dh, dq, dk, dv), _ptr(dq), _ptr(dk),
        _ptr(dv), _ptr(di), _ptr(dlf), _ptr(dc), _ptr(dn), _ptr(dm), ctypes.c_int(torch.get_num_threads()))
    return [dq, dk, dv, di, dlf, dc, dn, dm]


@_backward_op.register_fake
def _(q, k, v, igate, log_f, c_init, n_init, m_init, h, dh, dc_last, dn_last, chunk_size, eps):
    return [_like(q), _like(k), _like(v), q.new_empty(igate.shape), q.new_empty(igate.shape), torch.empty_like(c_init),
            torch.empty_like(n_init), torch.empty_like(m_init)]


def _setup_context(ctx, inputs, output):
    *tensors, ctx.chunk_size, ctx.eps = inputs
    ctx.save_for_backward(*tensors, output[0])
    ctx.mark_non_differentiable(output[3])


def _backward(ctx, dh, dc_last, dn_last, _dm_last):
    *inputs, h = ctx.saved_tensors
    c_init, n_init = inputs[5], inputs[6]
    dh = torch.zeros_like(h) if dh is None else dh
    dc_last = torch.zeros_like(c_init) if dc_last is None else dc_last
    dn_last = torch.zeros_like(n_init) if dn_last is None else dn_last
    grads = _backward_op(*inputs, h, dh, dc_last, dn_last, ctx.chunk_size, ctx.eps)
    return (*grads, None, None)


_forward_op.register_autograd(_backward, setup_context=_setup_context)


def mlstm_chunkwise_cpp(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, igate: torch.Tensor, fgate: torch.Tensor,
                        *, chunk_size: int = 64, eps: float = 1e-6, initial_state: State | None = None,
                        return_last_state: bool = False):
    """Same signature and results as ``mlstm_chunkwise_fused`` (values, final state and every gradient)."""
    if q.device.type != "cpu":
        raise ValueError(f"the mLSTM backend 'chunkwise--cpp' runs on CPU tensors only (got {q.device.type}); use "
                         "backend='auto' (chunkwise--triton on CUDA)")
    if chunk_size < 1:
        raise ValueError(f"mLSTM chunk_size must be at least 1 (got {chunk_size})")
    out_dtype, ct = q.dtype, compute_dtype(q.dtype)
    q, k, v, igate, fgate = (t.to(ct) for t in (q, k, v, igate, fgate))
    state = start_state(initial_state, q, v)
    with torch.autocast("cpu", enabled=False):
        h, c, n, m = _forward_op(q, k, v, igate, F.logsigmoid(fgate), *state, chunk_size, eps)
    h = h.to(out_dtype)
    return (h, (c, n, m)) if return_last_state else h
