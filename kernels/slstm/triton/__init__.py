"""The fused Triton sLSTM behind ``slstm(..., backend="triton")``.

Supported: any B and S, head dims DH of at least 16 (tiled in blocks of up to 64; the paper's 125M and 1.3B sLSTM
heads are 192 and 512 wide), float32, bfloat16 or float16 inputs
with float32 states; CUDA tensors, or CPU tensors under TRITON_INTERPRET=1. The backward gives the gradients of x, R,
b and the initial state (h, c, n), equal to autograd of the torch loop; the recurrent gradient can be clipped.
"""
from __future__ import annotations

import os

import torch
import triton

from .kernels import slstm_bwd, slstm_fwd

BATCH_BLOCK = 16  # rows per program: tl.dot's minimum


def _check(x: torch.Tensor) -> None:
    if not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("the Triton sLSTM kernel needs CUDA tensors (or TRITON_INTERPRET=1 on CPU); "
                           "use backend='torch'")
    DH = x.shape[-1]
    if DH < 16:
        raise ValueError(f"the Triton sLSTM kernel needs head dims of at least 16 (tl.dot's smallest tile); got "
                         f"DH={DH} (use backend='torch')")
    if x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"the Triton sLSTM kernel takes float32, bfloat16 or float16 inputs; got {x.dtype}")


def _blocks(DH: int) -> dict:
    tile = min(64, max(16, triton.next_power_of_2(DH)))
    return dict(BB=BATCH_BLOCK, BO=tile, NT=triton.cdiv(DH, tile))


class FusedSLSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, R, b, h0, c0, n0, m0, clip):
        B, S, _, NH, DH = x.shape
        dev = x.device
        states = torch.empty(S + 1, 4, B, NH, DH, device=dev)
        if h0 is None:
            states[0, :3] = 0.0
            states[0, 3] = float("-inf")
        else:
            for i, t in enumerate((h0, c0, n0, m0)):
                states[0, i] = t.float()
        raw = torch.empty(S, 4, B, NH, DH, device=dev)
        h = torch.empty(B, S, NH, DH, device=dev, dtype=x.dtype)
        prec = "ieee" if x.dtype == torch.float32 else "tf32"
        grid = (NH, triton.cdiv(B, BATCH_BLOCK))
        slstm_fwd[grid](x.contiguous(), R.contiguous(), b.contiguous(), states, raw, h, B, S, NH, DH, **_blocks(DH),
                        PREC=prec)
        ctx.save_for_backward(R, states, raw)
        ctx.meta = (x.dtype, b.dtype, h0 is not None, clip, prec)
        last = states[S].clone()  # (h, c, n, m) after the last step
        return h, last[0], last[1], last[2], last[3]

    @staticmethod
    def backward(ctx, dh, dh_last, dc_last, dn_last, dm_last):
        R, states, raw = ctx.saved_tensors
        x_dtype, b_dtype, has_init, clip, prec = ctx.meta
        S, _, B, NH, DH = raw.shape
        dev = raw.device

        def seed(g):
            return torch.zeros(B, NH, DH, device=dev) if g is None else g.float().contiguous().clone()

        draw = torch.empty(S, 4, B, NH, DH, device=dev)
        drec, dc_buf, dn_buf = torch.zeros(B, NH, DH, device=dev), seed(dc_last), seed(dn_last)
        grid = (NH, triton.cdiv(B, BATCH_BLOCK))
        slstm_bwd[grid](R.contiguous(), states, raw, dh.contiguous(), seed(dh_last), draw, drec, dc_buf, dn_buf,
                        B, S, NH, DH, float(clip or 0.0), **_blocks(DH), PREC=prec, CLIP=clip is not None)
        dx = draw.permute(2, 0, 1, 3, 4).to(x_dtype)  # (B, S, 4, NH, DH)
        dR = torch.einsum("tgbho,tbhi->ghoi", draw, states[:S, 0]).to(R.dtype)  # sum over time and batch
        db = draw.sum((0, 2)).to(b_dtype)
        init = (drec, dc_buf, dn_buf, None) if has_init else (None, None, None, None)
        return dx, dR, db, *init, None


def slstm_triton(x, R, b, *, initial_state=None, return_last_state: bool = False,
                 recurrent_grad_clip: float | None = None):
    _check(x)
    h0, c0, n0, m0 = initial_state if initial_state is not None else (None, None, None, None)
    m0 = m0.detach() if m0 is not None else None  # the stabilizer carries no gradient
    h, *last = FusedSLSTM.apply(x, R, b, h0, c0, n0, m0, recurrent_grad_clip)
    return (h, tuple(last)) if return_last_state else h
