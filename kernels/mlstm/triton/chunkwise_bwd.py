"""Backward kernels of the chunkwise mLSTM: the exact gradients of the op contract in docs/contracts.md
(stabilizers constant, normalizer differentiated).

Per position t of chunk c (start state C_c, n_c, m_c; q scaled): with W[t, j] = exp(log D[t, j] - m_t),
P = (q k^T) * W, a_t = exp(F_t + m_c - m_t) (F_t = sum_{s <= t in chunk} log f_s),
    num_t = sum_j P[t, j] v_j + a_t C_c^T q_t,   den_t = sum_j P[t, j] + a_t n_c . q_t,   h_t = num_t / N_t,
    N_t = max(|den_t|, exp(-m_t)) + eps.
The host turns dh into dnum_t = dh_t / N_t and dden_t = -(dh_t . h_t) / N_t * sign(den_t) [|den_t| > exp(-m_t)].
Across chunks C_{c+1} = rho_c C_c + sum_j u_j k_j v_j^T (rho_c = exp(g_c + m_c - m_{c+1}), u_j = exp(E_j - m_{c+1}),
E_j = sum_{s > j in chunk} log f_s + i_j), likewise n.
1. ``chunk_states_bwd``: the reverse scan for dC_c = rho_c dC_{c+1} + sum_t a_t q_t dnum_t^T (and dn), writing the
   gradient of every chunk-end state and the partial sums of d log rho_c.
2. ``chunk_grads``: one program per (batch*head, chunk): dq, dk, dv, d i, d log f of the chunk.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .chunkwise_fwd import qk_tile, segment_sums, state_tile


@triton.jit
def chunk_states_bwd(Q, LOGF, M_T, C_ST, N_ST, M_ST, DNUM, DDEN, DC_LAST, DN_LAST, DC_END, DN_END, DRHO, DC0, DN0,
                     S, DK, DV, NC, scale, L: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                     PREC: tl.constexpr):
    bh = tl.program_id(0)
    pk = tl.program_id(1)
    pv = tl.program_id(2)
    ok, ov, mk, mv, tile, tile_mask = state_tile(pk, pv, DK, DV, BK, BV)
    ol = tl.arange(0, L)
    dc = tl.load(DC_LAST + bh * DK * DV + tile, mask=tile_mask, other=0.0)
    dn = tl.load(DN_LAST + bh * DK + ok, mask=mk, other=0.0)
    for j in range(0, NC):
        ci = NC - 1 - j
        state = bh * (NC + 1) + ci
        end = bh * NC + ci  # the gradient of chunk ci's end state, for chunk_grads
        tl.store(DC_END + end * DK * DV + tile, dc, mask=tile_mask)
        if pv == 0:
            tl.store(DN_END + end * DK + ok, dn, mask=mk)
        pos = ci * L + ol
        valid = pos < S
        lf = tl.load(LOGF + bh * S + pos, mask=valid, other=0.0)
        m_c = tl.load(M_ST + state)
        rho = tl.exp(tl.sum(lf, axis=0) + m_c - tl.load(M_ST + state + 1))
        c_start = tl.load(C_ST + state * DK * DV + tile, mask=tile_mask, other=0.0)
        part = tl.sum(tl.sum(dc * c_start, axis=1), axis=0)
        if pv == 0:
            part += tl.sum(dn * tl.load(N_ST + state * DK + ok, mask=mk, other=0.0), axis=0)
        tl.store(DRHO + ((bh * NC + ci) * tl.num_programs(1) + pk) * tl.num_programs(2) + pv, rho * part)
        m_t = tl.load(M_T + bh * S + pos, mask=valid, other=0.0)
        a = tl.where(valid, tl.exp(tl.cumsum(lf, axis=0) + m_c - m_t), 0.0)
        qq = tl.load(Q + (bh * S + pos[:, None]) * DK + ok[None, :], mask=valid[:, None] & mk[None, :],
                     other=0.0).to(tl.float32) * tl.cast(scale, tl.float32)
        dnum = tl.load(DNUM + (bh * S + pos[:, None]) * DV + ov[None, :], mask=valid[:, None] & mv[None, :],
                       other=0.0)
        dden = tl.load(DDEN + bh * S + pos, mask=valid, other=0.0)
        dc = rho * dc + tl.dot(tl.trans(qq * a[:, None]), dnum, input_precision=PREC)
        dn = rho * dn + tl.sum(qq * (a * dden)[:, None], axis=0)
    tl.store(DC0 + bh * DK * DV + tile, dc, mask=tile_mask)
    if pv == 0:
        tl.store(DN0 + bh * DK + ok, dn, mask=mk)


@triton.jit
def chunk_grads(Q, K, V, LOGF, IG, M_T, C_ST, N_ST, M_ST, DNUM, DDEN, DC_END, DN_END, DQ, DKK, DVV, DIG, DLOGF,
                S, DK, DV, NC, scale, L: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, NK: tl.constexpr,
                NV: tl.constexpr, PREC: tl.constexpr):
    bh = tl.program_id(0)
    ci = tl.program_id(1)
    ol = tl.arange(0, L)
    pos = ci * L + ol
    valid = pos < S
    state = bh * (NC + 1) + ci
    end = bh * NC + ci
    lf = tl.load(LOGF + bh * S + pos, mask=valid, other=0.0)
    ig = tl.load(IG + bh * S + pos, mask=valid, other=float("-inf"))
    m_t = tl.load(M_T + bh * S + pos, mask=valid, other=0.0)
    m_c = tl.load(M_ST + state)
    m_next = tl.load(M_ST + state + 1)
    w = tl.where(valid[:, None], tl.exp(segment_sums(lf, ig, L) - m_t[:, None]), 0.0)
    a = tl.where(valid, tl.exp(tl.cumsum(lf, axis=0) + m_c - m_t), 0.0)
    u = tl.where(valid, tl.exp(tl.cumsum(lf, axis=0, reverse=True) - lf + ig - m_next), 0.0)
    dden = tl.load(DDEN + bh * S + pos, mask=valid, other=0.0)

    # q k^T, n_c . q, dn_{c+1} . k over the DK tiles
    scores = tl.zeros([L, L], dtype=tl.float32)
    qn = tl.zeros([L], dtype=tl.float32)
    kdn = tl.zeros([L], dtype=tl.float32)
    for kt in range(0, NK):
        ok, mk, _, _, qq, kk = qk_tile(Q, K, bh, S, DK, pos, valid, kt, scale, BK)
        scores += tl.dot(qq, tl.trans(kk), input_precision=PREC)
        qn += tl.sum(qq * tl.load(N_ST + state * DK + ok, mask=mk, other=0.0)[None, :], axis=1)
        kdn += tl.sum(kk * tl.load(DN_END + end * DK + ok, mask=mk, other=0.0)[None, :], axis=1)
    p = scores * w

    # over the DV tiles: dP, the inter-chunk terms of dA and du, and dv
    dp = tl.zeros([L, L], dtype=tl.float32) + dden[:, None]
    da = a * dden * qn
    du = kdn
    for vt in range(0, NV):
        ov = vt * BV + tl.arange(0, BV)
        mv = ov < DV
        vrows = (bh * S + pos[:, None]) * DV + ov[None, :]
        vmask = valid[:, None] & mv[None, :]
        vv = tl.load(V + vrows, mask=vmask, other=0.0).to(tl.float32)
        dnum = tl.load(DNUM + vrows, mask=vmask, other=0.0)
        dp += tl.dot(dnum, tl.trans(vv), input_precision=PREC)
        qc = tl.zeros([L, BV], dtype=tl.float32)
        kdc = tl.zeros([L, BV], dtype=tl.float32)
        for kt in range(0, NK):
            _, _, _, _, qq, kk = qk_tile(Q, K, bh, S, DK, pos, valid, kt, scale, BK)
            _, _, _, _, tile, tile_mask = state_tile(kt, vt, DK, DV, BK, BV)
            qc += tl.dot(qq, tl.load(C_ST + state * DK * DV + tile, mask=tile_mask, other=0.0), input_precision=PREC)
            kdc += tl.dot(kk, tl.load(DC_END + end * DK * DV + tile, mask=tile_mask, other=0.0),
                          input_precision=PREC)
        da += a * tl.sum(dnum * qc, axis=1)
        du += tl.sum(kdc * vv, axis=1)
        dv = tl.dot(tl.trans(p), dnum, input_precision=PREC) + u[:, None] * kdc
        tl.store(DVV + vrows, dv, mask=vmask)
    ds = dp * w
    dd = dp * p

    # dq and dk over the DK tiles
    for kt in range(0, NK):
        ok, mk, rows, qmask, qq, kk = qk_tile(Q, K, bh, S, DK, pos, valid, kt, scale, BK)
        dq_inter = dden[:, None] * tl.load(N_ST + state * DK + ok, mask=mk, other=0.0)[None, :]
        dk_inter = tl.zeros([L, BK], dtype=tl.float32) + tl.load(DN_END + end * DK + ok, mask=mk, other=0.0)[None, :]
        for vt in range(0, NV):
            ov = vt * BV + tl.arange(0, BV)
            mv = ov < DV
            vrows = (bh * S + pos[:, None]) * DV + ov[None, :]
            vmask = valid[:, None] & mv[None, :]
            _, _, _, _, tile, tile_mask = state_tile(kt, vt, DK, DV, BK, BV)
            dnum = tl.load(DNUM + vrows, mask=vmask, other=0.0)
            vv = tl.load(V + vrows, mask=vmask, other=0.0).to(tl.float32)
            c_start = tl.load(C_ST + state * DK * DV + tile, mask=tile_mask, other=0.0)
            dc_end = tl.load(DC_END + end * DK * DV + tile, mask=tile_mask, other=0.0)
            dq_inter += tl.dot(dnum, tl.trans(c_start), input_precision=PREC)
            dk_inter += tl.dot(vv, tl.trans(dc_end), input_precision=PREC)
        dq = tl.dot(ds, kk, input_precision=PREC) + a[:, None] * dq_inter
        dk = tl.dot(tl.trans(ds), qq, input_precision=PREC) + u[:, None] * dk_inter
        tl.store(DQ + rows, dq * tl.cast(scale, tl.float32), mask=qmask)
        tl.store(DKK + rows, dk, mask=qmask)

    # gate gradients: i enters log D[., j] and E_j; log f_s enters log D[t, j] for j < s <= t, F_t for s <= t,
    # and E_j for j < s (the whole-chunk decay g_c is added by the host from the d log rho partials)
    de = u * du
    upper = tl.where(ol[:, None] <= ol[None, :], 1.0, 0.0)  # [s, t] = t >= s
    below = tl.dot(upper, dd, input_precision="ieee")  # [s, j] = sum_{t >= s} dD[t, j]
    from_d = tl.sum(tl.where(ol[None, :] < ol[:, None], below, 0.0), axis=1)  # sum over j < s
    dlf = from_d + tl.cumsum(da, axis=0, reverse=True) + tl.cumsum(de, axis=0) - de
    tl.store(DIG + bh * S + pos, tl.sum(dd, axis=0) + de, mask=valid)
    tl.store(DLOGF + bh * S + pos, dlf, mask=valid)
