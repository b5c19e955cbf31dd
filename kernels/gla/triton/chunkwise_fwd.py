"""Forward kernels of the chunkwise GLA (plain pointer arithmetic and masks; no block pointers, no autotuning).

Layout: q, k (BH, S, DK) and v (BH, S, DV) in the input dtype; g = log decay (BH, S, DK), the initial state, the
chunk states and ``scale`` (a 1-element tensor, so float64 runs keep a float64 scale) in the compute dtype (float32,
or float64 for float64 inputs), which every kernel reads off G's pointer type. Tiles: the whole padded key dim BK
(16..256, a power of two) in one tile, DV in tiles of BV (16..64); a chunk of L = 16/32/64 positions is walked as
sub-blocks of SB = 16 rows (blocks.py).
1. ``chunk_states_fwd``, grid (BH, DV tiles): the scan over chunks; writes the state at the start of every chunk
   and the last state (index NC) into ST (BH, NC + 1, DK, DV):
       S_end = exp(T) * S_start + sum_j (k_j * exp(R_j))^T v_j,   R_j = sum of g after j in the chunk, T = its total.
2. ``chunk_outputs_fwd``, grid (BH, chunks, DV tiles): per sub-block I of the chunk,
       o_I = (q_I * exp(G_I)) S_start + sum_{J < I} A_IJ v_J + A_II v_I,
   G = the sum of g from the chunk start to i (to i - 1 with bonus), A_IJ = (q_I * exp(a_I)) (k_J * exp(e_J + btw))^T,
   A_II from ``diag_scores`` plus, with bonus u, (q_i * u) . k_i on the diagonal.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .blocks import block_decays, diag_scores, load_block, load_state_tile, store_block


@triton.jit
def chunk_states_fwd(K, V, G, S0, ST, S, DK, DV, NC, L: tl.constexpr, SB: tl.constexpr, BK: tl.constexpr,
                     BV: tl.constexpr, PREC: tl.constexpr):
    bh = tl.program_id(0)
    pv = tl.program_id(1)
    ok = tl.arange(0, BK)
    ov = pv * BV + tl.arange(0, BV)
    mk, mv = ok < DK, ov < DV
    tile = ok[:, None] * DV + ov[None, :]
    tile_ok = mk[:, None] & mv[None, :]
    size = DK * DV
    s = tl.load(S0 + bh.to(tl.int64) * size + tile, mask=tile_ok, other=0.0)
    for c in range(NC):
        tl.store(ST + (bh.to(tl.int64) * (NC + 1) + c) * size + tile, s, mask=tile_ok)
        after = tl.zeros([BK], dtype=s.dtype)  # total of the sub-blocks after J in this chunk
        upd = tl.zeros([BK, BV], dtype=s.dtype)
        for jj in range(L // SB):
            start = c * L + (L // SB - 1 - jj) * SB
            tot, _, e = block_decays(G, bh, S, DK, start, ok, mk, SB, False)
            kk = load_block(K, bh, S, DK, start, ok, mk, SB).to(s.dtype)
            vv = load_block(V, bh, S, DV, start, ov, mv, SB).to(s.dtype)
            upd += tl.dot(tl.trans(kk * tl.exp(e + after[None, :])), vv, input_precision=PREC)
            after += tot
        s = tl.exp(after)[:, None] * s + upd  # after = T, the chunk's total log decay
    tl.store(ST + (bh.to(tl.int64) * (NC + 1) + NC) * size + tile, s, mask=tile_ok)


@triton.jit
def chunk_outputs_fwd(Q, K, V, G, U, SCALE, ST, O, S, NH, DK, DV, NC, L: tl.constexpr, SB: tl.constexpr,
                      BK: tl.constexpr, BV: tl.constexpr, BONUS: tl.constexpr, PREC: tl.constexpr):
    bh = tl.program_id(0)
    c = tl.program_id(1)
    pv = tl.program_id(2)
    ok = tl.arange(0, BK)
    ov = pv * BV + tl.arange(0, BV)
    mk, mv = ok < DK, ov < DV
    ct = G.dtype.element_ty
    scale = tl.load(SCALE)
    s_start = load_state_tile(ST, bh.to(tl.int64) * (NC + 1) + c, DK, DV, ok, ov, mk, mv)
    if BONUS:
        u = tl.load(U + (bh % NH) * DK + ok, mask=mk, other=0.0)
    before = tl.zeros([BK], dtype=ct)  # total of the sub-blocks before I in this chunk
    for i_blk in range(L // SB):
        start = c * L + i_blk * SB
        tot_i, a_i, _ = block_decays(G, bh, S, DK, start, ok, mk, SB, BONUS)
        qq = load_block(Q, bh, S, DK, start, ok, mk, SB).to(ct) * scale
        acc = tl.dot(qq * tl.exp(a_i + before[None, :]), s_start, input_precision=PREC)
        q_dec = qq * tl.exp(a_i)
        btw = tl.zeros([BK], dtype=ct)  # total of the sub-blocks strictly between J and I
        for jj in range(i_blk):
            start_j = c * L + (i_blk - 1 - jj) * SB
            tot_j, _, e_j = block_decays(G, bh, S, DK, start_j, ok, mk, SB, BONUS)
            kk = load_block(K, bh, S, DK, start_j, ok, mk, SB).to(ct)
            vv = load_block(V, bh, S, DV, start_j, ov, mv, SB).to(ct)
            k_dec = kk * tl.exp(e_j + btw[None, :])
            acc += tl.dot(tl.dot(q_dec, tl.trans(k_dec), input_precision=PREC), vv, input_precision=PREC)
            btw += tot_j
        a_ii = diag_scores(Q, K, G, bh, S, DK, start, ok, mk, scale, SB, BK, BONUS)
        if BONUS:
            kk = load_block(K, bh, S, DK, start, ok, mk, SB).to(ct)
            r = tl.arange(0, SB)
            a_ii += tl.where(r[:, None] == r[None, :], tl.sum(qq * u[None, :] * kk, axis=1)[:, None], 0.0)
        vv = load_block(V, bh, S, DV, start, ov, mv, SB).to(ct)
        acc += tl.dot(a_ii, vv, input_precision=PREC)
        store_block(O, acc, bh, S, DV, start, ov, mv, SB)
        before += tot_i
