"""The sLSTM recurrence as one autograd node (backend "torch_fused"): the same equations as ``reference.py``, with
the forward loop run without autograd and a hand-written backward through time.

Why: on a CPU at small widths the reference's cost is per-op overhead, not arithmetic (about 15 ops per step, each
recorded by autograd and replayed in backward). Here a step is one batched matmul for all heads and gates plus a few
elementwise ops, with nothing recorded; backward is one loop over time with one matmul per step, and the weight
gradient is one matmul over all steps at the end.

Layout inside: heads first, (NH, B, 4, DH) per step, so R h_{t-1} for all heads and gates is one
``torch.bmm((NH, B, DH), (NH, DH, 4 DH))``. The stabilizer m is detached as in the reference, so the gradients are
the reference's exactly (up to rounding); the recurrent-gradient clip clamps the gradient that reaches h_{t-1}
through R, as the reference's ``_ClipGradient`` does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .reference import State, start_state


class _FusedSLSTM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, R, h0, c0, n0, m0, clip, igate_sigmoid):
        # x (S, NH, B, 4, DH) with the bias added; R (4, NH, DH, DH); states (NH, B, DH)
        S, NH, B, _, DH = x.shape
        W = R.permute(1, 3, 0, 2).reshape(NH, DH, 4 * DH)  # W[h, d, g*DH + e] = R[g, h, e, d]
        hs = x.new_empty(S + 1, NH, B, DH)
        cs, ns = torch.empty_like(hs), torch.empty_like(hs)
        raw = torch.empty_like(x)  # the gate pre-activations of every step, kept for backward
        act = x.new_empty(4, S, NH, B, DH)  # i', f', z = tanh(z~), o = sigmoid(o~)
        i_w, f_w, z, o = act.unbind(0)
        hs[0], cs[0], ns[0] = h0, c0, n0
        m = m0
        # every per-step view made once, up front (a view costs about as much as a small op)
        x_t, raw_t = x.view(S, NH, B, 4 * DH).unbind(0), raw.view(S, NH, B, 4 * DH).unbind(0)
        gates_t = raw.unbind(0)
        h_t, c_t, n_t = hs.unbind(0), cs.unbind(0), ns.unbind(0)
        i_t, f_t, z_t, o_t = i_w.unbind(0), f_w.unbind(0), z.unbind(0), o.unbind(0)
        for t in range(S):
            torch.baddbmm(x_t[t], h_t[t], W, out=raw_t[t])
            i_raw, f_raw, z_raw, o_raw = gates_t[t].unbind(2)
            i_log = F.logsigmoid(i_raw) if igate_sigmoid else i_raw
            log_f_m = F.logsigmoid(f_raw).add_(m)
            m = torch.maximum(log_f_m, i_log)  # the stabilizer: no gradient flows through it
            torch.exp(torch.sub(i_log, m, out=i_t[t]), out=i_t[t])
            torch.exp(log_f_m.sub_(m), out=f_t[t])  # 0 on the first step (m = -inf)
            torch.tanh(z_raw, out=z_t[t])
            torch.sigmoid(o_raw, out=o_t[t])
            torch.mul(f_t[t], c_t[t], out=c_t[t + 1]).addcmul_(i_t[t], z_t[t])
            torch.addcmul(i_t[t], f_t[t], n_t[t], out=n_t[t + 1])
            torch.div(c_t[t + 1], n_t[t + 1], out=h_t[t + 1]).mul_(o_t[t])
        ctx.save_for_backward(W, hs, cs, ns, raw, act)
        ctx.clip, ctx.igate_sigmoid = clip, igate_sigmoid
        ctx.mark_non_differentiable(m)
        return hs[1:], hs[S], cs[S], ns[S], m

    @staticmethod
    def backward(ctx, d_out, d_h_last, d_c_last, d_n_last, _d_m):
        W, hs, cs, ns, raw, act = ctx.saved_tensors
        S, NH, B, _, DH = raw.shape
        i_w, f_w, z, o = act.unbind(0)
        # what does not depend on the incoming gradient, for all steps at once (each (S, NH, B, DH)):
        inv_n = ns[1:].reciprocal()
        to_dc = o * inv_n  # dh -> dc (h = o c / n)
        to_dn = to_dc * cs[1:] * inv_n  # dh -> -dn
        to_do = cs[1:] * inv_n * o * (1 - o)  # dh -> d o~
        d_log_f = f_w * torch.sigmoid(-raw[:, :, :, 1])  # d f' / d f~ = f' sigmoid(-f~)
        from_c_f, from_n_f = d_log_f * cs[:-1], d_log_f * ns[:-1]  # dc, dn -> d f~
        d_i_log = torch.sigmoid(-raw[:, :, :, 0]) if ctx.igate_sigmoid else 1.0  # d log sigmoid(i~) / d i~
        from_c_i, from_n_i = i_w * z * d_i_log, i_w * d_i_log  # dc, dn -> d i~
        from_c_z = i_w * (1 - z * z)  # dc -> d z~
        d_raw = torch.empty_like(raw)
        WT = W.transpose(1, 2)  # (NH, 4 DH, DH): R^T per head
        d_out = d_out if d_out is not None else torch.zeros_like(hs[1:])
        dh = d_out[S - 1] + (d_h_last if d_h_last is not None else 0)
        dc = d_c_last.clone() if d_c_last is not None else torch.zeros_like(hs[0])
        dn = d_n_last.clone() if d_n_last is not None else torch.zeros_like(hs[0])
        # every per-step view made once, up front
        steps = [t.unbind(0) for t in (d_raw, to_dc, to_dn, from_c_i, from_n_i, from_c_f, from_n_f, to_do, f_w, d_out)]
        d_raw_t, to_dc_t, to_dn_t, from_c_i_t, from_n_i_t, from_c_f_t, from_n_f_t, to_do_t, f_w_t, d_out_t = steps
        from_c_z_t, d_flat_t = from_c_z.unbind(0), d_raw.view(S, NH, B, 4 * DH).unbind(0)
        for t in range(S - 1, -1, -1):
            g_i, g_f, g_z, g_o = d_raw_t[t].unbind(2)
            dc.addcmul_(dh, to_dc_t[t])
            dn.addcmul_(dh, to_dn_t[t], value=-1)
            torch.mul(dc, from_c_i_t[t], out=g_i).addcmul_(dn, from_n_i_t[t])
            torch.mul(dc, from_c_f_t[t], out=g_f).addcmul_(dn, from_n_f_t[t])
            torch.mul(dc, from_c_z_t[t], out=g_z)
            torch.mul(dh, to_do_t[t], out=g_o)
            dc.mul_(f_w_t[t])
            dn.mul_(f_w_t[t])
            dh = torch.bmm(d_flat_t[t], WT)  # the gradient reaching h_{t-1} through R
            if ctx.clip is not None:
                dh.clamp_(-ctx.clip, ctx.clip)
            if t > 0:
                dh += d_out_t[t - 1]
        return d_raw, recurrent_weight_grad(hs, d_raw), dh, dc, dn, None, None, None


def recurrent_weight_grad(hs: torch.Tensor, d_raw: torch.Tensor) -> torch.Tensor:
    """dR (4, NH, DH, DH) from hs (S + 1, NH, B, DH) and d_raw (S, NH, B, 4, DH): dW[h] = sum over steps and batch
    of h_{t-1}^T d_raw_t, one matmul per head for all steps, then back to R's layout."""
    S, NH, B, _, DH = d_raw.shape
    dW = torch.bmm(hs[:-1].transpose(0, 1).reshape(NH, S * B, DH).transpose(1, 2),
                   d_raw.transpose(0, 1).reshape(NH, S * B, 4 * DH))
    return dW.view(NH, DH, 4, DH).permute(2, 0, 3, 1)


@torch.compiler.disable  # a loop over time: compiled, it would unroll into one graph node per step
def slstm_torch_fused(x: torch.Tensor, R: torch.Tensor, b: torch.Tensor, *, initial_state: State | None = None,
                      return_last_state: bool = False, recurrent_grad_clip: float | None = None,
                      igate_activation: str = "exp"):
    """x (B, S, 4, NH, DH) -> h (B, S, NH, DH), as ``slstm_torch``; half-precision inputs run with float32 states."""
    return run_heads_first(_FusedSLSTM, x, R, b, initial_state, return_last_state, recurrent_grad_clip,
                           igate_activation)


def run_heads_first(function: type[torch.autograd.Function], x: torch.Tensor, R: torch.Tensor, b: torch.Tensor,
                    initial_state: State | None, return_last_state: bool, recurrent_grad_clip: float | None,
                    igate_activation: str):
    """Calls ``function.apply(x (S, NH, B, 4, DH) with the bias added, R, h0, c0, n0, m0 (NH, B, DH), clip,
    igate_sigmoid)`` (-> hs (S, NH, B, DH), last h, c, n, m) and returns the op's layout."""
    out_dtype = x.dtype
    ct, state = start_state(x, initial_state)
    xb = (x.to(ct) + b.to(ct)).permute(1, 3, 0, 2, 4).contiguous()  # (S, NH, B, 4, DH)
    h0, c0, n0, m0 = (s.transpose(0, 1).contiguous() for s in state)  # (NH, B, DH)
    hs, h, c, n, m = function.apply(xb, R.to(ct), h0, c0, n0, m0, recurrent_grad_clip, igate_activation == "sigmoid")
    out = hs.permute(2, 0, 1, 3).to(out_dtype)  # (B, S, NH, DH)
    last = tuple(s.transpose(0, 1) for s in (h, c, n, m))
    return (out, last) if return_last_state else out
