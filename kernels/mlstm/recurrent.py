"""The mLSTM step by step ("recurrent--torch"), and the single step used for generation.

State in stabilized units (C, n, m): the true memory is C * exp(m). m starts at -inf, so the first step takes
m_1 = i_1 and the running max equals the parallel form's stabilizer exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .reference import State, compute_dtype


def zero_state(B: int, NH: int, DK: int, DV: int, dtype: torch.dtype, device) -> State:
    return (torch.zeros(B, NH, DK, DV, dtype=dtype, device=device), torch.zeros(B, NH, DK, dtype=dtype, device=device),
            torch.full((B, NH), float("-inf"), dtype=dtype, device=device))


def mlstm_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, igate: torch.Tensor, fgate: torch.Tensor,
               state: State, eps: float = 1e-6) -> tuple[torch.Tensor, State]:
    """One time step. q, k (B, NH, DK) (q not yet scaled); v (B, NH, DV); igate, fgate (B, NH)."""
    c, n, m = state
    log_f = F.logsigmoid(fgate)
    with torch.no_grad():
        m_new = torch.maximum(log_f + m, igate)
    f_w = torch.exp(log_f + m - m_new)  # 0 when m = -inf (empty state)
    i_w = torch.exp(igate - m_new)
    c = f_w[..., None, None] * c + i_w[..., None, None] * (k[..., :, None] * v[..., None, :])
    n = f_w[..., None] * n + i_w[..., None] * k
    q = q * q.shape[-1] ** -0.5
    num = (q[..., None, :] @ c)[..., 0, :]  # (B, NH, DV)
    den = (q * n).sum(-1)
    h = num / (torch.maximum(den.abs(), torch.exp(-m_new)) + eps)[..., None]
    return h, (c, n, m_new)


@torch.compiler.disable  # a loop over time: compiled, it would unroll into one graph node per step
def mlstm_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, igate: torch.Tensor, fgate: torch.Tensor,
                    *, eps: float = 1e-6, initial_state: State | None = None, return_last_state: bool = False,
                    chunk_size: int | None = None):
    """Loop over time; same signature and results as the parallel form (``chunk_size`` unused)."""
    out_dtype, ct = q.dtype, compute_dtype(q.dtype)
    q, k, v, igate, fgate = (t.to(ct) for t in (q, k, v, igate, fgate))
    B, NH, S, DK = q.shape
    state = (tuple(t.to(ct) for t in initial_state) if initial_state is not None
             else zero_state(B, NH, DK, v.shape[-1], ct, q.device))
    hs = []
    # unbind, not q[:, :, t]: indexing's backward would write a full-size gradient at every step (O(S^2))
    for q_t, k_t, v_t, i_t, f_t in zip(*(t.unbind(2) for t in (q, k, v, igate, fgate))):
        h, state = mlstm_step(q_t, k_t, v_t, i_t, f_t, state, eps)
        hs.append(h)
    h = torch.stack(hs, dim=2).to(out_dtype)
    return (h, state) if return_last_state else h
