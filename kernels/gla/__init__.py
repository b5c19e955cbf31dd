"""The gated linear attention op (RetNet, GLA, HGRN2, RWKV-5, RWKV-6): one signature, several forms.

``gla(q, k, v, log_decay, *, bonus=None, scale=None, backend="auto", chunk_size=64, initial_state=None,
return_last_state=False)``

Shapes: q, k (B, H, S, DK); v (B, H, S, DV); initial_state (B, H, DK, DV); bonus (H, DK); log_decay is the log of
the per-step decay a_t in (0, 1] (values <= 0; not checked, that would cost a device sync) in one of three shapes:
    (B, H, S, DK)  data-dependent vector decay   GLA (log_decay = logsigmoid(.) / tau), RWKV-6 (-exp(w_t)), HGRN2
    (H, DK)        fixed vector decay            RWKV-5 (-exp(w))
    (H,)           fixed scalar decay per head   RetNet (log(1 - 2^(-5 - h)))
``scale`` multiplies q (default DK ** -0.5; RWKV uses 1.0).

Recurrence per batch and head, state S_t (DK, DV), S_0 = initial_state (zeros by default):
    without bonus (GLA, RetNet, HGRN2):
        S_t = Diag(a_t) S_{t-1} + k_t^T v_t,        o_t = (scale q_t) S_t
    with bonus u (RWKV-5/6 "time_first"):
        o_t = (scale q_t) (S_{t-1} + Diag(u) k_t^T v_t),   then   S_t = Diag(a_t) S_{t-1} + k_t^T v_t
The bonus ordering is RWKV's own: the official RWKV-6 CUDA kernel (BlinkDL/ChatRWKV rwkv6.cu) computes
``y += r * (u * kv + s); s = s * w + kv`` per channel, and flash-linear-attention's ``naive_recurrent_rwkv6`` does
the same, so a_t first acts on S_{t-1} *after* o_t is read (o_t sees k_j, j < t, through a_{j+1} ... a_{t-1}).
Without a bonus the decay acts before the read (GLA/RetNet; fla's ``naive_recurrent_gla``). The last state is the
same S_T in both cases.

HGRN (h_t = f_t * h_{t-1} + (1 - f_t) * i_t per channel) is the DK = DV = 1 case with one head per channel:
q = 1, k = 1 - f, v = i, log_decay = log f of shape (B, D, S, 1), scale = 1 (then o_t = h_t). HGRN2 is its outer
product expansion: k = 1 - f with the vector decay f over DK.

Returns o (B, H, S, DV) in q's dtype; with ``return_last_state`` also (o, S_T) with S_T (B, H, DK, DV) in float32
(float64 for float64 inputs).

Forms: "recurrent--torch" (the reference loop), "chunkwise--torch" (chunkwise.py) and, where triton is installed,
"chunkwise--triton" (triton/: forward and backward kernels). "auto" picks chunkwise--triton for CUDA tensors whose
shapes it tiles (resolve_backend), chunkwise--torch otherwise.
"""
from __future__ import annotations

from typing import Callable

import torch

from .chunkwise import gla_chunkwise
from .recurrent import gla_recurrent, gla_step

BACKENDS: dict[str, Callable] = {
    "chunkwise--torch": gla_chunkwise,
    "recurrent--torch": gla_recurrent,
}

try:  # triton is a Linux dependency; elsewhere only the torch forms exist
    from .triton import CHUNK_SIZES as TRITON_CHUNK_SIZES
    from .triton import MAX_DK as TRITON_MAX_DK
    from .triton import gla_chunkwise_triton
except ImportError:  # pragma: no cover
    pass
else:
    BACKENDS["chunkwise--triton"] = gla_chunkwise_triton


def resolve_backend(backend: str, device: torch.device | None = None, head_dims: tuple[int, int] = (64, 64),
                    chunk_size: int = 64, dtype: torch.dtype | None = None) -> str:
    """"auto" = chunkwise--triton on CUDA tensors when it is installed and tiles these shapes (DK 16..256, DV >= 16,
    chunk 16/32/64, not float64), chunkwise--torch otherwise (also when no device is given)."""
    if backend == "auto":
        dk, dv = head_dims
        triton_fits = ("chunkwise--triton" in BACKENDS and 16 <= dk <= TRITON_MAX_DK and dv >= 16
                       and chunk_size in TRITON_CHUNK_SIZES and dtype != torch.float64)
        return "chunkwise--triton" if device is not None and device.type == "cuda" and triton_fits \
            else "chunkwise--torch"
    if backend not in BACKENDS:
        raise ValueError(f"unknown GLA backend {backend!r}; valid: auto, {', '.join(BACKENDS)}")
    return backend


def check_shapes(q, k, v, log_decay, bonus=None, initial_state=None) -> None:
    """Raise a one-line ValueError naming every shape when they do not fit together."""
    ok = q.dim() == 4 and k.shape == q.shape and v.dim() == 4 and q.shape[2] >= 1
    if ok:
        B, H, S, DK = q.shape
        DV = v.shape[-1]
        ok = (v.shape[:3] == q.shape[:3]
              and tuple(log_decay.shape) in ((B, H, S, DK), (H, DK), (H,))
              and (bonus is None or tuple(bonus.shape) == (H, DK))
              and (initial_state is None or tuple(initial_state.shape) == (B, H, DK, DV)))
    if not ok:
        extra = "".join(f", {name} {tuple(t.shape)}" for name, t in (("bonus", bonus), ("initial_state", initial_state))
                        if t is not None)
        raise ValueError(f"gla: shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, log_decay "
                         f"{tuple(log_decay.shape)}{extra} do not fit q, k (B, H, S>=1, DK), v (B, H, S, DV), "
                         f"log_decay (B, H, S, DK) | (H, DK) | (H,), bonus (H, DK), initial_state (B, H, DK, DV)")


def gla(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, log_decay: torch.Tensor, *,
        bonus: torch.Tensor | None = None, scale: float | None = None, backend: str = "auto", chunk_size: int = 64,
        initial_state: torch.Tensor | None = None, return_last_state: bool = False):
    """o (B, H, S, DV); with ``return_last_state``: (o, S_T (B, H, DK, DV)). See the module docstring."""
    check_shapes(q, k, v, log_decay, bonus, initial_state)
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"gla: chunk_size must be a positive int, got {chunk_size!r}")
    fn = BACKENDS[resolve_backend(backend, q.device, (q.shape[-1], v.shape[-1]), chunk_size, q.dtype)]
    return fn(q, k, v, log_decay, bonus=bonus, scale=scale, chunk_size=chunk_size, initial_state=initial_state,
              return_last_state=return_last_state)


__all__ = ["BACKENDS", "check_shapes", "gla", "gla_chunkwise", "gla_recurrent", "gla_step", "resolve_backend"]
