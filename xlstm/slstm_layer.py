"""The sLSTM layer of the post-up-projection block (paper Fig. 10).

x (B, S, D) -> optional causal conv + SiLU feeding the input and forget gates only; head-wise block-diagonal
projections to the four gate pre-activations (i, f, z, o); the sLSTM recurrence with block-diagonal recurrent
weights R (memory mixing inside each of the NH heads; ``slstm_memory_mixing=False`` removes them); dropout; head-wise norm. Inits follow the official code's
options: small init for the projections, R = 0 ("zeros") or U(+-1/sqrt(D)) ("standard"), biases
"powerlaw_blockdependent", "small_init", "zeros" or "standard" (``gate_biases``).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kernels.slstm import slstm_forward

from .components import BlockDiagonalLinear, CausalConv1d, MultiHeadNorm, small_init_
from .config import SLSTM_BIAS_INITS


def gate_biases(kind: str, num_heads: int, head_dim: int, dim: int, block_idx: int, num_blocks: int) -> torch.Tensor:
    """Initial biases (4, NH, DH) in gate order (i, f, z, o), by the official code's options:
    "powerlaw_blockdependent" (forget gate +5 ... -7 over the head dimension, steeper in later blocks; others 0),
    "small_init" (forget gate linspace(3, 6) over the head dimension; others 0), "zeros", and "standard" (every
    gate U(+-1/sqrt(D)), PyTorch's LSTM init)."""
    b = torch.zeros(4, num_heads, head_dim)
    if kind == "powerlaw_blockdependent":
        ratio = block_idx / (num_blocks - 1) if num_blocks > 1 else 0.0
        position = torch.arange(head_dim) / max(head_dim - 1, 1)
        b[1] = -(-5.0 + 12.0 * position ** (0.3 + 1.3 * ratio))
    elif kind == "small_init":
        b[1] = torch.linspace(3.0, 6.0, head_dim)
    elif kind == "standard":
        nn.init.uniform_(b, -1.0 / math.sqrt(dim), 1.0 / math.sqrt(dim))
    elif kind != "zeros":
        raise ValueError(f"unknown slstm_bias_init {kind!r}; valid: {', '.join(SLSTM_BIAS_INITS)}")
    return b


class sLSTMLayer(nn.Module):
    """The block's mixer: (x (B, S, D), state) -> (y (B, S, D), state), state = (conv state, (h, c, n, m))."""

    def __init__(self, config, block_idx: int, num_blocks: int):
        super().__init__()
        c = config
        D, NH = c.embedding_dim, c.slstm_num_heads or c.num_heads
        if D % NH:
            raise ValueError(f"embedding_dim={D} must be divisible by the sLSTM heads ({NH})")
        DH = D // NH
        self.config, self.num_heads, self.head_dim = c, NH, DH
        self.conv = CausalConv1d(D, c.slstm_conv_kernel) if c.slstm_conv_kernel > 0 else None
        # one head-wise projection per gate, in the cell's gate order (i, f, z, o)
        self.gate_proj = nn.ModuleList(BlockDiagonalLinear(D, NH) for _ in range(4))
        if c.slstm_memory_mixing:
            self.R = nn.Parameter(torch.zeros(4, NH, DH, DH))
        else:  # the ablation without memory mixing: no recurrent weights at all (a constant 0, not trained)
            self.register_buffer("R", torch.zeros(4, NH, DH, DH), persistent=False)
        self.b = nn.Parameter(torch.zeros(4, NH, DH))
        self.norm = MultiHeadNorm(D, NH)
        self.dropout = nn.Dropout(c.dropout)
        for proj in self.gate_proj:
            small_init_(proj.weight, D)
        if c.slstm_recurrent_init not in ("zeros", "standard"):
            raise ValueError(f"unknown slstm_recurrent_init {c.slstm_recurrent_init!r}; valid: zeros, standard")
        if c.slstm_recurrent_init == "standard" and c.slstm_memory_mixing:
            nn.init.uniform_(self.R, -1.0 / math.sqrt(D), 1.0 / math.sqrt(D))
        with torch.no_grad():
            self.b.copy_(gate_biases(c.slstm_bias_init, NH, DH, D, block_idx, num_blocks))

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        B, S, D = x.shape
        conv_state, cell_state = state if state is not None else (None, None)
        if self.conv is not None:
            x_c, conv_state = self.conv(x, conv_state)
            x_c = F.silu(x_c)
        else:
            x_c = x
        gates = [proj(inp) for proj, inp in zip(self.gate_proj, (x_c, x_c, x, x))]
        pre = torch.stack(gates, dim=2).view(B, S, 4, self.num_heads, self.head_dim)
        h, cell_state = slstm_forward(pre, self.R, self.b, backend=self.config.slstm_backend,
                                      initial_state=cell_state, return_last_state=True,
                                      recurrent_grad_clip=self.config.slstm_recurrent_grad_clip,
                                      igate_activation=self.config.slstm_igate_activation)
        y = self.norm(self.dropout(h.to(x.dtype)))  # (B, S, NH, DH) -> (B, S, D)
        return y, (conv_state, cell_state)
