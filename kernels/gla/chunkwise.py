"""The chunkwise gated linear attention ("chunkwise--torch"): linear in S, parallel inside chunks of L positions,
recurrent across them. Same results as the step loop (recurrent.py), gradients by autograd.

Notation inside one chunk (positions i, j = 0..L-1, per key channel d; g = log_decay <= 0):
    D[i, j]  = sum_{j < s <= i} g[s]      decay from position j to position i        (i >= j)
    G[i]     = sum_{s <= i} g[s]          decay from the chunk-start state to i      (inclusive)
    T        = G[L-1]                     decay across the whole chunk
    R[j]     = sum_{j < s < L} g[s]       decay from j to the chunk end
Without bonus:  o_i = q_i (sum_{j <= i} exp(D[i, j]) k_j^T v_j + exp(G[i]) S_start)
With bonus u:   o_i = q_i (sum_{j < i} exp(D[i-1, j]) k_j^T v_j + Diag(u) k_i^T v_i + exp(G[i-1]) S_start)   (G[-1] = 0)
Both:           S_end = exp(T) S_start + sum_j exp(R[j]) k_j^T v_j     (exp(.) acting on rows d of the state)

Numerics: no quantity is ever divided by a cumulative decay (the k / cumprod(a) trick overflows once decays reach
exp(-20) per step). Every exponent above is a sum of g's over an interval, built directly (its own cumulative sum,
never the difference of two large prefix sums), so it is <= 0 and exact to rounding of its own size; the
intra-chunk exponents are masked to -inf above the diagonal *before* exp, so there is no inf * 0, in the forward
or in the backward.

Memory: with a vector decay the intra-chunk factors exp(D) depend on the key channel, so the intra-chunk matrix is
built as a (L, L, DK) tensor per chunk, i.e. B * H * S * L * DK elements (L times the size of q; a few such
temporaries are alive at once and autograd keeps them): fine for L = 16..64 at research sizes, the reason the
default chunk is 64 and not larger. A scalar decay (H,) only needs (L, L) per chunk.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .recurrent import compute_dtype


def _interval_sums(g: torch.Tensor) -> torch.Tensor:
    """D[..., i, j, :] = sum_{j < s <= i} g[..., s, :] for i >= j (0 for i <= j): (..., L, F) -> (..., L, L, F).

    Each column j is its own cumulative sum over s, so an entry never comes from subtracting two prefix sums
    (with g down to -20 a chunk's prefix sum reaches -20 L, and a difference of such sums would lose the small
    entries near the diagonal to float32 rounding)."""
    L = g.shape[-2]
    below = torch.ones(L, L, dtype=torch.bool, device=g.device).tril(-1)  # [s, j]: s > j
    terms = g[..., :, None, :].expand(*g.shape[:-2], L, L, g.shape[-1]).masked_fill(~below[:, :, None], 0.0)
    return torch.cumsum(terms, dim=-3)


def gla_chunkwise(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor, *,
                  bonus: torch.Tensor | None = None, scale: float | None = None, chunk_size: int = 64,
                  initial_state: torch.Tensor | None = None, return_last_state: bool = False):
    """Same signature and results as ``gla_recurrent``; any S (the last chunk is padded with no-op positions)."""
    out_dtype, ct = q.dtype, compute_dtype(q.dtype)
    B, H, S, DK = q.shape
    DV = v.shape[-1]
    scale = DK ** -0.5 if scale is None else scale
    q, k, v = q.to(ct) * scale, k.to(ct), v.to(ct)
    # every decay as (Bg, H, S, F): F = DK for vector decays, F = 1 for the scalar one; fixed decays are expanded
    # over S (a view) with Bg = 1 and broadcast against the batch below
    g = log_decay.to(ct)
    scalar = g.dim() == 1
    if g.dim() == 1:
        g = g[None, :, None, None].expand(1, H, S, 1)
    elif g.dim() == 2:
        g = g[None, :, None, :].expand(1, H, S, DK)
    L = max(1, min(chunk_size, S))
    NC = -(-S // L)
    pad = NC * L - S
    if pad:  # padded positions: k = v = 0 (no input), g = 0 (no decay): the state passes through unchanged
        q, k, v, g = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v, g))
    qc, kc = q.view(B, H, NC, L, DK), k.view(B, H, NC, L, DK)
    vc = v.view(B, H, NC, L, DV)
    gc = g.reshape(g.shape[0], H, NC, L, g.shape[-1])

    # --- the states at chunk starts (a scan over NC chunks) and the final state
    G = torch.cumsum(gc, dim=-2)  # (Bg, H, NC, L, F), inclusive
    R = F.pad(torch.flip(torch.cumsum(torch.flip(gc, [-2]), dim=-2), [-2])[..., 1:, :], (0, 0, 0, 1))  # exclusive
    local = (kc * torch.exp(R)).transpose(-1, -2) @ vc  # each chunk's own contribution to its end state
    carry = torch.exp(G[..., -1, :])[..., None]  # (Bg, H, NC, F, 1): decay across each chunk
    state = (torch.zeros(B, H, DK, DV, dtype=ct, device=q.device) if initial_state is None
             else initial_state.to(ct))
    starts = []
    # unbind over chunks (indexing inside the loop would cost a full-size gradient per chunk in the backward)
    for carry_c, local_c in zip(carry.unbind(2), local.unbind(2)):
        starts.append(state)
        state = carry_c * state + local_c
    start = torch.stack(starts, dim=2)  # (B, H, NC, DK, DV)

    # --- outputs: intra-chunk attention-like matrix plus the chunk-start state
    D = _interval_sums(gc)  # (Bg, H, NC, L, L, F)
    causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
    if bonus is None:
        keep, G_out = causal, G
    else:  # decays exclusive of position i: row i of D[i-1, .] and G[i-1]; the diagonal goes through u instead
        D = F.pad(D, (0, 0, 0, 0, 1, 0))[..., :L, :, :]
        keep, G_out = causal.tril(-1), F.pad(G, (0, 0, 1, 0))[..., :L, :]
    w = torch.exp(D.masked_fill(~keep[:, :, None], float("-inf")))  # masked before exp: exactly 0, no inf * 0
    if scalar:
        scores = (qc @ kc.transpose(-1, -2)) * w[..., 0]  # (B, H, NC, L, L)
    else:
        scores = (qc[..., :, None, :] * kc[..., None, :, :] * w).sum(-1)  # (B, H, NC, L, L) via (L, L, DK)
    o = scores @ vc + (qc * torch.exp(G_out)) @ start
    if bonus is not None:
        o = o + (qc * bonus.to(ct)[None, :, None, None, :] * kc).sum(-1, keepdim=True) * vc
    o = o.reshape(B, H, NC * L, DV)[:, :, :S].to(out_dtype)
    return (o, state) if return_last_state else o
