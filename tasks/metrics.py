"""Metrics shared by tasks. Each is a torchmetrics ``Metric`` updated with ``(scored, batch)``: the head's scored
items (``tasks.heads.Scored``: logits, targets, batch rows, per-item NLL) and the batch they came from. Counts are
summed across processes, so every result is the same under DDP."""
from __future__ import annotations

import math

import torch
from torchmetrics import Metric

from .heads import Scored


def rescale(acc: float, random_baseline: float) -> float:
    """(acc - s_rand) / (1 - s_rand): 0 = random guessing, 1 = perfect; not clipped (below chance is negative)."""
    return (acc - random_baseline) / (1.0 - random_baseline)


class Accuracy(Metric):
    """Accuracy over all scored items: ``acc``."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("correct", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scored: Scored, batch: dict) -> None:
        self.correct += (scored.logits.argmax(-1) == scored.targets).sum()
        self.total += scored.targets.numel()

    def compute(self) -> dict[str, float]:
        return {"acc": (self.correct / self.total).item()} if self.total > 0 else {}


class Perplexity(Metric):
    """exp(total NLL / total scored tokens) over the split: ``ppl``; needs the per-item NLL (``scored.nll``)."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("nll_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scored: Scored, batch: dict) -> None:
        if scored.nll is None:
            raise ValueError("Perplexity needs the per-item NLL (Scored.nll)")
        self.nll_sum += scored.nll.double().sum()
        self.count += scored.nll.numel()

    def compute(self) -> dict[str, float]:
        return {"ppl": math.exp((self.nll_sum / self.count).item())} if self.count > 0 else {}


class AccuracyByLength(Metric):
    """Accuracy over scored items binned by their sample's length (``batch["lengths"]``, (B,)).

    Per length L: correct answer tokens / answer tokens of the samples of length L. ``compute`` gives ``acc@L`` per
    length; tasks subclass it to add their summary (``summarize``).
    """

    full_state_update = False

    def __init__(self, max_length: int):
        super().__init__()
        self.max_length = max_length
        self.add_state("correct", torch.zeros(max_length + 1, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(max_length + 1, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scored: Scored, batch: dict) -> None:
        hits = (scored.logits.argmax(-1) == scored.targets).long()  # (N,)
        lengths = batch["lengths"][scored.rows].clamp(max=self.max_length)  # (N,) each item's sample length
        self.correct.index_add_(0, lengths, hits)
        self.total.index_add_(0, lengths, torch.ones_like(hits))

    def compute(self) -> dict[str, float]:
        seen = torch.nonzero(self.total).flatten().tolist()
        per_length = {n: (self.correct[n] / self.total[n]).item() for n in seen}
        return {**{f"acc@{n}": a for n, a in per_length.items()}, **self.summarize(per_length)}

    def summarize(self, per_length: dict[int, float]) -> dict[str, float]:
        return {}
