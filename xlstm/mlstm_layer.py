"""The mLSTM layer of the pre-up-projection block (paper Fig. 11), with the paper's gate ablation switches.

x (B, S, D) -> up-projection to two branches of width inner = proj_factor * D: x_m (mLSTM) and z (output gate);
x_c = SiLU(causal conv(x_m)); q, k = block-diagonal(x_c), v = block-diagonal(x_m) (values skip the conv);
scalar input/forget gate per head from concat[q, k, v]; mLSTM cell over heads; head-wise norm;
h += skip * x_c (learnable, init 1); h *= SiLU(z); down-projection to D; dropout.
"""
from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kernels.mlstm import mlstm, mlstm_step, mlstm_variant, mlstm_variant_step, zero_state

from .components import BlockDiagonalLinear, CausalConv1d, MultiHeadNorm, ffn_hidden_dim, small_init_, wang_init_


def gate_bias(spec: str, num_heads: int) -> torch.Tensor:
    """Initial gate biases per head from a spec: "linspace(a,b)", "normal(mean,std)", "constant(v)" or "inf"
    (a forget gate fixed to 1)."""
    spec = spec.replace(" ", "")
    if spec in ("inf", "+inf"):
        return torch.full((num_heads,), float("inf"))
    match = re.fullmatch(r"(linspace|normal|constant)\(([-+.\deE]+)(?:,([-+.\deE]+))?\)", spec)
    if not match or (match[1] != "constant") != (match[3] is not None):
        raise ValueError(f"bad gate bias init {spec!r}; use linspace(a,b), normal(mean,std), constant(v) or inf")
    a = float(match[2])
    if match[1] == "linspace":
        return torch.linspace(a, float(match[3]), num_heads)
    if match[1] == "normal":
        return torch.randn(num_heads) * float(match[3]) + a
    return torch.full((num_heads,), a)


def uses_variant(c) -> bool:
    """The switchable form (``kernels.mlstm.variants``) runs when a stabilizer/normalizer switch is off its default
    or ``mlstm_backend="variant--torch"`` asks for it (the memory ablations run every row through it)."""
    return c.mlstm_backend == "variant--torch" or (c.mlstm_stabilizer, c.mlstm_normalizer) != ("max", "max")


def mlstm_cell(c, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, igate: torch.Tensor, fgate: torch.Tensor,
               state: Any) -> tuple[torch.Tensor, Any]:
    """The mLSTM cell as the config asks: q, k, v (B, NH, S, DH), gate pre-activations (B, NH, S) -> h (B, NH, S, DH)
    and the state (C, n, m). One recurrent step when S == 1 and a state is given (generation)."""
    if c.mlstm_igate_activation == "sigmoid":  # the op applies exp: exp(log sigmoid(i~)) = sigmoid(i~)
        igate = F.logsigmoid(igate)
    variant, switches = uses_variant(c), dict(stabilizer=c.mlstm_stabilizer, normalizer=c.mlstm_normalizer)
    if q.shape[2] == 1 and state is not None:
        args = (q[:, :, 0], k[:, :, 0], v[:, :, 0], igate[:, :, 0], fgate[:, :, 0], state, c.mlstm_eps)
        h, state = mlstm_variant_step(*args, **switches) if variant else mlstm_step(*args)
        return h[:, :, None], state
    if variant:
        return mlstm_variant(q, k, v, igate, fgate, **switches, eps=c.mlstm_eps, initial_state=state,
                             return_last_state=True)
    return mlstm(q, k, v, igate, fgate, backend=c.mlstm_backend, chunk_size=c.mlstm_chunk_size, eps=c.mlstm_eps,
                 initial_state=state, return_last_state=True)


class HeadGate(nn.Module):
    """Scalar gate pre-activation per head: W x + b, or b alone when not input-dependent.

    Input-dependent weights start at 0 (the official init); a non-learnable bias is a buffer. With ``track`` set
    (the input gate) it keeps the largest pre-activation seen in training, ``diagnostics()["igate_max"]``: the log
    of the largest factor exp(i~) the unstabilized memory takes in, which overflows float32 and bfloat16 near 88.7."""

    def __init__(self, in_features: int, num_heads: int, input_dependent: bool, learnable_bias: bool, bias_init: str,
                 track: str | None = None):
        super().__init__()
        self.track = track
        if track:
            self.register_buffer("peak", torch.tensor(float("-inf")), persistent=False)
        self.weight = nn.Parameter(torch.zeros(num_heads, in_features)) if input_dependent else None
        bias = gate_bias(bias_init, num_heads)
        if learnable_bias:
            self.bias = nn.Parameter(bias)
        else:
            self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            out = self.bias.to(x.dtype).expand(*x.shape[:-1], -1)
        else:
            out = F.linear(x, self.weight, self.bias)
        self._track(out)
        return out

    def _track(self, out: torch.Tensor) -> None:
        if self.track and self.training:
            self.peak = torch.maximum(self.peak, out.detach().max().float())  # no host sync

    @staticmethod
    def together(x: torch.Tensor, *gates: "HeadGate") -> list[torch.Tensor]:
        """``[gate(x) for gate in gates]`` with one product when every gate is input-dependent (the mLSTM's input
        and forget gates read the same input): one pass over x and its gradient instead of one per gate."""
        if len(gates) == 1 or any(gate.weight is None for gate in gates):
            return [gate(x) for gate in gates]
        weight = torch.cat([gate.weight for gate in gates])
        bias = torch.cat([gate.bias.to(weight.dtype) for gate in gates])
        outs = F.linear(x, weight, bias).split([gate.weight.shape[0] for gate in gates], dim=-1)
        for gate, out in zip(gates, outs):
            gate._track(out)
        return list(outs)

    def diagnostics(self) -> dict[str, float]:
        return {self.track: float(self.peak)} if self.track else {}


class mLSTMLayer(nn.Module):
    """The block's mixer: (x (B, S, D), state) -> (y (B, S, D), state), state = (conv state, (C, n, m))."""

    def __init__(self, config, num_blocks: int):
        super().__init__()
        c = config
        D, NH = c.embedding_dim, c.num_heads
        inner = ffn_hidden_dim(D, c.mlstm_proj_factor, c.mlstm_proj_round_to)  # rounded up, as the official code
        if inner % NH or inner % c.mlstm_qkv_block_size:
            raise ValueError(f"mLSTM inner width {inner} must be divisible by num_heads={NH} and "
                             f"mlstm_qkv_block_size={c.mlstm_qkv_block_size}")
        self.config, self.inner, self.num_heads = c, inner, NH
        self.proj_up = nn.Linear(D, 2 * inner, bias=False)
        self.conv = CausalConv1d(inner, c.mlstm_conv_kernel) if c.mlstm_conv_kernel > 0 else None
        blocks = inner // c.mlstm_qkv_block_size
        self.q_proj, self.k_proj, self.v_proj = (BlockDiagonalLinear(inner, blocks) for _ in range(3))
        self.igate = HeadGate(3 * inner, NH, c.mlstm_igate_input_dependent, c.mlstm_igate_learnable_bias,
                              c.mlstm_igate_bias_init, track="igate_max")
        self.fgate = HeadGate(3 * inner, NH, c.mlstm_fgate_input_dependent, c.mlstm_fgate_learnable_bias,
                              c.mlstm_fgate_bias_init)
        self.outnorm = MultiHeadNorm(inner, NH)
        self.skip = nn.Parameter(torch.ones(inner))
        self.proj_down = nn.Linear(inner, D, bias=False)
        self.dropout = nn.Dropout(c.dropout)
        small_init_(self.proj_up.weight, D)
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            small_init_(proj.weight, D)  # the embedding width, not the inner one (official code)
        wang_init_(self.proj_down.weight, D, num_blocks)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, S, inner) -> (B, NH, S, DH)
        B, S, _ = x.shape
        return x.view(B, S, self.num_heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        c = self.config
        conv_state, cell_state = state if state is not None else (None, None)
        x_m, z = self.proj_up(x).chunk(2, dim=-1)
        if self.conv is not None:
            x_c, conv_state = self.conv(x_m, conv_state)
            x_c = F.silu(x_c)
        else:
            x_c = x_m
        q, k = BlockDiagonalLinear.together(x_c, self.q_proj, self.k_proj)  # one product for both
        v = self.v_proj(x_m)
        gate_in = torch.cat([q, k, v], dim=-1)
        igate, fgate = (g.transpose(1, 2) for g in HeadGate.together(gate_in, self.igate, self.fgate))  # (B, NH, S)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        h, cell_state = mlstm_cell(c, q, k, v, igate, fgate, cell_state)
        h = h.to(x.dtype)
        h = self.outnorm(h.transpose(1, 2))  # (B, S, NH, DH) -> (B, S, inner)
        h = (h + self.skip * x_c) * F.silu(z)
        return self.dropout(self.proj_down(h)), (conv_state, cell_state)
