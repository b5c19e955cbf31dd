"""Triton gated linear attention behind ``gla(..., backend="chunkwise--triton")``: same signature and results as the
torch forms (kernels/gla/__init__.py), forward and backward in Triton.

Supported: any S (the last chunk is masked), DK 1..256 (one key tile of BK = next power of two >= 16), any DV
(tiles of BV = 16..64), inputs in float32, bfloat16, float16 (float32 compute and states) or float64 (float64
compute: it makes the form testable against the reference at 1e-12; slow on GPUs, so "auto" never picks it);
CUDA tensors, or CPU tensors under TRITON_INTERPRET=1. ``chunk_size`` 16, 32 or 64 are used as given; other values
are rounded to the nearest of those (chunking changes only the summation order, never the result), and a sequence
shorter than the chunk uses the smallest of them that covers it.

Kernels (one launch each; chunkwise_fwd.py, chunkwise_bwd.py, chunkwise_dg.py, shared pieces in blocks.py):
    forward   chunk_states_fwd (BH, DV tiles)        the scan over chunks: the state at every chunk start and the last
              chunk_outputs_fwd (BH, NC, DV tiles)   each chunk's outputs from its start state and its own positions
    backward  chunk_states_bwd (BH, DV tiles)        the reverse scan: the gradient of every chunk's end state, dS_0
              chunk_dv (BH, NC, DV tiles), chunk_dqk (BH, NC), chunk_dg (BH, NC, L / 16)   per-chunk gradients
    the bonus gradient is a plain reduction on the host (its term has no decay).
What passes from forward to backward: q, k, v, the log decays and the chunk states (BH, NC + 1, DK, DV) in the compute
dtype (the last one is S_T); the backward adds the end-state gradients (BH, NC, DK, DV). No state is recomputed.
d log_decay is computed directly, pair by pair (chunkwise_dg.py), not from dq and dk by the usual identity: that
identity cancels O(1) terms to get a result that, with strong decays, is far below their rounding.

Fixed decays (H, DK) and (H,) are expanded to the data-dependent layout (B, H, S, DK) before the kernels: one
B * H * S * DK compute-dtype tensor more in the forward (the size of k in float32) and one in the backward, whose
sum over batch and time (autograd, through the expand) is their gradient.
"""
from __future__ import annotations

import os

import torch
import triton

from ..recurrent import compute_dtype
from .chunkwise_bwd import chunk_dqk, chunk_dv, chunk_states_bwd
from .chunkwise_dg import chunk_dg
from .chunkwise_fwd import chunk_outputs_fwd, chunk_states_fwd

CHUNK_SIZES = (16, 32, 64)
SB = 16  # sub-block rows (blocks.py); tl.dot's minimum tile
MAX_DK = 256
DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if not q.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("the Triton GLA kernels need CUDA tensors (or TRITON_INTERPRET=1 on CPU); "
                           "use backend='chunkwise--torch'")
    if q.shape[-1] > MAX_DK:
        raise ValueError(f"the Triton GLA kernels hold the key dim in one tile of at most {MAX_DK}; got DK="
                         f"{q.shape[-1]} (use backend='chunkwise--torch')")
    for t in (q, k, v):
        if t.dtype not in DTYPES:
            raise ValueError(f"the Triton GLA kernels take {', '.join(map(str, DTYPES))} inputs; got {t.dtype}")


def chunk_length(chunk_size: int, S: int) -> int:
    """The chunk the kernels use: chunk_size if supported, else the nearest supported; at most what covers S."""
    L = min(CHUNK_SIZES, key=lambda c: (abs(c - chunk_size), c))
    return min(L, max(CHUNK_SIZES[0], triton.next_power_of_2(S)))


def _tiles(DK: int, DV: int) -> tuple[int, int, int, int]:
    """(BK, BV, NV, num_warps): the key dim in one tile; DV in tiles of at most 64 (the (BK, BV) state tile then stays
    <= 256 x 64); 8 warps from a 64-wide key tile (ptxas on sm_90, chunk 64: with 4 warps chunk_dqk and chunk_dg
    spill at BK = 64, with 8 only chunk_dg a little; at BK = 128 and 256 both spill, 16 warps do not help)."""
    BK = max(16, triton.next_power_of_2(DK))
    BV = min(64, max(16, triton.next_power_of_2(DV)))
    return BK, BV, triton.cdiv(DV, BV), 4 if BK <= 32 else 8


def _precision(dtype: torch.dtype) -> str:
    """float32 / float64 inputs: IEEE products (compared with float64 references); half inputs: TF32 products
    (their own rounding, 2^-8 or 2^-11, is coarser) with float32 accumulation, as the mLSTM kernels do."""
    return "tf32" if dtype in (torch.bfloat16, torch.float16) else "ieee"


class ChunkwiseGLA(torch.autograd.Function):
    """Forward: chunk-state scan, then per-chunk outputs. Backward: reverse chunk-state scan, then per-chunk dv, dq/dk
    and d log_decay kernels; the bonus gradient is a reduction on the host."""

    @staticmethod
    def forward(ctx, q, k, v, g, bonus, s0, scale: float, L: int):
        B, H, S, DK = q.shape
        DV, BH, dev, ct = v.shape[-1], B * H, q.device, g.dtype
        NC = triton.cdiv(S, L)
        BK, BV, NV, warps = _tiles(DK, DV)
        q3, k3, v3 = (t.reshape(BH, S, -1).contiguous() for t in (q, k, v))
        g3 = g.reshape(BH, S, DK).contiguous()
        scale_t = torch.full((1,), scale, dtype=ct, device=dev)
        u = scale_t if bonus is None else bonus.contiguous()  # a dummy pointer without bonus (never read)
        s0 = torch.zeros(BH, DK, DV, dtype=ct, device=dev) if s0 is None else s0.reshape(BH, DK, DV).contiguous()
        st = torch.empty(BH, NC + 1, DK, DV, dtype=ct, device=dev)
        tiles = dict(L=L, SB=SB, BK=BK, BV=BV, PREC=_precision(q.dtype), num_warps=warps)
        chunk_states_fwd[(BH, NV)](k3, v3, g3, s0, st, S, DK, DV, NC, **tiles)
        o = torch.empty(BH, S, DV, dtype=q.dtype, device=dev)
        chunk_outputs_fwd[(BH, NC, NV)](q3, k3, v3, g3, u, scale_t, st, o, S, H, DK, DV, NC, BONUS=bonus is not None,
                                        **tiles)
        ctx.save_for_backward(q3, k3, v3, g3, u, scale_t, st)
        ctx.meta = (B, H, S, DK, DV, L, NC, scale, bonus is not None, k.dtype, v.dtype)
        return o.view(B, H, S, DV), st[:, NC].reshape(B, H, DK, DV).clone()

    @staticmethod
    def backward(ctx, do, ds_last):
        q3, k3, v3, g3, u, scale_t, st = ctx.saved_tensors
        B, H, S, DK, DV, L, NC, scale, has_bonus, k_dtype, v_dtype = ctx.meta
        BH, dev, ct = B * H, q3.device, g3.dtype
        BK, BV, NV, warps = _tiles(DK, DV)
        tiles = dict(L=L, SB=SB, BK=BK, BV=BV, BONUS=has_bonus, PREC=_precision(q3.dtype), num_warps=warps)
        do3 = do.reshape(BH, S, DV).contiguous()
        ds_last = ds_last.reshape(BH, DK, DV).to(ct).contiguous()
        dst = torch.empty(BH, NC, DK, DV, dtype=ct, device=dev)
        ds0 = torch.empty(BH, DK, DV, dtype=ct, device=dev)
        chunk_states_bwd[(BH, NV)](q3, do3, g3, scale_t, ds_last, dst, ds0, S, DK, DV, NC, **tiles)
        dv = torch.empty(BH, S, DV, dtype=ct, device=dev)
        chunk_dv[(BH, NC, NV)](q3, k3, do3, g3, u, scale_t, dst, dv, S, H, DK, DV, NC, **tiles)
        dq = torch.empty(BH, S, DK, dtype=ct, device=dev)
        dk = torch.empty(BH, S, DK, dtype=ct, device=dev)
        chunk_dqk[(BH, NC)](q3, k3, v3, do3, g3, u, scale_t, st, dst, dq, dk, S, H, DK, DV, NC, NV=NV, **tiles)

        dg = None
        if ctx.needs_input_grad[3]:  # the costliest of the four: skipped for decays that take no gradient
            dg = torch.empty(BH, S, DK, dtype=ct, device=dev)
            chunk_dg[(BH, NC, L // SB)](q3, k3, v3, do3, g3, scale_t, st, dst, dg, S, DK, DV, NC, NV=NV, **tiles)
            dg = dg.view(B, H, S, DK)
        dbonus = None
        if has_bonus:  # o_t has the term (qs_t * u * k_t) . 1 (v_t . dO_t): no decay, so a plain reduction
            qk_dov = scale * q3.to(ct) * k3.to(ct) * (do3.to(ct) * v3.to(ct)).sum(-1, keepdim=True)
            dbonus = qk_dov.view(B, H, S, DK).sum((0, 2))
        ds0_out = ds0.view(B, H, DK, DV) if ctx.needs_input_grad[5] else None
        return (dq.view(B, H, S, DK).to(q3.dtype), dk.view(B, H, S, DK).to(k_dtype),
                dv.view(B, H, S, DV).to(v_dtype), dg, dbonus, ds0_out, None, None)


def gla_chunkwise_triton(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor, *,
                         bonus: torch.Tensor | None = None, scale: float | None = None, chunk_size: int = 64,
                         initial_state: torch.Tensor | None = None, return_last_state: bool = False):
    """Same signature and results as ``gla_chunkwise`` (kernels/gla/chunkwise.py); see the module docstring."""
    check(q, k, v)
    B, H, S, DK = q.shape
    ct = compute_dtype(q.dtype)
    scale = DK ** -0.5 if scale is None else float(scale)
    g = log_decay.to(ct)
    if g.dim() == 1:
        g = g[None, :, None, None].expand(B, H, S, DK)
    elif g.dim() == 2:
        g = g[None, :, None, :].expand(B, H, S, DK)
    o, s_last = ChunkwiseGLA.apply(q, k, v, g, None if bonus is None else bonus.to(ct),
                                   None if initial_state is None else initial_state.to(ct), scale,
                                   chunk_length(chunk_size, S))
    return (o, s_last) if return_last_state else o


__all__ = ["CHUNK_SIZES", "MAX_DK", "ChunkwiseGLA", "chunk_length", "gla_chunkwise_triton"]
