"""Fused sLSTM kernels: the loop over time runs inside one program per (head, block of 16 batch rows).

Each step works through the head's units in tiles of BO: the four gate pre-activations of a tile are the input
plus h_{t-1} times the tile's rows of R, summed over tiles of BO units of h_{t-1} (R read from global memory, where
the whole R of a head stays L2-resident; for DH <= 64 one tile covers the head; every tl.dot takes one BO x BO tile
of R, so the shared memory a program needs does not grow with DH), plus the bias; the stabilizer, gates and the
c / n / h updates are fused. Per step the new state goes to the STATES buffer (which the backward needs anyway)
and a barrier makes h_t visible to the whole program before the next step reads it.

Layout: x (B, S, 4, NH, DH); R (4, NH, DH, DH) applied as R[g, h] @ h_prev; b (4, NH, DH);
STATES (S + 1, 4, B, NH, DH) float32 holding (h, c, n, m) after each step (index 0: the initial state);
RAW (S, 4, B, NH, DH) float32: the gate pre-activations, kept for the backward.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _gate_products(STATES, R, prev, ob, mb, oo, mo, head, NH, DH, BB: tl.constexpr, BO: tl.constexpr,
                   NT: tl.constexpr, PREC: tl.constexpr):
    """h_{t-1} @ R[g, head][oo, :]^T for the four gates, (BB, BO) each, summed over the head's units in tiles of BO
    (so a tl.dot never holds more than a BO x BO tile of R: the shared memory a program needs does not grow with DH)."""
    acc_i = tl.zeros([BB, BO], dtype=tl.float32)
    acc_f = tl.zeros([BB, BO], dtype=tl.float32)
    acc_z = tl.zeros([BB, BO], dtype=tl.float32)
    acc_o = tl.zeros([BB, BO], dtype=tl.float32)
    gate = NH * DH * DH  # one gate's R
    for kt in range(0, NT):
        ok = kt * BO + tl.arange(0, BO)
        mk = ok < DH
        h_k = tl.load(STATES + prev + (ob[:, None] * NH + head) * DH + ok[None, :], mask=mb[:, None] & mk[None, :],
                      other=0.0)
        rows = (head * DH + oo[:, None]) * DH + ok[None, :]  # R[g, head, oo, ok]
        rmask = mo[:, None] & mk[None, :]
        acc_i += tl.dot(h_k, tl.trans(tl.load(R + rows, mask=rmask, other=0.0).to(tl.float32)), input_precision=PREC)
        acc_f += tl.dot(h_k, tl.trans(tl.load(R + gate + rows, mask=rmask, other=0.0).to(tl.float32)),
                        input_precision=PREC)
        acc_z += tl.dot(h_k, tl.trans(tl.load(R + 2 * gate + rows, mask=rmask, other=0.0).to(tl.float32)),
                        input_precision=PREC)
        acc_o += tl.dot(h_k, tl.trans(tl.load(R + 3 * gate + rows, mask=rmask, other=0.0).to(tl.float32)),
                        input_precision=PREC)
    return acc_i, acc_f, acc_z, acc_o


@triton.jit
def slstm_fwd(X, R, BIAS, STATES, RAW, H, B, S, NH, DH,
              BB: tl.constexpr, BO: tl.constexpr, NT: tl.constexpr, PREC: tl.constexpr):
    head = tl.program_id(0)
    ob = tl.program_id(1) * BB + tl.arange(0, BB)  # batch rows
    mb = ob < B
    plane = B * NH * DH  # one (h | c | n | m) plane of a STATES step
    for t in range(0, S):
        prev = t * 4 * plane
        for tile in range(0, NT):
            oo = tile * BO + tl.arange(0, BO)
            mo = oo < DH
            mask = mb[:, None] & mo[None, :]
            unit = (ob[:, None] * NH + head) * DH + oo[None, :]
            c_prev = tl.load(STATES + prev + plane + unit, mask=mask, other=0.0)
            n_prev = tl.load(STATES + prev + 2 * plane + unit, mask=mask, other=0.0)
            m_prev = tl.load(STATES + prev + 3 * plane + unit, mask=mask, other=0.0)
            rec_i, rec_f, rec_z, rec_o = _gate_products(STATES, R, prev, ob, mb, oo, mo, head, NH, DH, BB, BO, NT,
                                                        PREC)
            xrow = ((ob[:, None] * S + t) * 4 * NH + head) * DH + oo[None, :]  # X[b, t, g, head, oo]
            raw_i = tl.load(X + xrow, mask=mask, other=0.0).to(tl.float32) + rec_i \
                + tl.load(BIAS + head * DH + oo, mask=mo, other=0.0).to(tl.float32)[None, :]
            raw_f = tl.load(X + xrow + NH * DH, mask=mask, other=0.0).to(tl.float32) + rec_f \
                + tl.load(BIAS + (NH + head) * DH + oo, mask=mo, other=0.0).to(tl.float32)[None, :]
            raw_z = tl.load(X + xrow + 2 * NH * DH, mask=mask, other=0.0).to(tl.float32) + rec_z \
                + tl.load(BIAS + (2 * NH + head) * DH + oo, mask=mo, other=0.0).to(tl.float32)[None, :]
            raw_o = tl.load(X + xrow + 3 * NH * DH, mask=mask, other=0.0).to(tl.float32) + rec_o \
                + tl.load(BIAS + (3 * NH + head) * DH + oo, mask=mo, other=0.0).to(tl.float32)[None, :]
            # log sigmoid(f) = min(f, 0) - log(1 + exp(-|f|)), stable for any f
            log_f = tl.minimum(raw_f, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(raw_f)))
            m_new = tl.maximum(log_f + m_prev, raw_i)
            i_w = tl.exp(raw_i - m_new)
            f_w = tl.exp(log_f + m_prev - m_new)
            z = 2.0 * tl.sigmoid(2.0 * raw_z) - 1.0  # tanh
            c_new = f_w * c_prev + i_w * z
            n_new = f_w * n_prev + i_w
            h_new = tl.sigmoid(raw_o) * c_new / n_new
            step = (t + 1) * 4 * plane
            tl.store(STATES + step + unit, h_new, mask=mask)
            tl.store(STATES + step + plane + unit, c_new, mask=mask)
            tl.store(STATES + step + 2 * plane + unit, n_new, mask=mask)
            tl.store(STATES + step + 3 * plane + unit, m_new, mask=mask)
            raw = t * 4 * plane + unit
            tl.store(RAW + raw, raw_i, mask=mask)
            tl.store(RAW + raw + plane, raw_f, mask=mask)
            tl.store(RAW + raw + 2 * plane, raw_z, mask=mask)
            tl.store(RAW + raw + 3 * plane, raw_o, mask=mask)
            tl.store(H + ((ob[:, None] * S + t) * NH + head) * DH + oo[None, :], h_new.to(H.dtype.element_ty),
                     mask=mask)
        tl.debug_barrier()  # h_t complete before step t + 1 reads it


@triton.jit
def slstm_bwd(R, STATES, RAW, DH_OUT, DH_LAST, DRAW, DREC, DC_BUF, DN_BUF, B, S, NH, DH, clip,
              BB: tl.constexpr, BO: tl.constexpr, NT: tl.constexpr, PREC: tl.constexpr,
              CLIP: tl.constexpr):
    """Backward through time. Per step t (last first), per tile of units: the gate gradients from dh_t (output
    gradient + the recurrent gradient from step t + 1), dc_t, dn_t; then dh_rec_{t-1} = sum_g draw_g @ R_g over all
    units. DRAW (S, 4, B, NH, DH) receives the pre-activation gradients (= dx); dR and db are sums over DRAW
    computed by the host. DREC, DC_BUF, DN_BUF (B, NH, DH) carry dh_rec, dc, dn between steps and hold the initial
    state's gradients at the end (seeded with the final state's gradients)."""
    head = tl.program_id(0)
    ob = tl.program_id(1) * BB + tl.arange(0, BB)
    mb = ob < B
    plane = B * NH * DH
    for j in range(0, S):
        t = S - 1 - j
        for tile in range(0, NT):
            oo = tile * BO + tl.arange(0, BO)
            mo = oo < DH
            mask = mb[:, None] & mo[None, :]
            unit = (ob[:, None] * NH + head) * DH + oo[None, :]
            now, prev = (t + 1) * 4 * plane, t * 4 * plane
            c = tl.load(STATES + now + plane + unit, mask=mask, other=0.0)
            n = tl.load(STATES + now + 2 * plane + unit, mask=mask, other=1.0)
            m = tl.load(STATES + now + 3 * plane + unit, mask=mask, other=0.0)
            c_prev = tl.load(STATES + prev + plane + unit, mask=mask, other=0.0)
            n_prev = tl.load(STATES + prev + 2 * plane + unit, mask=mask, other=0.0)
            m_prev = tl.load(STATES + prev + 3 * plane + unit, mask=mask, other=0.0)
            raw = t * 4 * plane + unit
            raw_i = tl.load(RAW + raw, mask=mask, other=0.0)
            raw_f = tl.load(RAW + raw + plane, mask=mask, other=0.0)
            raw_z = tl.load(RAW + raw + 2 * plane, mask=mask, other=0.0)
            raw_o = tl.load(RAW + raw + 3 * plane, mask=mask, other=0.0)
            dh = tl.load(DH_OUT + ((ob[:, None] * S + t) * NH + head) * DH + oo[None, :], mask=mask,
                         other=0.0).to(tl.float32) + tl.load(DREC + unit, mask=mask, other=0.0)
            if t == S - 1:
                dh += tl.load(DH_LAST + unit, mask=mask, other=0.0)
            dc = tl.load(DC_BUF + unit, mask=mask, other=0.0)
            dn = tl.load(DN_BUF + unit, mask=mask, other=0.0)
            log_f = tl.minimum(raw_f, 0.0) - tl.log(1.0 + tl.exp(-tl.abs(raw_f)))
            i_w = tl.exp(raw_i - m)
            f_w = tl.exp(log_f + m_prev - m)
            z = 2.0 * tl.sigmoid(2.0 * raw_z) - 1.0
            o = tl.sigmoid(raw_o)
            d_o = dh * (c / n) * o * (1.0 - o)
            dc += dh * o / n
            dn -= dh * o * c / (n * n)
            d_z = dc * i_w * (1.0 - z * z)
            d_i = (dc * z + dn) * i_w
            d_f = (dc * c_prev + dn * n_prev) * f_w * tl.sigmoid(-raw_f)
            tl.store(DC_BUF + unit, dc * f_w, mask=mask)
            tl.store(DN_BUF + unit, dn * f_w, mask=mask)
            tl.store(DRAW + raw, d_i, mask=mask)
            tl.store(DRAW + raw + plane, d_f, mask=mask)
            tl.store(DRAW + raw + 2 * plane, d_z, mask=mask)
            tl.store(DRAW + raw + 3 * plane, d_o, mask=mask)
        tl.debug_barrier()  # every unit's d raw_t is written
        # dh_rec_{t-1}[:, in] = sum_g draw_g[:, out] @ R[g, head][out, in], by tiles of input units, each summed over
        # tiles of output units
        raw = t * 4 * plane
        for tile in range(0, NT):
            oo = tile * BO + tl.arange(0, BO)
            mo = oo < DH
            rec = tl.zeros([BB, BO], dtype=tl.float32)
            for kt in range(0, NT):
                ok = kt * BO + tl.arange(0, BO)
                mk = ok < DH
                part = (ob[:, None] * NH + head) * DH + ok[None, :]
                pmask = mb[:, None] & mk[None, :]
                cols = (head * DH + ok[:, None]) * DH + oo[None, :]  # R[g, head, ok, oo]
                cmask = mk[:, None] & mo[None, :]
                for g in range(0, 4):
                    rec += tl.dot(tl.load(DRAW + raw + g * plane + part, mask=pmask, other=0.0),
                                  tl.load(R + g * NH * DH * DH + cols, mask=cmask, other=0.0).to(tl.float32),
                                  input_precision=PREC)
            if CLIP:
                rec = tl.minimum(tl.maximum(rec, -clip), clip)
            tl.store(DREC + (ob[:, None] * NH + head) * DH + oo[None, :], rec, mask=mb[:, None] & mo[None, :])
        tl.debug_barrier()  # dh_rec_{t-1} complete before step t - 1 reads it
