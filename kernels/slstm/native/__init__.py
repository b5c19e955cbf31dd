"""The sLSTM recurrence as compiled C++ loops over time on a CPU (backend "cpp"); ``slstm_loop.cpp`` holds them.

Same equations, layout, saved tensors and gradients as ``torch_fused`` (../fused.py), whose Python loop costs
~25 op dispatches per step: the C++ loops run each (head, batch row) chain through all steps on its own, the chains
spread over ``torch.get_num_threads()`` OpenMP threads. The weight gradient stays one torch matmul over all steps.
float32 and float64 (half-precision inputs run with float32 states, as in the torch loops); CPU tensors only.
The library is built on first use (kernels/native.py); ``available()`` says whether this machine can build it.
"""
from __future__ import annotations

import ctypes
from pathlib import Path

import torch

from ...native import available as _built, entry, pointer as _ptr
from ..fused import recurrent_weight_grad, run_heads_first
from ..reference import State

SOURCE = Path(__file__).with_name("slstm_loop.cpp")


def available() -> bool:
    return _built(SOURCE)


def _entry(name: str, dtype: torch.dtype):
    return entry(SOURCE, name, dtype, "the sLSTM backend 'cpp'", "slstm_backend=torch_fused (or auto)")


_I64 = ctypes.c_int64


class _NativeSLSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, R, h0, c0, n0, m0, clip, igate_sigmoid):
        # x (S, NH, B, 4, DH) with the bias added; R (4, NH, DH, DH); states (NH, B, DH)
        S, NH, B, _, DH = x.shape
        x = x.contiguous()
        W = R.permute(1, 3, 0, 2).contiguous().view(NH, DH, 4 * DH)  # W[h, d, g*DH + e] = R[g, h, e, d]
        hs = x.new_empty(S + 1, NH, B, DH)
        cs, ns = torch.empty_like(hs), torch.empty_like(hs)
        hs[0], cs[0], ns[0] = h0, c0, n0
        m = m0.clone().contiguous()
        raw, act = torch.empty_like(x), torch.empty_like(x)
        _entry("slstm_forward", x.dtype)(_ptr(x), _ptr(W), _ptr(raw), _ptr(act), _ptr(hs), _ptr(cs), _ptr(ns),
                                         _ptr(m), _I64(S), _I64(NH), _I64(B), _I64(DH), ctypes.c_int(igate_sigmoid),
                                         ctypes.c_int(torch.get_num_threads()))
        ctx.save_for_backward(W, hs, cs, ns, raw, act)
        ctx.clip, ctx.igate_sigmoid = clip, igate_sigmoid
        ctx.mark_non_differentiable(m)
        return hs[1:], hs[S].clone(), cs[S].clone(), ns[S].clone(), m

    @staticmethod
    def backward(ctx, d_out, d_h_last, d_c_last, d_n_last, _d_m):
        W, hs, cs, ns, raw, act = ctx.saved_tensors
        S, NH, B, _, DH = raw.shape
        zeros = hs.new_zeros(NH, B, DH)
        d_out = zeros.expand(S, NH, B, DH).contiguous() if d_out is None else d_out.contiguous()
        # the gradients of the final state, turned into those of the initial state in place
        dh, dc, dn = ((zeros if g is None else g).clone().contiguous() for g in (d_h_last, d_c_last, d_n_last))
        WT = W.transpose(1, 2).contiguous()  # (NH, 4 DH, DH)
        d_raw = torch.empty_like(raw)
        clip = -1.0 if ctx.clip is None else float(ctx.clip)
        _entry("slstm_backward", raw.dtype)(_ptr(WT), _ptr(raw), _ptr(act), _ptr(cs), _ptr(ns), _ptr(d_out),
                                            _ptr(d_raw), _ptr(dh), _ptr(dc), _ptr(dn), _I64(S), _I64(NH), _I64(B),
                                            _I64(DH), ctypes.c_int(ctx.igate_sigmoid), ctypes.c_double(clip),
                                            ctypes.c_int(torch.get_num_threads()))
        return d_raw, recurrent_weight_grad(hs, d_raw), dh, dc, dn, None, None, None


@torch.compiler.disable  # a call into a ctypes library: nothing for the compiler to trace
def slstm_cpp(x: torch.Tensor, R: torch.Tensor, b: torch.Tensor, *, initial_state: State | None = None,
              return_last_state: bool = False, recurrent_grad_clip: float | None = None, igate_activation: str = "exp"):
    """x (B, S, 4, NH, DH) -> h (B, S, NH, DH), as ``slstm_torch``; CPU tensors only."""
    if x.device.type != "cpu":
        raise ValueError(f"the sLSTM backend 'cpp' runs on CPU tensors only (got {x.device.type}); use "
                         "slstm_backend=auto (triton on CUDA)")
    return run_heads_first(_NativeSLSTM, x, R, b, initial_state, return_last_state, recurrent_grad_clip,
                           igate_activation)
