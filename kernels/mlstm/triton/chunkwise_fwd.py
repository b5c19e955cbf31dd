"""Forward kernels of the chunkwise mLSTM (plain pointer arithmetic and masks; no block pointers).

Layout: q, k (BH, S, DK), v (BH, S, DV); log forget gates and input gates (BH, S) in float32; states in float32.
1. ``chunk_states_fwd``: a scan over the chunks of one (batch*head, DK tile, DV tile) that writes the state
   (C, n, m) at the start of every chunk and at the end (index NC).
2. ``chunk_outputs_fwd``: one program per (batch*head, chunk, DV tile): the chunk's parallel part plus the
   contribution of its start state, with the running-max stabilizer m_t; writes h and, for the backward, m_t, the
   normalizer N_t = max(|den_t|, exp(-m_t)) + eps and den_t.
Segment sums of log f are a matrix product of a lower-triangular ones matrix with the masked gates, never a
difference of prefix sums (exact enough for gates of +-1e4 in float32).
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def segment_sums(lf, ig, L: tl.constexpr):
    """log D[t, j] = sum_{j < s <= t} lf[s] + ig[j] for j <= t, -inf above the diagonal. lf, ig: (L,)."""
    rows = tl.arange(0, L)
    lower = tl.where(rows[:, None] >= rows[None, :], 1.0, 0.0)  # [t, s] = s <= t
    after = tl.where(rows[:, None] > rows[None, :], lf[:, None], 0.0)  # [s, j] = lf[s] if s > j
    seg = tl.dot(lower, after, input_precision="ieee")
    return tl.where(rows[:, None] >= rows[None, :], seg + ig[None, :], float("-inf"))


@triton.jit
def state_tile(pk, pv, DK, DV, BK: tl.constexpr, BV: tl.constexpr):
    """Tile (pk, pv) of a (DK, DV) state: DK and DV offsets, their masks, flat offsets (BK, BV) and their mask."""
    ok = pk * BK + tl.arange(0, BK)
    ov = pv * BV + tl.arange(0, BV)
    mk, mv = ok < DK, ov < DV
    return ok, ov, mk, mv, ok[:, None] * DV + ov[None, :], mk[:, None] & mv[None, :]


@triton.jit
def qk_tile(Q, K, bh, S, DK, pos, valid, kt, scale, BK: tl.constexpr):
    """Rows ``pos`` of DK tile kt of q (times scale) and k in float32, (L, BK), with the tile's DK offsets and mask
    and the flat offsets and mask of the rows (for storing dq, dk)."""
    ok = kt * BK + tl.arange(0, BK)
    mk = ok < DK
    rows = (bh * S + pos[:, None]) * DK + ok[None, :]
    mask = valid[:, None] & mk[None, :]
    qq = tl.load(Q + rows, mask=mask, other=0.0).to(tl.float32) * tl.cast(scale, tl.float32)
    kk = tl.load(K + rows, mask=mask, other=0.0).to(tl.float32)
    return ok, mk, rows, mask, qq, kk


@triton.jit
def chunk_states_fwd(K, V, LOGF, IG, C0, N0, M0, C_ST, N_ST, M_ST, S, DK, DV, NC,
                     L: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr):
    bh = tl.program_id(0)
    pk = tl.program_id(1)
    pv = tl.program_id(2)
    ok, ov, mk, mv, tile, tile_mask = state_tile(pk, pv, DK, DV, BK, BV)
    ol = tl.arange(0, L)
    c = tl.load(C0 + bh * DK * DV + tile, mask=tile_mask, other=0.0)
    n = tl.load(N0 + bh * DK + ok, mask=mk, other=0.0)
    m = tl.load(M0 + bh)
    for ci in range(0, NC):
        _store_state(C_ST, N_ST, M_ST, bh * (NC + 1) + ci, c, n, m, ok, mk, tile, tile_mask, pk, pv, DK, DV)
        pos = ci * L + ol
        valid = pos < S
        lf = tl.load(LOGF + bh * S + pos, mask=valid, other=0.0)
        ig = tl.load(IG + bh * S + pos, mask=valid, other=float("-inf"))
        total = tl.sum(lf, axis=0)
        to_end = tl.cumsum(lf, axis=0, reverse=True) - lf + ig  # weight of position j in the chunk-end state
        m_new = tl.maximum(total + m, tl.max(to_end, axis=0))
        carry = tl.exp(total + m - m_new)
        w = tl.exp(to_end - m_new)
        kk = tl.load(K + (bh * S + pos[:, None]) * DK + ok[None, :], mask=valid[:, None] & mk[None, :], other=0.0)
        vv = tl.load(V + (bh * S + pos[:, None]) * DV + ov[None, :], mask=valid[:, None] & mv[None, :], other=0.0)
        kw = kk.to(tl.float32) * w[:, None]
        c = carry * c + tl.dot(tl.trans(kw), vv.to(tl.float32), input_precision=PREC)
        n = carry * n + tl.sum(kw, axis=0)
        m = m_new
    _store_state(C_ST, N_ST, M_ST, bh * (NC + 1) + NC, c, n, m, ok, mk, tile, tile_mask, pk, pv, DK, DV)


@triton.jit
def _store_state(C_ST, N_ST, M_ST, state, c, n, m, ok, mk, tile, tile_mask, pk, pv, DK, DV):
    """Write state index ``state``: this program's C tile; n once per DK tile; m once per (batch*head)."""
    tl.store(C_ST + state * DK * DV + tile, c, mask=tile_mask)
    if pv == 0:
        tl.store(N_ST + state * DK + ok, n, mask=mk)
        if pk == 0:
            tl.store(M_ST + state, m)


@triton.jit
def chunk_outputs_fwd(Q, K, V, LOGF, IG, C_ST, N_ST, M_ST, H, M_OUT, N_OUT, DEN_OUT, S, DK, DV, NC, scale, eps,
                      L: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, NK: tl.constexpr, PREC: tl.constexpr):
    bh = tl.program_id(0)
    ci = tl.program_id(1)
    pv = tl.program_id(2)
    ol = tl.arange(0, L)
    ov = pv * BV + tl.arange(0, BV)
    mv = ov < DV
    pos = ci * L + ol
    valid = pos < S
    lf = tl.load(LOGF + bh * S + pos, mask=valid, other=0.0)
    ig = tl.load(IG + bh * S + pos, mask=valid, other=float("-inf"))
    log_d = segment_sums(lf, ig, L)
    state = bh * (NC + 1) + ci
    from_start = tl.cumsum(lf, axis=0) + tl.load(M_ST + state)
    m_t = tl.maximum(tl.max(log_d, axis=1), from_start)
    scores = tl.zeros([L, L], dtype=tl.float32)
    qc = tl.zeros([L, BV], dtype=tl.float32)
    qn = tl.zeros([L], dtype=tl.float32)
    for kt in range(0, NK):
        ok, mk, _, _, qq, kk = qk_tile(Q, K, bh, S, DK, pos, valid, kt, scale, BK)
        scores += tl.dot(qq, tl.trans(kk), input_precision=PREC)
        cc = tl.load(C_ST + state * DK * DV + ok[:, None] * DV + ov[None, :], mask=mk[:, None] & mv[None, :],
                     other=0.0)
        qc += tl.dot(qq, cc, input_precision=PREC)
        qn += tl.sum(qq * tl.load(N_ST + state * DK + ok, mask=mk, other=0.0)[None, :], axis=1)
    p = scores * tl.exp(log_d - m_t[:, None])
    vv = tl.load(V + (bh * S + pos[:, None]) * DV + ov[None, :], mask=valid[:, None] & mv[None, :], other=0.0)
    decay = tl.exp(from_start - m_t)
    num = tl.dot(p, vv.to(tl.float32), input_precision=PREC) + decay[:, None] * qc
    den = tl.sum(p, axis=1) + decay * qn
    norm = tl.maximum(tl.abs(den), tl.exp(-m_t)) + tl.cast(eps, tl.float32)
    h = num / norm[:, None]
    tl.store(H + (bh * S + pos[:, None]) * DV + ov[None, :], h.to(H.dtype.element_ty),
             mask=valid[:, None] & mv[None, :])
    if pv == 0:
        tl.store(M_OUT + bh * S + pos, m_t, mask=valid)
        tl.store(N_OUT + bh * S + pos, norm, mask=valid)
        tl.store(DEN_OUT + bh * S + pos, den, mask=valid)
