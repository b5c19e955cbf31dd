"""xLSTM[a:b]: residual stacks of mLSTM and sLSTM blocks, the paper's sizes, and the LM."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone
from .components import (FeedForward, LayerNorm, MultiHeadNorm, ResidualBlock, ResidualStack, ffn_hidden_dim,
                         small_init_, wang_init_)
from .config import xLSTMConfig
from .lm import LanguageModel
from .mlstm_layer import HeadGate, mLSTMLayer, mlstm_cell
from .slstm_layer import sLSTMLayer

# The paper's positions of the sLSTM blocks in xLSTM[7:1] (App. B.2): 24 blocks -> [3, 20]; 48 -> 6 blocks.
PAPER_SLSTM_AT = {24: [3, 20], 48: [3, 5, 7, 40, 42, 44]}


def slstm_positions(ratio: list[int] | tuple[int, int], num_blocks: int) -> list[int]:
    """Block indices of the sLSTM blocks for xLSTM[a:b], ratio = (a, b): none for [1:0], all for [0:1]; for [7:1]
    the paper's positions at 24 and 48 blocks; otherwise round(num_blocks * b / (a + b)) blocks, one at the end of
    each equal stretch (e.g. [1:1] with 2 blocks -> [1], the official synthetic-task layout; with 4 -> [1, 3])."""
    a, b = ratio
    if a < 0 or b < 0 or a + b == 0:
        raise ValueError(f"ratio must be [a, b] with a, b >= 0, not both 0; got {list(ratio)}")
    if b == 0:
        return []
    if a == 0:
        return list(range(num_blocks))
    if (a, b) == (7, 1) and num_blocks in PAPER_SLSTM_AT:
        return list(PAPER_SLSTM_AT[num_blocks])
    count = max(1, round(num_blocks * b / (a + b)))
    period = num_blocks / count
    return sorted({min(num_blocks - 1, int((j + 1) * period) - 1) for j in range(count)})


class mLSTMMixer(nn.Module):
    """The mLSTM without up-projection, for the post-up-projection block (Table 8, first row):
    q, k, v, o = full D x D projections of x, scalar gates per head from x, cell, head-wise norm, h = sigmoid(o) *
    norm(h), out-projection D x D. At 350M size with a non-gated ReLU^2 FFN (factor 4) this is the 430.4M model."""

    def __init__(self, config: xLSTMConfig, num_blocks: int):
        super().__init__()
        c = config
        D, NH = c.embedding_dim, c.num_heads
        self.config, self.num_heads = c, NH
        self.q, self.k, self.v, self.o = (nn.Linear(D, D, bias=False) for _ in range(4))
        self.igate = HeadGate(D, NH, c.mlstm_igate_input_dependent, c.mlstm_igate_learnable_bias,
                              c.mlstm_igate_bias_init, track="igate_max")
        self.fgate = HeadGate(D, NH, c.mlstm_fgate_input_dependent, c.mlstm_fgate_learnable_bias,
                              c.mlstm_fgate_bias_init)
        self.outnorm = MultiHeadNorm(D, NH)
        self.out = nn.Linear(D, D, bias=False)
        self.dropout = nn.Dropout(c.dropout)
        for proj in (self.q, self.k, self.v, self.o):
            small_init_(proj.weight, D)
        wang_init_(self.out.weight, D, num_blocks)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        c = self.config
        B, S, D = x.shape
        heads = lambda t: t.view(B, S, self.num_heads, -1).transpose(1, 2)  # noqa: E731
        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        igate, fgate = (g.transpose(1, 2) for g in HeadGate.together(x, self.igate, self.fgate))  # (B, NH, S)
        h, state = mlstm_cell(c, q, k, v, igate, fgate, state)
        h = h.to(x.dtype)
        h = torch.sigmoid(self.o(x)) * self.outnorm(h.transpose(1, 2))
        return self.dropout(self.out(h)), state


class xLSTM(Backbone):
    """xLSTM[a:b] backbone: pre-LN residual mLSTM and sLSTM blocks, then the post-blocks LayerNorm."""

    config_class = xLSTMConfig

    def __init__(self, config: xLSTMConfig):
        super().__init__(config)
        c = config
        n = c.num_blocks
        slstm_at = c.slstm_at if c.slstm_at is not None else slstm_positions(c.ratio, n)
        if any(not 0 <= i < n for i in slstm_at):
            raise ValueError(f"slstm_at={slstm_at} has block indices outside 0..{n - 1}")
        self.slstm_at = sorted(slstm_at)
        D = c.embedding_dim
        ffn_hidden = ffn_hidden_dim(D, c.ffn_proj_factor, c.ffn_round_to)

        def ffn() -> FeedForward | None:
            return FeedForward(D, ffn_hidden, c.ffn_act, c.ffn_gated, c.dropout, n) if c.ffn_enabled else None

        blocks = []
        for i in range(n):
            if i in self.slstm_at:
                blocks.append(ResidualBlock(D, sLSTMLayer(c, i, n), ffn()))
            elif c.mlstm_block == "pre_up":
                blocks.append(ResidualBlock(D, mLSTMLayer(c, n), None))
            elif c.mlstm_block == "post_up":
                blocks.append(ResidualBlock(D, mLSTMMixer(c, n), ffn()))
            else:
                raise ValueError(f"mlstm_block must be pre_up or post_up, got {c.mlstm_block!r}")
        self.stack = ResidualStack(blocks, LayerNorm(D))

    def forward_state(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        return self.stack(x, state)


class xLSTMLM(LanguageModel):
    """The xLSTM language model: token embedding -> xLSTM[a:b] -> untied LM head; no positional encoding."""

    def __init__(self, config: xLSTMConfig):
        super().__init__(xLSTM(config))
