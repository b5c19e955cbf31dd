"""The chunkwise mLSTM ("chunkwise--torch"): linear in S, parallel inside chunks, recurrent across them.

Inside a chunk of L positions the output is the parallel form restricted to the chunk plus the contribution of the
state at the chunk start. Across chunks only the states (C, n, m) at chunk boundaries are carried, by a scan over
the S / L chunks. The per-position stabilizer is the same running max m_t as in the parallel and recurrent forms
(all stabilizers are detached), so the three forms compute the same function, with the same gradients.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .recurrent import zero_state
from .reference import State, compute_dtype, segment_sums


def chunk_end_weights(log_f: torch.Tensor, igate: torch.Tensor):
    """log_f, igate (B,NH,NC,L) -> each chunk's total log decay (B,NH,NC), the weights w (B,NH,NC,L) of its
    positions in its end state, in units of exp(m_local), and m_local (B,NH,NC), detached."""
    total = log_f.sum(-1)
    # suffix sums sum_{s > j} log f_s (accumulated from the chunk end, never as a difference of prefix sums)
    after = torch.flip(torch.cumsum(torch.flip(log_f, [-1]), dim=-1), [-1]) - log_f
    to_end = after + igate  # log weight of position j in its chunk's end state
    m_local = to_end.max(dim=-1).values.detach()
    return total, torch.exp(to_end - m_local[..., None]), m_local


def _chunk_states(k, v, log_f, igate, state: State):
    """States at the start of every chunk, and the final state.

    k (B,NH,NC,L,DK), v (B,NH,NC,L,DV), log_f, igate (B,NH,NC,L) -> C (B,NH,NC,DK,DV), n (B,NH,NC,DK), m (B,NH,NC)
    """
    total, w, m_local = chunk_end_weights(log_f, igate)
    w = w[..., None]
    c_local = (k * w).transpose(-1, -2) @ v  # each chunk's own contribution, in units of m_local
    n_local = (k * w).sum(-2)
    c, n, m = state
    starts_c, starts_n, starts_m = [], [], []
    # unbind over chunks (indexing inside the loop would cost a full-size gradient per chunk in the backward)
    for total_j, m_local_j, c_local_j, n_local_j in zip(total.unbind(2), m_local.unbind(2), c_local.unbind(2),
                                                         n_local.unbind(2)):
        starts_c.append(c)
        starts_n.append(n)
        starts_m.append(m)
        with torch.no_grad():
            m_new = torch.maximum(total_j + m, m_local_j)
        carry = torch.exp(total_j + m - m_new)
        add = torch.exp(m_local_j - m_new)
        c = carry[..., None, None] * c + add[..., None, None] * c_local_j
        n = carry[..., None] * n + add[..., None] * n_local_j
        m = m_new
    return (torch.stack(starts_c, 2), torch.stack(starts_n, 2), torch.stack(starts_m, 2)), (c, n, m)


def start_state(initial_state: State | None, q: torch.Tensor, v: torch.Tensor) -> State:
    """The state the op starts from, in q's dtype and device: the given one, else zeros (m = -inf)."""
    if initial_state is not None:
        return tuple(t.to(q.dtype) for t in initial_state)
    B, NH, _, DK = q.shape
    return zero_state(B, NH, DK, v.shape[-1], q.dtype, q.device)


def chunk_inputs(q, k, v, igate, fgate, chunk_size: int, initial_state: State | None):
    """The op's inputs in chunks, and how to return the result: q (scaled by DK^-0.5), k (B,NH,NC,L,DK), v
    (B,NH,NC,L,DV), log f and igate (B,NH,NC,L), the start state (C, n, m) in the compute dtype; ``finish(h, last,
    return_last_state)`` crops h (B,NH,NC,L,DV) to S in the input dtype. Any S: the last chunk is padded with no-op
    positions (no input, i = -inf; no decay, log f = 0), through which the state passes unchanged."""
    out_dtype, ct = q.dtype, compute_dtype(q.dtype)
    q, k, v, igate, fgate = (t.to(ct) for t in (q, k, v, igate, fgate))
    B, NH, S, DK = q.shape
    DV = v.shape[-1]
    L = max(1, min(chunk_size, S))
    NC = -(-S // L)
    pad = NC * L - S
    q = q * DK ** -0.5
    log_f = F.logsigmoid(fgate)
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        log_f = F.pad(log_f, (0, pad), value=0.0)
        igate = F.pad(igate, (0, pad), value=float("-inf"))
    state = start_state(initial_state, q, v)

    def finish(h: torch.Tensor, last: State, return_last_state: bool):
        h = h.reshape(B, NH, NC * L, DV)[:, :, :S].to(out_dtype)
        return (h, last) if return_last_state else h

    chunks = (q.view(B, NH, NC, L, DK), k.view(B, NH, NC, L, DK), v.view(B, NH, NC, L, DV),
              log_f.view(B, NH, NC, L), igate.view(B, NH, NC, L))
    return (*chunks, *state), finish


def mlstm_chunkwise(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, igate: torch.Tensor, fgate: torch.Tensor,
                    *, chunk_size: int = 64, eps: float = 1e-6, initial_state: State | None = None,
                    return_last_state: bool = False):
    """Same signature and results as the parallel form; any S."""
    (qc, kc, vc, fc, ic, *state), finish = chunk_inputs(q, k, v, igate, fgate, chunk_size, initial_state)
    (c0, n0, m0), last = _chunk_states(kc, vc, fc, ic, tuple(state))

    log_d = segment_sums(fc) + ic[..., None, :]  # (B, NH, NC, L, L), -inf above the diagonal
    from_start = torch.cumsum(fc, dim=-1) + m0[..., None]  # log weight of the chunk-start state at each position
    with torch.no_grad():
        m = torch.maximum(log_d.max(dim=-1).values, from_start)  # the running max m_t, (B, NH, NC, L)
    scores = (qc @ kc.transpose(-1, -2)) * torch.exp(log_d - m[..., None])
    decay = torch.exp(from_start - m)
    num = scores @ vc + decay[..., None] * (qc @ c0)
    den = scores.sum(-1) + decay * (qc @ n0[..., None])[..., 0]
    h = num / (torch.maximum(den.abs(), torch.exp(-m)) + eps)[..., None]
    return finish(h, last, return_last_state)
