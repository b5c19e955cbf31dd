"""The mLSTM step by step in one kernel ("recurrent--triton"): a loop over time inside each program, one program per
(batch*head, DV tile) holding its (DK x BV) slice of C. Also the single step used for generation (S = 1)."""
from __future__ import annotations

import triton
import triton.language as tl

from .chunkwise_fwd import state_tile


@triton.jit
def recurrent_fwd(Q, K, V, LOGF, IG, C0, N0, M0, H, C1, N1, M1, S, DK, DV, scale, eps,
                  BK: tl.constexpr, BV: tl.constexpr):
    bh = tl.program_id(0)
    pv = tl.program_id(1)
    ok, ov, mk, mv, tile, tile_mask = state_tile(0, pv, DK, DV, BK, BV)  # the whole DK in one tile
    c = tl.load(C0 + bh * DK * DV + tile, mask=tile_mask, other=0.0)
    n = tl.load(N0 + bh * DK + ok, mask=mk, other=0.0)
    m = tl.load(M0 + bh)
    for t in range(0, S):
        row = bh * S + t
        lf = tl.load(LOGF + row)
        ig = tl.load(IG + row)
        m_new = tl.maximum(lf + m, ig)
        f_w = tl.exp(lf + m - m_new)
        i_w = tl.exp(ig - m_new)
        qq = tl.load(Q + row * DK + ok, mask=mk, other=0.0).to(tl.float32) * tl.cast(scale, tl.float32)
        kk = tl.load(K + row * DK + ok, mask=mk, other=0.0).to(tl.float32)
        vv = tl.load(V + row * DV + ov, mask=mv, other=0.0).to(tl.float32)
        c = f_w * c + i_w * kk[:, None] * vv[None, :]
        n = f_w * n + i_w * kk
        m = m_new
        num = tl.sum(c * qq[:, None], axis=0)
        den = tl.sum(n * qq, axis=0)
        h = num / (tl.maximum(tl.abs(den), tl.exp(-m)) + tl.cast(eps, tl.float32))
        tl.store(H + row * DV + ov, h.to(H.dtype.element_ty), mask=mv)
    tl.store(C1 + bh * DK * DV + tile, c, mask=tile_mask)
    if pv == 0:
        tl.store(N1 + bh * DK + ok, n, mask=mk)
        tl.store(M1 + bh, m)
