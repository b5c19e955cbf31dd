"""The stabilized parallel (quadratic) form of the mLSTM: the reference every other form is tested against.

Per batch and head, with F_t = sum_{s<=t} log sigmoid(f_s) and the (detached) stabilizer
    m_t = max(F_t + m_0, max_{j<=t} (F_t - F_j + i_j))        (m_0 = -inf without an initial state)
the output is
    h_t = (C_t^T q_t) / (max(|n_t . q_t|, exp(-m_t)) + eps),   q scaled by DK^-0.5,
with C_t = exp(F_t + m_0 - m_t) C_0 + sum_{j<=t} exp(F_t - F_j + i_j - m_t) k_j v_j^T and n_t likewise with k_j.
m_t is exactly the running max of the recurrent form, so every form adds eps in the same units.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

State = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # C (B,NH,DK,DV), n (B,NH,DK), m (B,NH)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs are computed (and states kept) in float32."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


def segment_sums(log_f: torch.Tensor) -> torch.Tensor:
    """out[..., t, j] = sum_{j < s <= t} log_f[..., s] for j <= t, -inf above the diagonal: (..., S) -> (..., S, S).

    Each column is its own cumulative sum, so an entry is never the difference of two large prefix sums: with
    gate pre-activations of +-1e4, F_t - F_j would keep only a few bits in float32."""
    S = log_f.shape[-1]
    causal = torch.ones(S, S, dtype=torch.bool, device=log_f.device).tril()
    strictly_below = causal.tril(-1)
    terms = log_f[..., :, None].expand(*log_f.shape, S).masked_fill(~strictly_below, 0.0)  # [s, j] = log_f[s], s > j
    return torch.cumsum(terms, dim=-2).masked_fill(~causal, float("-inf"))


def mlstm_parallel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, igate: torch.Tensor, fgate: torch.Tensor,
                   *, eps: float = 1e-6, initial_state: State | None = None, return_last_state: bool = False,
                   chunk_size: int | None = None):
    """q, k (B, NH, S, DK); v (B, NH, S, DV); igate, fgate (B, NH, S) pre-activations. O(S^2) time and memory.
    ``chunk_size`` is accepted for a uniform signature and unused."""
    out_dtype, ct = q.dtype, compute_dtype(q.dtype)
    q, k, v, igate, fgate = (t.to(ct) for t in (q, k, v, igate, fgate))
    S, DK = q.shape[-2], q.shape[-1]
    q = q * DK ** -0.5
    log_f = F.logsigmoid(fgate)
    cum = torch.cumsum(log_f, dim=-1)  # F_t (B, NH, S): decay of the initial state up to t
    log_d = segment_sums(log_f) + igate[..., None, :]  # [t, j] = F_t - F_j + i_j, -inf for j > t
    with torch.no_grad():  # the stabilizer is a constant for autograd
        m = log_d.max(dim=-1).values  # (B, NH, S)
        if initial_state is not None:
            m = torch.maximum(m, cum + initial_state[2][..., None].to(ct))
    weights = torch.exp(log_d - m[..., None])  # (B, NH, S, S); entries <= 1
    scores = (q @ k.transpose(-1, -2)) * weights
    num = scores @ v  # C_t^T q_t in units of m_t, (B, NH, S, DV)
    den = scores.sum(-1)  # n_t . q_t in units of m_t, (B, NH, S)
    if initial_state is not None:
        c0, n0, m0 = (t.to(ct) for t in initial_state)
        decay = torch.exp(cum + m0[..., None] - m)  # (B, NH, S)
        num = num + decay[..., None] * (q @ c0)
        den = den + decay * (q @ n0[..., None])[..., 0]
    h = (num / (torch.maximum(den.abs(), torch.exp(-m)) + eps)[..., None]).to(out_dtype)
    if not return_last_state:
        return h
    w_last = weights[..., -1, :, None]  # weights of every position in the last state, (B, NH, S, 1)
    c = (k * w_last).transpose(-1, -2) @ v
    n = (k * w_last).sum(-2)
    m_last = m[..., -1]
    if initial_state is not None:
        decay = torch.exp(cum[..., -1] + m0 - m_last)  # cum[-1] is the plain sum of all log f
        c = c + decay[..., None, None] * c0
        n = n + decay[..., None] * n0
    return h, (c, n, m_last)
