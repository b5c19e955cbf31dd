"""Rescaled accuracy and accuracy by length against hand-computed values."""
import pytest
import torch

from tasks import IGNORE
from tasks.formal.base import FormalMetrics
from tasks.metrics import AccuracyByLength, rescale


def test_rescale_examples_from_the_paper():
    assert rescale(0.75, 0.5) == pytest.approx(0.5)  # parity
    assert rescale(0.6, 0.2) == pytest.approx(0.5)  # cycle navigation
    assert rescale(0.5, 0.5) == 0.0 and rescale(1.0, 0.2) == 1.0
    assert rescale(0.25, 0.5) == pytest.approx(-0.5)  # not clipped


def _predictions(predictions: list[list[int]], vocab: int = 3) -> torch.Tensor:
    return torch.tensor(predictions)


def test_accuracy_by_length_bins_scored_positions():
    metric = AccuracyByLength(max_length=10)
    targets = torch.tensor([[IGNORE, 1], [IGNORE, 2], [2, 1]])
    preds = [[0, 1], [0, 1], [2, 2]]  # sample 0 right, sample 1 wrong, sample 2 one of two right
    metric.update(_predictions(preds), {"targets": targets, "lengths": torch.tensor([2, 2, 5])})
    assert metric.compute() == {"acc@2": 0.5, "acc@5": 0.5}


def test_formal_metrics_mean_over_lengths_then_rescale():
    metric = FormalMetrics(max_length=10, random_baseline=0.5)
    batch_a = {"targets": torch.tensor([[IGNORE, 1], [IGNORE, 1]]), "lengths": torch.tensor([2, 2])}
    batch_b = {"targets": torch.tensor([[1], [1], [1], [1]]), "lengths": torch.tensor([1, 1, 1, 1])}
    metric.update(_predictions([[0, 1], [0, 1]]), batch_a)  # length 2: 100 %
    metric.update(_predictions([[1], [2], [2], [2]]), batch_b)  # length 1: 25 %
    out = metric.compute()
    assert out["acc"] == pytest.approx(0.625)  # each length weighs the same
    assert out["acc_scaled"] == pytest.approx(0.25)
    assert out["acc@1"] == 0.25 and out["acc_scaled@2"] == 1.0
