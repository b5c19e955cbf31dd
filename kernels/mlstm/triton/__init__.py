"""Triton mLSTM kernels behind ``mlstm(..., backend="chunkwise--triton" | "recurrent--triton")``.

Supported: any S; head dims DK, DV from 16 (tiled in blocks of up to 64, so any width: the paper's 125M and 1.3B
mLSTM heads are 384 and 1024 wide), the recurrent kernel DK up to 256 (it holds a whole DK x 64 slice of C); chunk
sizes 16, 32, 64, 128; inputs in float32, bfloat16 or float16 with float32 states and accumulation; CUDA tensors, or
CPU tensors under TRITON_INTERPRET=1. Anything else is refused with a message instead of computing wrong numbers.
The kernels cast their float arguments (scale, eps) to float32 themselves: torch.compile hands them over as float64.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
import triton

from .chunkwise_bwd import chunk_grads, chunk_states_bwd
from .chunkwise_fwd import chunk_outputs_fwd, chunk_states_fwd
from .recurrent import recurrent_fwd

CHUNK_SIZES = (16, 32, 64, 128)
MIN_HEAD_DIM = 16  # tl.dot's smallest tile
RECURRENT_MAX_DK = 256  # the recurrent kernel keeps all of DK in one tile
DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _check(q: torch.Tensor, v: torch.Tensor, chunk_size: int | None) -> None:
    """chunk_size None: the recurrent kernel."""
    if not q.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise RuntimeError("the Triton mLSTM kernels need CUDA tensors (or TRITON_INTERPRET=1 on CPU); "
                           "use backend='chunkwise--torch'")
    for name, d in (("DK", q.shape[-1]), ("DV", v.shape[-1])):
        if d < MIN_HEAD_DIM:
            raise ValueError(f"the Triton mLSTM kernels need head dims of at least {MIN_HEAD_DIM}; got {name}={d} "
                             "(use backend='chunkwise--torch')")
    if chunk_size is None and q.shape[-1] > RECURRENT_MAX_DK:
        raise ValueError(f"the recurrent Triton mLSTM kernel takes DK up to {RECURRENT_MAX_DK}; got "
                         f"DK={q.shape[-1]} (use backend='chunkwise--triton' or 'recurrent--torch')")
    if chunk_size is not None and chunk_size not in CHUNK_SIZES:
        raise ValueError(f"the Triton mLSTM kernels take chunk_size in {CHUNK_SIZES}; got {chunk_size}")
    if q.dtype not in DTYPES:
        raise ValueError(f"the Triton mLSTM kernels take {', '.join(map(str, DTYPES))} inputs; got {q.dtype}")


def _tile(d: int) -> tuple[int, int]:
    """(block, number of blocks) for a head dim: blocks of at most 64, at least 16 (tl.dot's minimum)."""
    block = min(64, max(16, triton.next_power_of_2(d)))
    return block, triton.cdiv(d, block)


def _precision(dtype: torch.dtype) -> str:
    """float32 inputs get IEEE float32 products (the tests compare with float64 references); half inputs TF32."""
    return "ieee" if dtype == torch.float32 else "tf32"


def _initial(state, BH: int, DK: int, DV: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if state is None:
        return (torch.zeros(BH, DK, DV, device=device), torch.zeros(BH, DK, device=device),
                torch.full((BH,), float("-inf"), device=device))
    c0, n0, m0 = state
    return (c0.float().reshape(BH, DK, DV).contiguous(), n0.float().reshape(BH, DK).contiguous(),
            m0.float().reshape(BH).contiguous())


def _chunk_states(k3, v3, logf, ig, init, BH: int, S: int, DK: int, DV: int, L: int, prec: str):
    """(C, n, m) at every chunk boundary, (BH, NC + 1, ...), from the initial state ``init``: one scan kernel."""
    NC = triton.cdiv(S, L)
    (BK, NK), (BV, NV) = _tile(DK), _tile(DV)
    dev = k3.device
    c_st = torch.empty(BH, NC + 1, DK, DV, device=dev)
    n_st = torch.empty(BH, NC + 1, DK, device=dev)
    m_st = torch.empty(BH, NC + 1, device=dev)
    chunk_states_fwd[(BH, NK, NV)](k3, v3, logf, ig, *init, c_st, n_st, m_st, S, DK, DV, NC, L=L, BK=BK, BV=BV,
                                   PREC=prec)
    return c_st, n_st, m_st


class ChunkwiseMLSTM(torch.autograd.Function):
    """Forward: chunk-state scan + parallel chunk outputs. Backward: the chunk-state scan again (the states are not
    kept between the passes: DK x DV floats per head and chunk, 4 MB at the paper's 1.3B heads of 1024, about
    12 MB per token over its 48 layers), then the reverse chunk-state scan + per-chunk gradients."""

    @staticmethod
    def forward(ctx, q, k, v, igate, fgate, c0, n0, m0, chunk_size: int, eps: float):
        B, NH, S, DK = q.shape
        DV, BH, L = v.shape[-1], B * NH, chunk_size
        NC = triton.cdiv(S, L)
        (BK, NK), (BV, NV) = _tile(DK), _tile(DV)
        q3, k3, v3 = (t.reshape(BH, S, -1).contiguous() for t in (q, k, v))
        logf = F.logsigmoid(fgate.float()).reshape(BH, S).contiguous()
        ig = igate.float().reshape(BH, S).contiguous()
        init = _initial(None if c0 is None else (c0, n0, m0), BH, DK, DV, q.device)
        dev = q.device
        prec = _precision(q.dtype)
        c_st, n_st, m_st = _chunk_states(k3, v3, logf, ig, init, BH, S, DK, DV, L, prec)
        h = torch.empty(BH, S, DV, device=dev, dtype=q.dtype)
        m_t, norm, den = (torch.empty(BH, S, device=dev) for _ in range(3))
        chunk_outputs_fwd[(BH, NC, NV)](q3, k3, v3, logf, ig, c_st, n_st, m_st, h, m_t, norm, den, S, DK, DV, NC,
                                        DK ** -0.5, eps, L=L, BK=BK, BV=BV, NK=NK, PREC=prec)
        ctx.save_for_backward(q3, k3, v3, fgate, logf, ig, m_t, norm, den, h, *(init if c0 is not None else ()))
        ctx.meta = (B, NH, S, DK, DV, L, NC, c0 is not None, igate.dtype)
        # the last state as tensors of their own (views would keep every chunk's state alive)
        return (h.view(B, NH, S, DV), c_st[:, NC].reshape(B, NH, DK, DV).clone(),
                n_st[:, NC].reshape(B, NH, DK).clone(), m_st[:, NC].reshape(B, NH).clone())

    @staticmethod
    def backward(ctx, dh, dc_last, dn_last, dm_last):
        q3, k3, v3, fgate, logf, ig, m_t, norm, den, h, *init = ctx.saved_tensors
        B, NH, S, DK, DV, L, NC, has_init, igate_dtype = ctx.meta
        BH, dev = B * NH, q3.device
        (BK, NK), (BV, NV) = _tile(DK), _tile(DV)
        prec = _precision(q3.dtype)
        init = init if has_init else _initial(None, BH, DK, DV, dev)
        c_st, n_st, m_st = _chunk_states(k3, v3, logf, ig, init, BH, S, DK, DV, L, prec)
        dh = dh.reshape(BH, S, DV).float()
        dnum = (dh / norm[..., None]).contiguous()
        active = (den.abs() > torch.exp(-m_t)).float()  # the max(|den|, exp(-m)) branch that carries gradient
        dden = (-(dh * h.float()).sum(-1) / norm * torch.sign(den) * active).contiguous()
        dc_last = torch.zeros(BH, DK, DV, device=dev) if dc_last is None else dc_last.reshape(BH, DK, DV).float().contiguous()
        dn_last = torch.zeros(BH, DK, device=dev) if dn_last is None else dn_last.reshape(BH, DK).float().contiguous()
        dc_end = torch.empty(BH, NC, DK, DV, device=dev)
        dn_end = torch.empty(BH, NC, DK, device=dev)
        drho = torch.empty(BH, NC, NK, NV, device=dev)
        dc0, dn0 = torch.empty(BH, DK, DV, device=dev), torch.empty(BH, DK, device=dev)
        chunk_states_bwd[(BH, NK, NV)](q3, logf, m_t, c_st, n_st, m_st, dnum, dden, dc_last, dn_last, dc_end, dn_end,
                                       drho, dc0, dn0, S, DK, DV, NC, DK ** -0.5, L=L, BK=BK, BV=BV, PREC=prec)
        dq, dk = torch.empty(BH, S, DK, device=dev), torch.empty(BH, S, DK, device=dev)
        dv = torch.empty(BH, S, DV, device=dev)
        dig, dlogf = torch.empty(BH, S, device=dev), torch.empty(BH, S, device=dev)
        chunk_grads[(BH, NC)](q3, k3, v3, logf, ig, m_t, c_st, n_st, m_st, dnum, dden, dc_end, dn_end, dq, dk, dv,
                              dig, dlogf, S, DK, DV, NC, DK ** -0.5, L=L, BK=BK, BV=BV, NK=NK, NV=NV, PREC=prec)
        # each chunk's total decay g_c = sum of its log f enters rho_c: d log f += d log rho_c on every position
        dlogf = dlogf + drho.sum((2, 3)).repeat_interleave(L, dim=1)[:, :S]
        dfgate = dlogf * torch.sigmoid(-fgate.float().reshape(BH, S))
        shape4 = (B, NH, S)
        grads = [dq.view(*shape4, DK).to(q3.dtype), dk.view(*shape4, DK).to(k3.dtype),
                 dv.view(*shape4, DV).to(v3.dtype), dig.view(shape4).to(igate_dtype),
                 dfgate.view(shape4).to(fgate.dtype)]
        if has_init:
            grads += [dc0.view(B, NH, DK, DV), dn0.view(B, NH, DK), None]
        else:
            grads += [None, None, None]
        return (*grads, None, None)


def mlstm_chunkwise_triton(q, k, v, igate, fgate, *, chunk_size: int = 64, eps: float = 1e-6, initial_state=None,
                           return_last_state: bool = False):
    _check(q, v, chunk_size)
    c0, n0, m0 = initial_state if initial_state is not None else (None, None, None)
    m0 = m0.detach() if m0 is not None else None  # the stabilizer carries no gradient
    h, c, n, m = ChunkwiseMLSTM.apply(q, k, v, igate, fgate, c0, n0, m0, chunk_size, eps)
    return (h, (c, n, m)) if return_last_state else h


def _recurrent_forward(q, k, v, igate, fgate, state, eps):
    B, NH, S, DK = q.shape
    DV, BH = v.shape[-1], B * NH
    BK = max(16, triton.next_power_of_2(DK))
    BV, NV = _tile(DV)
    dev = q.device
    h = torch.empty(B, NH, S, DV, device=dev, dtype=q.dtype)
    c1, n1, m1 = (torch.empty(BH, DK, DV, device=dev), torch.empty(BH, DK, device=dev), torch.empty(BH, device=dev))
    recurrent_fwd[(BH, NV)](q.contiguous(), k.contiguous(), v.contiguous(),
                            F.logsigmoid(fgate.float()).contiguous(), igate.float().contiguous(),
                            *_initial(state, BH, DK, DV, dev), h, c1, n1, m1, S, DK, DV, DK ** -0.5, eps, BK=BK, BV=BV)
    return h, (c1.view(B, NH, DK, DV), n1.view(B, NH, DK), m1.view(B, NH))


class RecurrentMLSTM(torch.autograd.Function):
    """Forward: the time loop in one kernel. Backward: the chunkwise kernels' backward of the same function."""

    @staticmethod
    def forward(ctx, q, k, v, igate, fgate, c0, n0, m0, eps: float):
        state = None if c0 is None else (c0, n0, m0)
        h, (c, n, m) = _recurrent_forward(q, k, v, igate, fgate, state, eps)
        ctx.save_for_backward(q, k, v, igate, fgate, *(() if c0 is None else (c0, n0, m0)))
        ctx.eps = eps
        return h, c, n, m

    @staticmethod
    def backward(ctx, dh, dc, dn, dm):
        saved = ctx.saved_tensors
        inputs = [t.detach().requires_grad_() for t in saved[:5]]
        c0, n0, m0 = None, None, None
        if len(saved) == 8:
            c0, n0 = (t.detach().requires_grad_() for t in saved[5:7])
            m0 = saved[7].detach()
        with torch.enable_grad():
            outputs = ChunkwiseMLSTM.apply(*inputs, c0, n0, m0, 16, ctx.eps)[:3]
        wanted = inputs + ([c0, n0] if c0 is not None else [])
        grad_outputs = [g if g is not None else torch.zeros_like(o) for g, o in zip((dh, dc, dn), outputs)]
        grads = list(torch.autograd.grad(outputs, wanted, grad_outputs))
        grads += [None] if c0 is not None else [None, None, None]
        return (*grads, None)


def mlstm_recurrent_triton(q, k, v, igate, fgate, *, chunk_size: int | None = None, eps: float = 1e-6,
                           initial_state=None, return_last_state: bool = False):
    """``chunk_size`` is accepted for a uniform signature and unused."""
    _check(q, v, None)
    c0, n0, m0 = initial_state if initial_state is not None else (None, None, None)
    m0 = m0.detach() if m0 is not None else None
    h, c, n, m = RecurrentMLSTM.apply(q, k, v, igate, fgate, c0, n0, m0, eps)
    return (h, (c, n, m)) if return_last_state else h


def mlstm_step_triton(q, k, v, igate, fgate, state, eps: float = 1e-6):
    """One generation step with the recurrent kernel: q, k (B, NH, DK), v (B, NH, DV), gates (B, NH)."""
    h, state = _recurrent_forward(q[:, :, None], k[:, :, None], v[:, :, None], igate[..., None], fgate[..., None],
                                  state, eps)
    return h[:, :, 0], state
