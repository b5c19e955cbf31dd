"""Building blocks shared by the Triton GLA kernels: one sub-block of SB = 16 positions at a time.

Every kernel walks a chunk of L positions (16, 32 or 64) as L / SB sub-blocks of SB rows, so that no tile is larger
than (SB, BK) per operand whatever the chunk (BK, the padded key dim, up to 256): the intra-chunk decays are per key
channel and cannot be folded into one (L, L) matrix as a scalar decay could.

Decays (g = log decay <= 0, per key channel). For positions j <= i of one chunk the factor between them is
exp(D[i, j]) with D[i, j] = sum_{j < s <= i} g[s] (without bonus) or sum_{j < s <= i - 1} (with bonus: o_i reads
the state before a_i acts). Two regimes:
  * i and j in different sub-blocks I > J: split D at the last position before sub-block I,
        D[i, j] = a[i] + btw + e[j],
    a[i] = sum over [start_I, i] (or [start_I, i - 1] with bonus), e[j] = sum over (j, end_J], btw = the totals of
    the sub-blocks strictly between. All three are <= 0, so exp(a) and exp(e + btw) are both <= 1 and the product
    is a plain tl.dot of (q * exp(a)) with (k * exp(e + btw)): no overflow, nothing ever divided by a cumulative
    decay, and each exponent is a direct sum of same-sign terms (relative error ~ SB * eps, never the difference of
    two long prefix sums).
  * i and j in the same sub-block: ``diag_scores``, ``diag_grads`` and ``diag_crossing`` loop over its SB rows i,
    carrying D[i, .] as a running sum (D[i, j] = D[i - 1, j] + g[i]) exponentiated per element: SB * SB * BK
    exponentials per sub-block.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def offsets(bh, S, D, pos, cols):
    """Flat offsets of rows ``pos`` (positions) and columns ``cols`` of a (BH, S, D) tensor, in int64."""
    return (bh.to(tl.int64) * S + pos[:, None]) * D + cols[None, :]


@triton.jit
def load_block(P, bh, S, D, start, cols, col_ok, SB: tl.constexpr):
    """Rows start .. start + SB - 1 of a (BH, S, D) tensor (zeros past S and past D), in its own dtype."""
    pos = start + tl.arange(0, SB)
    return tl.load(P + offsets(bh, S, D, pos, cols), mask=(pos < S)[:, None] & col_ok[None, :], other=0.0)


@triton.jit
def store_block(P, x, bh, S, D, start, cols, col_ok, SB: tl.constexpr):
    pos = start + tl.arange(0, SB)
    tl.store(P + offsets(bh, S, D, pos, cols), x.to(P.dtype.element_ty), mask=(pos < S)[:, None] & col_ok[None, :])


@triton.jit
def block_decays(G, bh, S, DK, start, ok, mk, SB: tl.constexpr, BONUS: tl.constexpr):
    """The log decays of one sub-block, all <= 0, in G's dtype (the compute dtype):
    tot (BK,) its total; a (SB, BK) the query-side sum over [start, i] ([start, i - 1] with bonus); e (SB, BK) the
    key-side sum over (j, start + SB - 1]. The shifted sums are cumulative sums of g loaded one row up or down (masked
    at the sub-block's edges), not a cumulative sum minus g: that difference would cost float32 precision when g
    is -20 next to -0.01."""
    r = tl.arange(0, SB)
    pos = start + r
    g = tl.load(G + offsets(bh, S, DK, pos, ok), mask=(pos < S)[:, None] & mk[None, :], other=0.0)
    nxt = (r + 1 < SB) & (pos + 1 < S)
    g_next = tl.load(G + offsets(bh, S, DK, pos + 1, ok), mask=nxt[:, None] & mk[None, :], other=0.0)
    e = tl.cumsum(g_next, axis=0, reverse=True)
    if BONUS:
        prv = (r >= 1) & (pos <= S)
        g_prev = tl.load(G + offsets(bh, S, DK, tl.maximum(pos - 1, 0), ok), mask=prv[:, None] & mk[None, :],
                         other=0.0)
        a = tl.cumsum(g_prev, axis=0)
    else:
        a = tl.cumsum(g, axis=0)
    return tl.sum(g, axis=0), a, e


@triton.jit
def _diag_step(G, Q, bh, S, DK, t, start, ok, mk, r, d, g_prev, scale, BONUS: tl.constexpr):
    """Advance the running interval sums d[j] = D[t, j] to row t of the sub-block; returns (d, the row's decay
    weights w[j, :] = exp(D[t, j]) masked to the causal part, q_t * scale, the g to carry)."""
    p = start + t
    live = mk & (p < S)
    row = (bh.to(tl.int64) * S + p) * DK + ok
    g_t = tl.load(G + row, mask=live, other=0.0)
    if BONUS:  # D[t, j] = sum_{j < s <= t - 1}: add g[t - 1] to the rows j < t - 1; row t - 1 starts at 0
        d = tl.where(r[:, None] < t - 1, d + g_prev[None, :], 0.0)
        keep = r < t
    else:  # D[t, j] = sum_{j < s <= t}: add g[t] to the rows j < t; row t starts at 0
        d = tl.where(r[:, None] < t, d + g_t[None, :], 0.0)
        keep = r <= t
    w = tl.where(keep[:, None], tl.exp(d), 0.0)  # exp of d <= 0: no overflow; the masked part is exactly 0
    q_t = tl.load(Q + row, mask=live, other=0.0).to(d.dtype) * scale
    return d, w, q_t, g_t


@triton.jit
def diag_scores(Q, K, G, bh, S, DK, start, ok, mk, scale, SB: tl.constexpr, BK: tl.constexpr, BONUS: tl.constexpr):
    """A[i, j] = sum_d (scale q_i)[d] k_j[d] exp(D[i, j, d]) inside one sub-block, (SB, SB) in G's dtype; zero above
    the diagonal, and on it too with the bonus (the caller adds the bonus term there)."""
    r = tl.arange(0, SB)
    kk = load_block(K, bh, S, DK, start, ok, mk, SB).to(G.dtype.element_ty)
    d = tl.zeros([SB, BK], dtype=G.dtype.element_ty)
    g_prev = tl.zeros([BK], dtype=G.dtype.element_ty)
    a = tl.zeros([SB, SB], dtype=G.dtype.element_ty)
    for t in range(SB):
        d, w, q_t, g_prev = _diag_step(G, Q, bh, S, DK, t, start, ok, mk, r, d, g_prev, scale, BONUS)
        row = tl.sum(kk * w * q_t[None, :], axis=1)  # over d: A[t, j] for every j
        a = tl.where(r[:, None] == t, row[None, :], a)
    return a


@triton.jit
def diag_grads(Q, K, G, bh, S, DK, start, ok, mk, scale, da, SB: tl.constexpr, BK: tl.constexpr,
               BONUS: tl.constexpr):
    """Given dA (SB, SB) of one sub-block, the gradients through its A (the bonus diagonal excluded):
    dqs[i] = sum_j dA[i, j] k_j exp(D[i, j]) (w.r.t. scale * q) and dk[j] = sum_i dA[i, j] (scale q_i) exp(D[i, j])."""
    r = tl.arange(0, SB)
    kk = load_block(K, bh, S, DK, start, ok, mk, SB).to(G.dtype.element_ty)
    d = tl.zeros([SB, BK], dtype=G.dtype.element_ty)
    g_prev = tl.zeros([BK], dtype=G.dtype.element_ty)
    dq = tl.zeros([SB, BK], dtype=G.dtype.element_ty)
    dk = tl.zeros([SB, BK], dtype=G.dtype.element_ty)
    for t in range(SB):
        d, w, q_t, g_prev = _diag_step(G, Q, bh, S, DK, t, start, ok, mk, r, d, g_prev, scale, BONUS)
        da_t = tl.sum(tl.where(r[:, None] == t, da, 0.0), axis=0)  # row t of dA, indexed by j
        dq_t = tl.sum(da_t[:, None] * kk * w, axis=0)
        dq = tl.where(r[:, None] == t, dq_t[None, :], dq)
        dk += da_t[:, None] * w * q_t[None, :]
    return dq, dk


@triton.jit
def exclusive_cumsum(x, SB: tl.constexpr, REVERSE: tl.constexpr):
    """sum_{j < s} x[j] (sum_{j > s} with REVERSE) along axis 0 of an (SB, F) tile, as a product with a 0/1 mask in
    IEEE precision: only the wanted terms are ever added. (A cumulative sum minus x would carry x's rounding: with
    x[s] ~ 1 and the wanted sum ~ exp(-20), that rounding is the whole answer.)"""
    r = tl.arange(0, SB)
    if REVERSE:
        mask = tl.where(r[None, :] > r[:, None], 1.0, 0.0)  # [s, j]: j > s
    else:
        mask = tl.where(r[None, :] < r[:, None], 1.0, 0.0)  # [s, j]: j < s
    return tl.dot(mask.to(x.dtype), x, input_precision="ieee")


@triton.jit
def diag_crossing(Q, K, G, bh, S, DK, start, ok, mk, scale, da, SB: tl.constexpr, BK: tl.constexpr,
                  BONUS: tl.constexpr):
    """For every position s of one sub-block, sum over its pairs j < s <= i (j < s <= i - 1 with bonus) of
    c_ij = dA[i, j] (scale q_i) k_j exp(D[i, j]): the part of d log_decay[s] from pairs inside the sub-block
    (the pairs whose decay interval contains s), (SB, BK)."""
    r = tl.arange(0, SB)
    kk = load_block(K, bh, S, DK, start, ok, mk, SB).to(G.dtype.element_ty)
    d = tl.zeros([SB, BK], dtype=G.dtype.element_ty)
    g_prev = tl.zeros([BK], dtype=G.dtype.element_ty)
    out = tl.zeros([SB, BK], dtype=G.dtype.element_ty)
    for t in range(SB):
        d, w, q_t, g_prev = _diag_step(G, Q, bh, S, DK, t, start, ok, mk, r, d, g_prev, scale, BONUS)
        da_t = tl.sum(tl.where(r[:, None] == t, da, 0.0), axis=0)
        c_t = da_t[:, None] * kk * w * q_t[None, :]  # c_tj for every j (0 off the causal part)
        before_s = exclusive_cumsum(c_t, SB, False)  # sum_{j < s} c_tj for every s
        reach = t - 1 if BONUS else t  # the last s whose interval (j, t] (or (j, t - 1]) holds it
        out += tl.where(r[:, None] <= reach, before_s, 0.0)
    return out


@triton.jit
def diagonal(x, SB: tl.constexpr):
    """The diagonal of an (SB, SB) tile as an (SB,) vector."""
    r = tl.arange(0, SB)
    return tl.sum(tl.where(r[:, None] == r[None, :], x, 0.0), axis=1)


@triton.jit
def da_block(DO, V, bh, S, DV, start_i, start_j, SB: tl.constexpr, BV: tl.constexpr, NV: tl.constexpr,
             PREC: tl.constexpr, ct: tl.constexpr):
    """dA_IJ = dO_I v_J^T (SB, SB), summed over the DV tiles."""
    acc = tl.zeros([SB, SB], dtype=ct)
    for vt in range(NV):
        ov = vt * BV + tl.arange(0, BV)
        mv = ov < DV
        do = load_block(DO, bh, S, DV, start_i, ov, mv, SB).to(ct)
        vv = load_block(V, bh, S, DV, start_j, ov, mv, SB).to(ct)
        acc += tl.dot(do, tl.trans(vv), input_precision=PREC)
    return acc


@triton.jit
def da_keys_before(DO, V, K, G, bh, S, DK, DV, chunk_start, start_i, n_blocks, ok, mk, SB: tl.constexpr,
                   BK: tl.constexpr, BV: tl.constexpr, NV: tl.constexpr, PREC: tl.constexpr, BONUS: tl.constexpr,
                   ct: tl.constexpr):
    """sum over the key sub-blocks J < n_blocks of the chunk of dA_IJ (k_J exp(e_J + btw_J)), (SB, BK): the rows of
    sub-block I (at start_i) against every earlier key, each key decayed to the end of sub-block n_blocks - 1
    (btw_J = the totals of the sub-blocks strictly between J and n_blocks). Walked from n_blocks - 1 down, so btw
    is a running sum."""
    acc = tl.zeros([SB, BK], dtype=ct)
    btw = tl.zeros([BK], dtype=ct)
    for jj in range(n_blocks):
        start_j = chunk_start + (n_blocks - 1 - jj) * SB
        tot_j, _, e_j = block_decays(G, bh, S, DK, start_j, ok, mk, SB, BONUS)
        kk = load_block(K, bh, S, DK, start_j, ok, mk, SB).to(ct)
        da = da_block(DO, V, bh, S, DV, start_i, start_j, SB, BV, NV, PREC, ct)
        acc += tl.dot(da, kk * tl.exp(e_j + btw[None, :]), input_precision=PREC)
        btw += tot_j
    return acc


@triton.jit
def load_state_tile(P, index, DK, DV, ok, ov, mk, mv):
    """The (BK, BV) tile at key columns ``ok``, value columns ``ov`` of state number ``index`` in a stack of
    (DK, DV) states at P (zeros past DK and DV)."""
    return tl.load(P + index.to(tl.int64) * DK * DV + ok[:, None] * DV + ov[None, :], mask=mk[:, None] & mv[None, :],
                   other=0.0)


@triton.jit
def times_state(X, STATE, bh, S, DK, DV, start, ok, mk, SB: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                NV: tl.constexpr, PREC: tl.constexpr):
    """X_I STATE^T (SB, BK) for rows of a (BH, S, DV) tensor X and one (DK, DV) state at STATE, over the DV tiles."""
    acc = tl.zeros([SB, BK], dtype=STATE.dtype.element_ty)
    for vt in range(NV):
        ov = vt * BV + tl.arange(0, BV)
        mv = ov < DV
        x = load_block(X, bh, S, DV, start, ov, mv, SB).to(acc.dtype)
        st = tl.load(STATE + ok[:, None] * DV + ov[None, :], mask=mk[:, None] & mv[None, :], other=0.0)
        acc += tl.dot(x, tl.trans(st), input_precision=PREC)
    return acc
