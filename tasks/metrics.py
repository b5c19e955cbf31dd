"""Metrics shared by tasks: token accuracy by sample length, and the paper's rescaled accuracy."""
from __future__ import annotations

import torch
from torchmetrics import Metric

from .base import IGNORE


def rescale(acc: float, random_baseline: float) -> float:
    """(acc - s_rand) / (1 - s_rand): 0 = random guessing, 1 = perfect; not clipped (below chance is negative)."""
    return (acc - random_baseline) / (1.0 - random_baseline)


class AccuracyByLength(Metric):
    """Accuracy over scored positions (targets != IGNORE), binned by each sample's length (``batch["lengths"]``).

    Per length L: correct answer tokens / answer tokens of the samples of length L. Counts are summed across
    processes, so the result is the same under DDP. ``compute`` gives ``acc@L`` per length; tasks subclass it to
    add their summary (``summarize``).
    """

    full_state_update = False

    def __init__(self, max_length: int):
        super().__init__()
        self.max_length = max_length
        self.add_state("correct", torch.zeros(max_length + 1, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(max_length + 1, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predictions: torch.Tensor, batch: dict) -> None:
        # predictions (B, S) (read only where scored), targets (B, S), lengths (B,)
        targets = batch["targets"]
        scored = targets != IGNORE
        hits = (predictions == targets) & scored
        lengths = batch["lengths"].clamp(max=self.max_length)
        self.correct.index_add_(0, lengths, hits.sum(1))
        self.total.index_add_(0, lengths, scored.sum(1))

    def compute(self) -> dict[str, float]:
        seen = torch.nonzero(self.total).flatten().tolist()
        per_length = {n: (self.correct[n] / self.total[n]).item() for n in seen}
        return {**{f"acc@{n}": a for n, a in per_length.items()}, **self.summarize(per_length)}

    def summarize(self, per_length: dict[int, float]) -> dict[str, float]:
        return {}
