"""Backward kernels of the chunkwise GLA: the gradients of q, k, v and the initial state (layout, tiles and decay
factors as in chunkwise_fwd.py and blocks.py; the log-decay gradient has its own kernel, chunkwise_dg.py, and the
bonus gradient is a reduction on the host).

With qs = scale * q, dO the incoming gradient, S_c the state at the start of chunk c (saved by the forward) and
dS_end(c) the gradient of the state at its end:
1. ``chunk_states_bwd``, grid (BH, DV tiles): the reverse scan over chunks,
       dS_end(c - 1) = exp(T_c) * dS_end(c) + sum_i (qs_i * exp(G_i))^T dO_i,
   writing dS_end(c) for every chunk into DST (BH, NC, DK, DV) and the initial state's gradient (the last value).
2. ``chunk_dv``, grid (BH, chunks, DV tiles): dv_J = (k_J * exp(R_J)) dS_end + sum_{I >= J} A_IJ^T dO_I.
3. ``chunk_dqk``, grid (BH, chunks), DV tiles in a loop (dA = dO v^T sums over all of DV):
       dqs_I = exp(G_I) * (dO_I S_c^T) + sum_{J < I} exp(a_I) * (dA_IJ (k_J * exp(e_J + btw))) + diagonal part,
       dk_J  = exp(R_J) * (v_J dS_end^T) + sum_{I > J} exp(e_J + btw) * (dA_IJ^T (qs_I * exp(a_I))) + diagonal part,
   two passes over the sub-blocks (one accumulating dq per I, one dk per J), so each pair's dA is formed twice rather
   than keeping a per-J accumulator for every J in registers.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .blocks import (block_decays, da_block, da_keys_before, diag_grads, diag_scores, diagonal, load_block,
                     load_state_tile, store_block, times_state)


@triton.jit
def chunk_states_bwd(Q, DO, G, SCALE, DS_LAST, DST, DS0, S, DK, DV, NC, L: tl.constexpr, SB: tl.constexpr,
                     BK: tl.constexpr, BV: tl.constexpr, BONUS: tl.constexpr, PREC: tl.constexpr):
    bh = tl.program_id(0)
    pv = tl.program_id(1)
    ok = tl.arange(0, BK)
    ov = pv * BV + tl.arange(0, BV)
    mk, mv = ok < DK, ov < DV
    tile = ok[:, None] * DV + ov[None, :]
    tile_ok = mk[:, None] & mv[None, :]
    size = DK * DV
    scale = tl.load(SCALE)
    ds = tl.load(DS_LAST + bh.to(tl.int64) * size + tile, mask=tile_ok, other=0.0)
    for cc in range(NC):
        c = NC - 1 - cc
        tl.store(DST + (bh.to(tl.int64) * NC + c) * size + tile, ds, mask=tile_ok)
        before = tl.zeros([BK], dtype=ds.dtype)
        upd = tl.zeros([BK, BV], dtype=ds.dtype)
        for i_blk in range(L // SB):
            start = c * L + i_blk * SB
            tot, a, _ = block_decays(G, bh, S, DK, start, ok, mk, SB, BONUS)
            qq = load_block(Q, bh, S, DK, start, ok, mk, SB).to(ds.dtype) * scale
            do = load_block(DO, bh, S, DV, start, ov, mv, SB).to(ds.dtype)
            upd += tl.dot(tl.trans(qq * tl.exp(a + before[None, :])), do, input_precision=PREC)
            before += tot
        ds = tl.exp(before)[:, None] * ds + upd
    tl.store(DS0 + bh.to(tl.int64) * size + tile, ds, mask=tile_ok)


@triton.jit
def chunk_dv(Q, K, DO, G, U, SCALE, DST, DVV, S, NH, DK, DV, NC, L: tl.constexpr, SB: tl.constexpr,
             BK: tl.constexpr, BV: tl.constexpr, BONUS: tl.constexpr, PREC: tl.constexpr):
    bh = tl.program_id(0)
    c = tl.program_id(1)
    pv = tl.program_id(2)
    ok = tl.arange(0, BK)
    ov = pv * BV + tl.arange(0, BV)
    mk, mv = ok < DK, ov < DV
    ct = G.dtype.element_ty
    scale = tl.load(SCALE)
    ds_end = load_state_tile(DST, bh.to(tl.int64) * NC + c, DK, DV, ok, ov, mk, mv)
    if BONUS:
        u = tl.load(U + (bh % NH) * DK + ok, mask=mk, other=0.0)
    after = tl.zeros([BK], dtype=ct)  # total of the sub-blocks after J in this chunk
    for jj in range(L // SB):
        j_blk = L // SB - 1 - jj
        start_j = c * L + j_blk * SB
        tot_j, _, e_j = block_decays(G, bh, S, DK, start_j, ok, mk, SB, BONUS)
        kk = load_block(K, bh, S, DK, start_j, ok, mk, SB).to(ct)
        acc = tl.dot(kk * tl.exp(e_j + after[None, :]), ds_end, input_precision=PREC)
        btw = tl.zeros([BK], dtype=ct)
        for i_blk in range(j_blk + 1, L // SB):
            start = c * L + i_blk * SB
            tot_i, a_i, _ = block_decays(G, bh, S, DK, start, ok, mk, SB, BONUS)
            qq = load_block(Q, bh, S, DK, start, ok, mk, SB).to(ct) * scale
            do = load_block(DO, bh, S, DV, start, ov, mv, SB).to(ct)
            a_ij = tl.dot(qq * tl.exp(a_i), tl.trans(kk * tl.exp(e_j + btw[None, :])), input_precision=PREC)
            acc += tl.dot(tl.trans(a_ij), do, input_precision=PREC)
            btw += tot_i
        a_jj = diag_scores(Q, K, G, bh, S, DK, start_j, ok, mk, scale, SB, BK, BONUS)
        if BONUS:
            qq = load_block(Q, bh, S, DK, start_j, ok, mk, SB).to(ct) * scale
            r = tl.arange(0, SB)
            a_jj += tl.where(r[:, None] == r[None, :], tl.sum(qq * u[None, :] * kk, axis=1)[:, None], 0.0)
        do = load_block(DO, bh, S, DV, start_j, ov, mv, SB).to(ct)
        acc += tl.dot(tl.trans(a_jj), do, input_precision=PREC)
        store_block(DVV, acc, bh, S, DV, start_j, ov, mv, SB)
        after += tot_j


@triton.jit
def chunk_dqk(Q, K, V, DO, G, U, SCALE, ST, DST, DQ, DKK, S, NH, DK, DV, NC, L: tl.constexpr, SB: tl.constexpr,
              BK: tl.constexpr, BV: tl.constexpr, NV: tl.constexpr, BONUS: tl.constexpr, PREC: tl.constexpr):
    bh = tl.program_id(0)
    c = tl.program_id(1)
    ok = tl.arange(0, BK)
    mk = ok < DK
    ct = G.dtype.element_ty
    scale = tl.load(SCALE)
    s_start = ST + (bh.to(tl.int64) * (NC + 1) + c) * DK * DV
    ds_end = DST + (bh.to(tl.int64) * NC + c) * DK * DV
    if BONUS:
        u = tl.load(U + (bh % NH) * DK + ok, mask=mk, other=0.0)

    # pass 1: dq, one sub-block I at a time (key sub-blocks J <= I)
    before = tl.zeros([BK], dtype=ct)
    for i_blk in range(L // SB):
        start = c * L + i_blk * SB
        tot_i, a_i, _ = block_decays(G, bh, S, DK, start, ok, mk, SB, BONUS)
        dq = tl.exp(a_i + before[None, :]) * times_state(DO, s_start, bh, S, DK, DV, start, ok, mk, SB, BK, BV, NV,
                                                          PREC)
        intra = da_keys_before(DO, V, K, G, bh, S, DK, DV, c * L, start, i_blk, ok, mk, SB, BK, BV, NV, PREC, BONUS, ct)
        dq += tl.exp(a_i) * intra
        da = da_block(DO, V, bh, S, DV, start, start, SB, BV, NV, PREC, ct)
        dq_diag, _ = diag_grads(Q, K, G, bh, S, DK, start, ok, mk, scale, da, SB, BK, BONUS)
        dq += dq_diag
        if BONUS:
            kk = load_block(K, bh, S, DK, start, ok, mk, SB).to(ct)
            dq += diagonal(da, SB)[:, None] * u[None, :] * kk
        store_block(DQ, dq * scale, bh, S, DK, start, ok, mk, SB)  # d q = scale * d qs
        before += tot_i

    # pass 2: dk, one sub-block J at a time (query sub-blocks I >= J)
    after = tl.zeros([BK], dtype=ct)
    for jj in range(L // SB):
        j_blk = L // SB - 1 - jj
        start_j = c * L + j_blk * SB
        tot_j, _, e_j = block_decays(G, bh, S, DK, start_j, ok, mk, SB, BONUS)
        dk = tl.exp(e_j + after[None, :]) * times_state(V, ds_end, bh, S, DK, DV, start_j, ok, mk, SB, BK, BV, NV,
                                                         PREC)
        btw = tl.zeros([BK], dtype=ct)
        for i_blk in range(j_blk + 1, L // SB):
            start = c * L + i_blk * SB
            tot_i, a_i, _ = block_decays(G, bh, S, DK, start, ok, mk, SB, BONUS)
            qq = load_block(Q, bh, S, DK, start, ok, mk, SB).to(ct) * scale
            da = da_block(DO, V, bh, S, DV, start, start_j, SB, BV, NV, PREC, ct)
            dk += tl.exp(e_j + btw[None, :]) * tl.dot(tl.trans(da), qq * tl.exp(a_i), input_precision=PREC)
            btw += tot_i
        da = da_block(DO, V, bh, S, DV, start_j, start_j, SB, BV, NV, PREC, ct)
        _, dk_diag = diag_grads(Q, K, G, bh, S, DK, start_j, ok, mk, scale, da, SB, BK, BONUS)
        dk += dk_diag
        if BONUS:
            qq = load_block(Q, bh, S, DK, start_j, ok, mk, SB).to(ct) * scale
            dk += diagonal(da, SB)[:, None] * u[None, :] * qq
        store_block(DKK, dk, bh, S, DK, start_j, ok, mk, SB)
        after += tot_j
