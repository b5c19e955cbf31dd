"""The one model contract: every registered model is a backbone ``(B, S, D) -> (B, S, D)`` with a recurrent step.

Tasks put their own encoder (token embedding, pixel projection) and decoder (LM head, pooled classifier) around it;
``xlstm.lm.LanguageModel`` is the encoder/decoder pair for language modelling.
"""
from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from .config import BackboneConfig


class Backbone(nn.Module):
    """Base class of all registered models.

    Subclasses set ``config_class`` and ``paper_name`` (the row label in the paper's tables) and implement
    ``forward_state(x, state) -> (y, state)``, where ``state`` is None at the start of a sequence and whatever the
    model needs to continue it otherwise (recurrent states, conv buffers, a KV cache).
    """

    config_class: ClassVar[type[BackboneConfig]] = BackboneConfig
    paper_name: ClassVar[str] = ""
    # the paper's sizes: "125M" -> config fields (embedding_dim, num_blocks, ...); vocab 50304 is added
    paper_sizes: ClassVar[dict[str, dict]] = {}

    @classmethod
    def paper_label(cls, name: str) -> str:
        """The row label of registry entry ``name`` in the paper's tables."""
        return cls.paper_name

    @classmethod
    def sized_config(cls, name: str, size: str) -> BackboneConfig:
        """The config of registry entry ``name`` at a paper size ("125M", "350M", ...)."""
        if size not in cls.paper_sizes:
            valid = ", ".join(cls.paper_sizes) or "none"
            raise ValueError(f"unknown size {size!r} for model {name!r}; paper sizes: {valid}")
        return cls.config_class(name=name, vocab_size=50304, **cls.paper_sizes[size])

    def __init__(self, config: BackboneConfig):
        super().__init__()
        self.config = config

    @property
    def dim(self) -> int:
        return self.config.embedding_dim

    def forward_state(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, state: Any = None, return_state: bool = False):
        """x (B, S, D) -> y (B, S, D); with ``return_state`` also the state after the last position."""
        y, new_state = self.forward_state(x, state)
        return (y, new_state) if return_state else y

    def step(self, x: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        """One (or a few) positions: x (B, S', D) continuing from ``state``."""
        return self.forward_state(x, state)
