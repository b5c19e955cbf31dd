"""The one model contract: every registered model is a backbone ``(B, S, D) -> (B, S, D)`` with a recurrent step.

Tasks put their own encoder (token embedding, pixel projection) and head (LM head, pooled classifier) around it;
``xlstm.lm.LanguageModel`` (token embedding, backbone, LM head) is the model of every token-level task.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from .config import BackboneConfig


class Backbone(nn.Module):
    """Base class of all registered models.

    Subclasses set ``config_class`` and implement ``forward_state(x, state) -> (y, state)``, where ``state`` is None
    at the start of a sequence and whatever the model needs to continue it otherwise (recurrent states, conv
    buffers, a KV cache). The paper's label and sizes of a model live in the registry and ``xlstm.sizes``.
    """

    config_class: ClassVar[type[BackboneConfig]] = BackboneConfig

    def __init__(self, config: BackboneConfig):
        super().__init__()
        self.config = config

    @property
    def dim(self) -> int:
        return self.config.embedding_dim

    @property
    def max_positions(self) -> int | None:
        """The longest sequence the model can read (None: any length; learned positions set a limit)."""
        return None

    def forward_state(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: Any = None, return_state: bool = False):
        """x (B, S, D) -> y (B, S, D); with ``return_state`` also the state after the last position."""
        y, new_state = self.forward_state(x, state)
        return (y, new_state) if return_state else y

    def step(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """One (or a few) positions: x (B, S', D) continuing from ``state``."""
        return self.forward_state(x, state)
