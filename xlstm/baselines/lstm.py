"""Plain LSTM baselines: the vanilla multi-layer ``torch.nn.LSTM`` and "LSTM (Block)".

"LSTM (Block)" is a vanilla LSTM in the post-up-projection block, i.e. the sLSTM block with the sLSTM cell
replaced by ``nn.LSTM``: ``x += LSTM(LN(x)); x += GatedFFN(LN(x))``, then the post-blocks norm.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..backbone import Backbone
from ..components import FeedForward, LayerNorm, ResidualBlock, ResidualStack, ffn_hidden_dim
from ..config import BackboneConfig, FeedForwardConfig


@dataclass
class LSTMConfig(BackboneConfig):
    name: str = "lstm"


@dataclass
class LSTMBlockConfig(FeedForwardConfig, BackboneConfig):
    name: str = "lstm_block"


class LSTM(Backbone):
    """``num_blocks`` stacked ``nn.LSTM`` layers of width D with PyTorch's default init; no norm, no residual."""

    config_class = LSTMConfig

    def __init__(self, config: LSTMConfig):
        super().__init__(config)
        d = config.embedding_dim
        self.lstm = nn.LSTM(d, d, num_layers=config.num_blocks, batch_first=True, dropout=config.dropout)

    def forward_state(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        # state: (h, c), each (num_layers, B, D)
        return self.lstm(x, state)


class LSTMMixer(nn.Module):
    """One ``nn.LSTM`` layer as a block mixer: (x (B, S, D), state (h, c)) -> (y, state)."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, batch_first=True)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        y, state = self.lstm(x, state)
        return self.dropout(y), state


class LSTMBlock(Backbone):
    """"LSTM (Block)": ``num_blocks`` post-up-projection blocks with an ``nn.LSTM`` mixer. With ``ffn_enabled=False``
    it is the pre-LN residual LSTM ("+ ResNet backbone" of Table 2)."""

    config_class = LSTMBlockConfig

    def __init__(self, config: LSTMBlockConfig):
        super().__init__(config)
        d = config.embedding_dim
        hidden = ffn_hidden_dim(d, config.ffn_proj_factor, config.ffn_round_to)
        blocks = [
            ResidualBlock(
                d,
                LSTMMixer(d, config.dropout),
                FeedForward(d, hidden, config.ffn_act, config.ffn_gated, config.dropout, config.num_blocks)
                if config.ffn_enabled else None,
            )
            for _ in range(config.num_blocks)
        ]
        self.stack = ResidualStack(blocks, LayerNorm(d))

    def forward_state(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        return self.stack(x, state)
