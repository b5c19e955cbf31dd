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

from kernels.mlstm import mlstm, mlstm_step, zero_state

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


class HeadGate(nn.Module):
    """Scalar gate pre-activation per head: W x + b, or b alone when not input-dependent.

    Input-dependent weights start at 0 (the official init); a non-learnable bias is a buffer."""

    def __init__(self, in_features: int, num_heads: int, input_dependent: bool, learnable_bias: bool, bias_init: str):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_heads, in_features)) if input_dependent else None
        bias = gate_bias(bias_init, num_heads)
        if learnable_bias:
            self.bias = nn.Parameter(bias)
        else:
            self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            return self.bias.to(x.dtype).expand(*x.shape[:-1], -1)
        return F.linear(x, self.weight, self.bias)


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
                              c.mlstm_igate_bias_init)
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
        q, k, v = self.q_proj(x_c), self.k_proj(x_c), self.v_proj(x_m)
        gate_in = torch.cat([q, k, v], dim=-1)
        igate = self.igate(gate_in).transpose(1, 2)  # (B, NH, S)
        fgate = self.fgate(gate_in).transpose(1, 2)
        if c.mlstm_igate_activation == "sigmoid":  # the op applies exp: exp(log sigmoid(i~)) = sigmoid(i~)
            igate = F.logsigmoid(igate)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        if x.shape[1] == 1 and cell_state is not None:  # generation: one recurrent step
            h, cell_state = mlstm_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], igate[:, :, 0], fgate[:, :, 0],
                                       cell_state, c.mlstm_eps)
            h = h[:, :, None].to(x.dtype)
        else:
            h, cell_state = mlstm(q, k, v, igate, fgate, backend=c.mlstm_backend, chunk_size=c.mlstm_chunk_size,
                                  eps=c.mlstm_eps, initial_state=cell_state, return_last_state=True)
        h = self.outnorm(h.transpose(1, 2))  # (B, S, NH, DH) -> (B, S, inner)
        h = (h + self.skip * x_c) * F.silu(z)
        return self.dropout(self.proj_down(h)), (conv_state, cell_state)
