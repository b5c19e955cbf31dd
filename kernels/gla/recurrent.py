"""Gated linear attention step by step ("recurrent--torch", the reference) and the single step for generation.

Per batch and head the state S_t is a (DK, DV) matrix; a_t = exp(log_decay_t) in (0, 1] decays its rows:
    without bonus:  S_t = Diag(a_t) S_{t-1} + k_t^T v_t,    o_t = (scale q_t) S_t
    with bonus u:   o_t = (scale q_t) (S_{t-1} + Diag(u) k_t^T v_t),    then S_t = Diag(a_t) S_{t-1} + k_t^T v_t
(see the package docstring for where each convention comes from). Computed in float32, or float64 for float64 q.
"""
from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 inputs are computed in float64, everything else (fp32, bf16, fp16) in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _rows(decay: torch.Tensor) -> torch.Tensor:
    """A per-step decay factor shaped to broadcast against a state (B, H, DK, DV):
    (B, H, DK) or (H, DK) -> add a DV axis; (H,) -> (H, 1, 1)."""
    return decay[:, None, None] if decay.dim() == 1 else decay[..., None]


def gla_step(q_t: torch.Tensor, k_t: torch.Tensor, v_t: torch.Tensor, log_decay_t: torch.Tensor,
             state: torch.Tensor | None = None, bonus: torch.Tensor | None = None, scale: float | None = None):
    """One time step: q_t, k_t (B, H, DK); v_t (B, H, DV); log_decay_t (B, H, DK), (H, DK) or (H,);
    state (B, H, DK, DV) or None (zeros); bonus (H, DK) or None; scale defaults to DK ** -0.5.

    Returns o_t (B, H, DV) in q_t's dtype and the new state in float32 (float64 for float64 q_t)."""
    B, H, DK = q_t.shape
    DV = v_t.shape[-1]
    if k_t.shape != q_t.shape or v_t.shape[:2] != (B, H) or \
            tuple(log_decay_t.shape) not in ((B, H, DK), (H, DK), (H,)):
        raise ValueError(f"gla_step: shapes q_t {tuple(q_t.shape)}, k_t {tuple(k_t.shape)}, v_t {tuple(v_t.shape)}, "
                         f"log_decay_t {tuple(log_decay_t.shape)} do not fit (B, H, DK), (B, H, DV) and a decay of "
                         f"(B, H, DK), (H, DK) or (H,)")
    out_dtype, ct = q_t.dtype, compute_dtype(q_t.dtype)
    scale = DK ** -0.5 if scale is None else scale
    q_t = q_t.to(ct) * scale
    k_t, v_t = k_t.to(ct), v_t.to(ct)
    state = (torch.zeros(B, H, DK, DV, dtype=ct, device=q_t.device) if state is None else state.to(ct))
    a = _rows(torch.exp(log_decay_t.to(ct)))
    kv = k_t[..., :, None] * v_t[..., None, :]  # k_t^T v_t, (B, H, DK, DV)
    if bonus is None:
        state = a * state + kv
        o = (q_t[..., None, :] @ state)[..., 0, :]
    else:  # RWKV: read S_{t-1} plus the bonus-weighted current token, then decay and write
        o = (q_t[..., None, :] @ (state + bonus.to(ct)[..., None] * kv))[..., 0, :]
        state = a * state + kv
    return o.to(out_dtype), state


@torch.compiler.disable  # a loop over time: compiled, it would unroll into one graph node per step
def gla_recurrent(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor, *,
                  bonus: torch.Tensor | None = None, scale: float | None = None, chunk_size: int | None = None,
                  initial_state: torch.Tensor | None = None, return_last_state: bool = False):
    """Loop over time (O(S) sequential steps; ``chunk_size`` is accepted for a uniform signature and unused)."""
    out_dtype, ct = q.dtype, compute_dtype(q.dtype)
    q, k, v = (t.to(ct) for t in (q, k, v))
    S, DK = q.shape[-2], q.shape[-1]
    scale = DK ** -0.5 if scale is None else scale
    # data-dependent decays are (B, H, S, DK): one slice per step; fixed ones are the same tensor at every step
    decays = log_decay.to(ct).unbind(2) if log_decay.dim() == 4 else [log_decay.to(ct)] * S
    state = initial_state
    outs = []
    # unbind, not q[:, :, t]: indexing's backward would write a full-size gradient at every step (O(S^2))
    for q_t, k_t, v_t, d_t in zip(q.unbind(2), k.unbind(2), v.unbind(2), decays):
        o_t, state = gla_step(q_t, k_t, v_t, d_t, state, bonus=bonus, scale=scale)
        outs.append(o_t)
    o = torch.stack(outs, dim=2).to(out_dtype)
    return (o, state) if return_last_state else o
