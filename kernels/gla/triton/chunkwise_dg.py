"""The log-decay gradient of the chunkwise GLA, computed directly (no identity, no cancellation).

g[s] enters every decay factor whose interval holds s: a pair (i, j) of the same chunk with j < s <= i (with bonus:
j < s <= i - 1), the query-side factor of the chunk-start state for rows i >= s (i - 1 >= s), the key-side factor
of the chunk-end state for keys j < s, and the chunk's total decay. Writing the chunk-start state as a key "before
the chunk" and the chunk-end state's gradient as a row "after it", every term is a pair (row i, key j) with
j < s <= i and contribution c_ij = dA[i, j] * qs_i * k_j * exp(D[i, j]) per key channel, so
    d log_decay[s] = sum over the pairs that straddle s of c_ij.
(The textbook identity d g_s = sum_{t >= s} (q_t dq_t - k_t dk_t) + ... gives the same in exact arithmetic, but
there each pair appears twice with opposite signs, at i and at j, and cancels only up to rounding: with strong
decays the true gradient is far below that rounding, so it is not used.)

``chunk_dg``, grid (BH, chunks, sub-blocks m): for s in sub-block m the straddling pairs are
  1. rows i in m (i >= s) or after it x keys before m or the start state   (reference point: start of m),
  2. keys j in m (j < s) x rows after m or the end-state gradient         (reference point: end of m),
  3. keys before m or the start state x the end-state gradient             (one value per channel),
  4. both inside m                                                          (``diag_crossing``),
each a product of exponentials of interval sums <= 0 around the reference point, as in the forward.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .blocks import (block_decays, da_block, da_keys_before, diag_crossing, exclusive_cumsum, load_block, store_block,
                     times_state)


@triton.jit
def chunk_dg(Q, K, V, DO, G, SCALE, ST, DST, DG, S, DK, DV, NC, L: tl.constexpr, SB: tl.constexpr,
             BK: tl.constexpr, BV: tl.constexpr, NV: tl.constexpr, BONUS: tl.constexpr, PREC: tl.constexpr):
    bh = tl.program_id(0)
    c = tl.program_id(1)
    m = tl.program_id(2)
    NB: tl.constexpr = L // SB
    ok = tl.arange(0, BK)
    mk = ok < DK
    ct = G.dtype.element_ty
    scale = tl.load(SCALE)
    s_start = ST + (bh.to(tl.int64) * (NC + 1) + c) * DK * DV
    ds_end = DST + (bh.to(tl.int64) * NC + c) * DK * DV
    start_m = c * L + m * SB
    tot_m, _, e_m = block_decays(G, bh, S, DK, start_m, ok, mk, SB, BONUS)
    before = tl.zeros([BK], dtype=ct)  # total log decay of the sub-blocks before m, and after m
    after = tl.zeros([BK], dtype=ct)
    for blk in range(NB):
        tot, _, _ = block_decays(G, bh, S, DK, c * L + blk * SB, ok, mk, SB, BONUS)
        before += tl.where(blk < m, tot, 0.0)
        after += tl.where(blk > m, tot, 0.0)
    acc = tl.zeros([SB, BK], dtype=ct)

    # 1. rows i in sub-blocks I >= m against keys before m and the start state: w_i = sum_j dA_ij k_j exp(sum (j, m))
    mid = tl.zeros([BK], dtype=ct)  # total of the sub-blocks m .. I - 1
    for i_blk in range(m, NB):
        start_i = c * L + i_blk * SB
        tot_i, a_i, _ = block_decays(G, bh, S, DK, start_i, ok, mk, SB, BONUS)
        w = tl.exp(before)[None, :] * times_state(DO, s_start, bh, S, DK, DV, start_i, ok, mk, SB, BK, BV, NV, PREC)
        w += da_keys_before(DO, V, K, G, bh, S, DK, DV, c * L, start_i, m, ok, mk, SB, BK, BV, NV, PREC, BONUS, ct)
        qq = load_block(Q, bh, S, DK, start_i, ok, mk, SB).to(ct) * scale
        rho = qq * tl.exp(mid + a_i) * w  # per row i: its pairs with every key before m
        if BONUS:  # rows i >= s + 1
            suffix = exclusive_cumsum(rho, SB, True)
        else:
            suffix = tl.cumsum(rho, axis=0, reverse=True)
        acc += tl.where(i_blk == m, suffix, tl.sum(rho, axis=0)[None, :])
        mid += tot_i

    # 2. keys j in m against rows after m and the end-state gradient: v_j = sum_i dA_ij qs_i exp(sum (end of m, i])
    vc = tl.exp(after)[None, :] * times_state(V, ds_end, bh, S, DK, DV, start_m, ok, mk, SB, BK, BV, NV, PREC)
    btw = tl.zeros([BK], dtype=ct)
    for i_blk in range(m + 1, NB):
        start_i = c * L + i_blk * SB
        tot_i, a_i, _ = block_decays(G, bh, S, DK, start_i, ok, mk, SB, BONUS)
        qq = load_block(Q, bh, S, DK, start_i, ok, mk, SB).to(ct) * scale
        da = da_block(DO, V, bh, S, DV, start_i, start_m, SB, BV, NV, PREC, ct)
        vc += tl.exp(btw)[None, :] * tl.dot(tl.trans(da), qq * tl.exp(a_i), input_precision=PREC)
        btw += tot_i
    rho = load_block(K, bh, S, DK, start_m, ok, mk, SB).to(ct) * tl.exp(e_m) * vc
    acc += exclusive_cumsum(rho, SB, False)  # keys j < s

    # 3. the state at the start of m (start state and keys before m) against the end-state gradient
    cross = tl.zeros([BK], dtype=ct)
    for vt in range(NV):
        ov = vt * BV + tl.arange(0, BV)
        mv = ov < DV
        tile = ok[:, None] * DV + ov[None, :]
        tile_ok = mk[:, None] & mv[None, :]
        state = tl.exp(before)[:, None] * tl.load(s_start + tile, mask=tile_ok, other=0.0)
        btw = tl.zeros([BK], dtype=ct)
        for jj in range(m):
            start_j = c * L + (m - 1 - jj) * SB
            tot_j, _, e_j = block_decays(G, bh, S, DK, start_j, ok, mk, SB, BONUS)
            kk = load_block(K, bh, S, DK, start_j, ok, mk, SB).to(ct)
            vv = load_block(V, bh, S, DV, start_j, ov, mv, SB).to(ct)
            state += tl.dot(tl.trans(kk * tl.exp(e_j + btw[None, :])), vv, input_precision=PREC)
            btw += tot_j
        cross += tl.sum(state * tl.load(ds_end + tile, mask=tile_ok, other=0.0), axis=1)
    acc += (tl.exp(tot_m + after) * cross)[None, :]

    # 4. pairs inside sub-block m
    da = da_block(DO, V, bh, S, DV, start_m, start_m, SB, BV, NV, PREC, ct)
    acc += diag_crossing(Q, K, G, bh, S, DK, start_m, ok, mk, scale, da, SB, BK, BONUS)
    store_block(DG, acc, bh, S, DK, start_m, ok, mk, SB)
