"""The sLSTM recurrence in plain PyTorch (backend "torch"): a loop over time with memory mixing inside heads.

Per step, for each head h and gate g in (i, f, z, o): raw_g = x_g + R[g, h] @ h_prev + b_g;
i = exp, f = sigmoid (in log space), z = tanh, o = sigmoid; with the detached stabilizer
m_t = max(log f_t + m_{t-1}, i~_t) (m_0 = -inf, so the first step takes i~):
    c_t = f' c_{t-1} + i' z_t,  n_t = f' n_{t-1} + i',  h_t = o_t c_t / n_t,
i' = exp(i~ - m_t), f' = exp(log f + m_{t-1} - m_t). Then n_t >= 1 always (one of i', f' is 1 and n_1 = 1), and
h does not depend on m, so detaching m leaves every gradient exact.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

State = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # h, c, n, m, each (B, NH, DH)


class _ClipGradient(torch.autograd.Function):
    """Identity whose backward clamps the incoming gradient to [-clip, clip] (the paper clips the recurrent
    gradient delta^R_h to 10)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, clip: float) -> torch.Tensor:
        ctx.clip = clip
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad.clamp(-ctx.clip, ctx.clip), None


def zero_state(B: int, NH: int, DH: int, dtype: torch.dtype, device) -> State:
    zeros = torch.zeros(B, NH, DH, dtype=dtype, device=device)
    return zeros, zeros, zeros, torch.full_like(zeros, float("-inf"))


def start_state(x: torch.Tensor, initial_state: State | None) -> tuple[torch.dtype, State]:
    """The dtype the loop runs in (float32 for half-precision x) and its first state, zeros unless given."""
    ct = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    B, _, _, NH, DH = x.shape
    if initial_state is not None:
        return ct, tuple(t.to(ct) for t in initial_state)
    return ct, zero_state(B, NH, DH, ct, x.device)


def slstm_step(x: torch.Tensor, R: torch.Tensor, b: torch.Tensor, state: State,
               recurrent_grad_clip: float | None = None, igate_activation: str = "exp") -> tuple[torch.Tensor, State]:
    """One step. x (B, 4, NH, DH) input pre-activations; R (4, NH, DH, DH); b (4, NH, DH).
    ``igate_activation="sigmoid"`` (an ablation) gates the input by sigmoid(i~) = exp(log sigmoid(i~)) instead."""
    h, c, n, m = state
    h_rec = h if recurrent_grad_clip is None else _ClipGradient.apply(h, recurrent_grad_clip)
    raw = x + torch.einsum("ghed,bhd->bghe", R, h_rec) + b
    i_raw, f_raw, z_raw, o_raw = raw.unbind(1)
    if igate_activation == "sigmoid":
        i_raw = F.logsigmoid(i_raw)
    log_f = F.logsigmoid(f_raw)
    with torch.no_grad():
        m_new = torch.maximum(log_f + m, i_raw)
    i_w = torch.exp(i_raw - m_new)
    f_w = torch.exp(log_f + m - m_new)  # 0 on the first step (m = -inf)
    c = f_w * c + i_w * torch.tanh(z_raw)
    n = f_w * n + i_w
    h = torch.sigmoid(o_raw) * c / n
    return h, (h, c, n, m_new)


@torch.compiler.disable  # a loop over time: compiled, it would unroll into one graph node per step
def slstm_torch(x: torch.Tensor, R: torch.Tensor, b: torch.Tensor, *, initial_state: State | None = None,
                return_last_state: bool = False, recurrent_grad_clip: float | None = None,
                igate_activation: str = "exp"):
    """x (B, S, 4, NH, DH) -> h (B, S, NH, DH); half-precision inputs run with float32 states."""
    out_dtype = x.dtype
    ct, state = start_state(x, initial_state)
    x, R, b = x.to(ct), R.to(ct), b.to(ct)
    hs = []
    for x_t in x.unbind(1):  # unbind, not x[:, t]: indexing's backward writes a full-size gradient per step
        h, state = slstm_step(x_t, R, b, state, recurrent_grad_clip, igate_activation)
        hs.append(h)
    h = torch.stack(hs, dim=1).to(out_dtype)
    return (h, state) if return_last_state else h
