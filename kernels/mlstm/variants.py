"""The mLSTM with its stabilizer and normalizer switchable, for the memory ablations (not a fast path).

The parallel form of ``reference.py`` with two switches, computed in the dtype it is given (a bf16 run keeps bf16
arithmetic here, where the other forms compute in float32), so a run shows where each choice overflows:

stabilizer  "max":  m_t = max_j (F_t - F_j + i_j) (detached), the paper's stabilized form;
            "none": m_t = 0, the memory is kept in true units: C_t = sum_j exp(F_t - F_j + i_j) k_j v_j^T overflows
                    once an input gate pre-activation (plus the key/value scale) passes the dtype's log-max
                    (about 88.7 in float32 and bfloat16, 11.1 in float16).
normalizer  "max":  h_t = C_t^T q_t / (max(|n_t . q_t|, exp(-m_t)) + eps), the paper's (lower bound 1 in true units);
            "abs":  h_t = C_t^T q_t / (|n_t . q_t| + eps), no lower bound;
            "one":  h_t = C_t^T q_t, no normalizer (the head-wise norm after the cell still rescales each head).

With stabilizer "max" and normalizer "max" in float32 this is exactly ``mlstm_parallel``. State (C, n, m) in units
of exp(m) as everywhere (m = 0 without the stabilizer).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .reference import State, segment_sums

STABILIZERS = ("max", "none")
NORMALIZERS = ("max", "abs", "one")


def check_switches(stabilizer: str, normalizer: str) -> None:
    if stabilizer not in STABILIZERS:
        raise ValueError(f"unknown mLSTM stabilizer {stabilizer!r}; valid: {', '.join(STABILIZERS)}")
    if normalizer not in NORMALIZERS:
        raise ValueError(f"unknown mLSTM normalizer {normalizer!r}; valid: {', '.join(NORMALIZERS)}")


def normalize(num: torch.Tensor, den: torch.Tensor, m: torch.Tensor, normalizer: str, eps: float) -> torch.Tensor:
    """h from C^T q (num, (..., DV)) and n . q (den, (...)), both in units of exp(m) (m, (...))."""
    if normalizer == "max":
        return num / (torch.maximum(den.abs(), torch.exp(-m)) + eps)[..., None]
    if normalizer == "abs":
        return num / (den.abs() + eps)[..., None]
    return num * torch.exp(m)[..., None]  # back to true units


def mlstm_variant(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, igate: torch.Tensor, fgate: torch.Tensor, *,
                  stabilizer: str = "max", normalizer: str = "max", eps: float = 1e-6,
                  initial_state: State | None = None, return_last_state: bool = False, chunk_size: int | None = None):
    """Shapes as ``mlstm_parallel``: q, k (B, NH, S, DK); v (B, NH, S, DV); igate, fgate (B, NH, S). O(S^2)."""
    check_switches(stabilizer, normalizer)
    DK = q.shape[-1]
    q = q * DK ** -0.5
    log_f = F.logsigmoid(fgate)
    cum = torch.cumsum(log_f, dim=-1)  # F_t (B, NH, S)
    log_d = segment_sums(log_f) + igate[..., None, :]  # [t, j] = F_t - F_j + i_j, -inf for j > t
    if stabilizer == "max":
        with torch.no_grad():
            m = log_d.max(dim=-1).values
            if initial_state is not None:
                m = torch.maximum(m, cum + initial_state[2][..., None].to(m.dtype))
    else:
        m = torch.zeros_like(cum)
    weights = torch.exp(log_d - m[..., None])  # (B, NH, S, S)
    scores = (q @ k.transpose(-1, -2)) * weights
    num, den = scores @ v, scores.sum(-1)
    if initial_state is not None:
        c0, n0, m0 = (t.to(q.dtype) for t in initial_state)
        decay = torch.exp(cum + m0[..., None] - m)
        num = num + decay[..., None] * (q @ c0)
        den = den + decay * (q @ n0[..., None])[..., 0]
    h = normalize(num, den, m, normalizer, eps)
    if not return_last_state:
        return h
    w_last = weights[..., -1, :, None]
    c, n, m_last = (k * w_last).transpose(-1, -2) @ v, (k * w_last).sum(-2), m[..., -1]
    if initial_state is not None:
        decay = torch.exp(cum[..., -1] + m0 - m_last)
        c, n = c + decay[..., None, None] * c0, n + decay[..., None] * n0
    return h, (c, n, m_last)


def mlstm_variant_step(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, igate: torch.Tensor, fgate: torch.Tensor,
                       state: State, eps: float = 1e-6, *, stabilizer: str = "max",
                       normalizer: str = "max") -> tuple[torch.Tensor, State]:
    """One step with the same switches (generation, and the recurrent check of ``mlstm_variant``).
    q, k (B, NH, DK) (q not yet scaled); v (B, NH, DV); igate, fgate (B, NH)."""
    check_switches(stabilizer, normalizer)
    c, n, m = state
    log_f = F.logsigmoid(fgate)
    if stabilizer == "max":
        with torch.no_grad():
            m_new = torch.maximum(log_f + m, igate)
    else:
        m_new = torch.zeros_like(igate)
    f_w = torch.exp(log_f + m - m_new)  # 0 on an empty state (m = -inf)
    i_w = torch.exp(igate - m_new)
    c = f_w[..., None, None] * c + i_w[..., None, None] * (k[..., :, None] * v[..., None, :])
    n = f_w[..., None] * n + i_w[..., None] * k
    q = q * q.shape[-1] ** -0.5
    h = normalize((q[..., None, :] @ c)[..., 0, :], (q * n).sum(-1), m_new, normalizer, eps)
    return h, (c, n, m_new)
