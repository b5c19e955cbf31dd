"""The heads a task puts around a backbone. Each is an ``nn.Module`` with ``score(batch) -> Scored``: the logits of
every scored item and its target, so the training loop computes one cross-entropy for every kind of task.

* ``TokenClassifier``: the language model itself (``xlstm.LanguageModel``: token embedding, backbone, LM head, the
  one weight-tying place), read at the positions whose target is not ``IGNORE``: every position for language
  modelling, the answer positions for the synthetic tasks.
  batch: tokens (B, S) int64, targets (B, S) int64.
* ``PooledClassifier``: encoder, backbone, mean or last-position pooling over the valid positions, a linear
  classifier (Long Range Arena's sequence tasks).
  batch: tokens (B, S) int64 (or features (B, S, F) with a linear encoder), mask (B, S) bool (optional: all
  valid), targets (B,) int64.
* ``PairClassifier``: two documents through one encoder and backbone, each pooled, combined as
  [a, b, a * b, a - b], then an MLP (LRA Retrieval's dual encoder).
  batch: tokens (B, 2, S), mask (B, 2, S) (optional), targets (B,).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from xlstm import LanguageModel
from xlstm.backbone import Backbone
from xlstm.components import small_init_

IGNORE = -100  # target value of unscored positions (torch cross-entropy's ignore_index)
POOLINGS = ("mean", "last")


@dataclass
class Scored:
    """What a head scores in one batch: N items (positions or whole sequences)."""

    logits: torch.Tensor  # (N, C)
    targets: torch.Tensor  # (N,) int64
    rows: torch.Tensor  # (N,) the batch row each item belongs to (metrics bin by per-sample fields)
    nll: Optional[torch.Tensor] = None  # (N,) per-item cross-entropy, filled in by the training loop


class TokenClassifier(LanguageModel):
    """Next-token / scored-position head: the language model of ``xlstm.build``, with the same init and tying, read
    only where it is scored (a formal task reads one or a few positions per sample, MQAR K of T)."""

    def score(self, batch: dict) -> Scored:
        targets = batch["targets"]  # (B, S)
        mask = targets != IGNORE
        hidden = self.backbone(self.embedding(batch["tokens"]))  # (B, S, D)
        return Scored(self.head(hidden[mask]), targets[mask], mask.nonzero()[:, 0])


def token_encoder(vocab_size: int, dim: int) -> nn.Embedding:
    """A token embedding with the suite's small init (as the language model's)."""
    embedding = nn.Embedding(vocab_size, dim)
    small_init_(embedding.weight, dim)
    return embedding


def pool(hidden: torch.Tensor, mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """hidden (B, S, D), mask (B, S) bool of valid positions (None: all) -> (B, D): the mean over valid positions,
    or the last valid position (right padding: position count - 1; a causal model's summary of the sequence)."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
    B, S, _ = hidden.shape
    if mask is None:
        mask = torch.ones(B, S, dtype=torch.bool, device=hidden.device)
    counts = mask.sum(1)
    if bool((counts == 0).any()):
        raise ValueError("a sequence has no valid position to pool")
    if pooling == "mean":
        weights = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * weights).sum(1) / counts.unsqueeze(-1).to(hidden.dtype)
    return hidden[torch.arange(B, device=hidden.device), counts - 1]


class SequenceClassifier(nn.Module):
    """Base of the heads that give one label per batch row: encoder, backbone and pooling; subclasses define
    ``forward(tokens, mask) -> logits (B, classes)``."""

    def __init__(self, backbone: Backbone, encoder: nn.Module, pooling: str):
        super().__init__()
        if backbone.config.tie_embeddings:
            raise ValueError(f"model.tie_embeddings=true needs a token head; a {type(self).__name__} has none to "
                             "tie: set model.tie_embeddings=false")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
        self.encoder, self.backbone, self.pooling = encoder, backbone, pooling

    def score(self, batch: dict) -> Scored:
        targets = batch["targets"]  # (B,)
        rows = torch.arange(len(targets), device=targets.device)
        return Scored(self(batch["tokens"], batch.get("mask")), targets, rows)


class PooledClassifier(SequenceClassifier):
    """encoder -> backbone -> pool -> linear (D -> classes)."""

    def __init__(self, backbone: Backbone, encoder: nn.Module, num_classes: int, pooling: str = "mean"):
        super().__init__(backbone, encoder, pooling)
        self.classifier = nn.Linear(backbone.dim, num_classes)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, S) or features (B, S, F) -> logits (B, classes)."""
        return self.classifier(pool(self.backbone(self.encoder(tokens)), mask, self.pooling))


class PairClassifier(SequenceClassifier):
    """Two documents, one encoder and backbone: pooled a, b -> [a, b, a * b, a - b] (4 D) -> Linear -> ReLU ->
    Linear (classes). Both documents run through the backbone as one batch of 2 B sequences."""

    def __init__(self, backbone: Backbone, encoder: nn.Module, num_classes: int, pooling: str = "mean",
                 hidden: int | None = None):
        super().__init__(backbone, encoder, pooling)
        D = backbone.dim
        self.mlp = nn.Sequential(nn.Linear(4 * D, hidden or D), nn.ReLU(), nn.Linear(hidden or D, num_classes))

    @staticmethod
    def combine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(B, D), (B, D) -> (B, 4 D)."""
        return torch.cat([a, b, a * b, a - b], dim=-1)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """tokens (B, 2, S[, F]), mask (B, 2, S) -> logits (B, classes)."""
        B = tokens.shape[0]
        flat = tokens.flatten(0, 1)  # (2 B, S[, F]): rows 2i and 2i + 1 are the pair i
        pooled = pool(self.backbone(self.encoder(flat)), None if mask is None else mask.flatten(0, 1), self.pooling)
        pooled = pooled.view(B, 2, -1)
        return self.mlp(self.combine(pooled[:, 0], pooled[:, 1]))
