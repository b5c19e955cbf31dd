"""Rescaled accuracy and accuracy by length against hand-computed values."""
import math

import pytest
import torch

from tasks import IGNORE, Scored
from tasks.formal.base import FormalMetrics
from tasks.metrics import Accuracy, AccuracyByLength, Perplexity, rescale


def test_rescale_examples_from_the_paper():
    assert rescale(0.75, 0.5) == pytest.approx(0.5)  # parity
    assert rescale(0.6, 0.2) == pytest.approx(0.5)  # cycle navigation
    assert rescale(0.5, 0.5) == 0.0 and rescale(1.0, 0.2) == 1.0
    assert rescale(0.25, 0.5) == pytest.approx(-0.5)  # not clipped


def _scored(predictions: list[list[int]], targets: torch.Tensor, vocab: int = 3) -> Scored:
    """A head's output whose argmax is ``predictions`` (B, S) at the scored positions of ``targets`` (B, S)."""
    mask = targets != IGNORE
    logits = torch.nn.functional.one_hot(torch.tensor(predictions)[mask], vocab).float()
    return Scored(logits, targets[mask], mask.nonzero()[:, 0])


def test_accuracy_by_length_bins_scored_positions():
    metric = AccuracyByLength(max_length=10)
    targets = torch.tensor([[IGNORE, 1], [IGNORE, 2], [2, 1]])
    preds = [[0, 1], [0, 1], [2, 2]]  # sample 0 right, sample 1 wrong, sample 2 one of two right
    metric.update(_scored(preds, targets), {"targets": targets, "lengths": torch.tensor([2, 2, 5])})
    assert metric.compute() == {"acc@2": 0.5, "acc@5": 0.5}


def test_formal_metrics_mean_over_lengths_then_rescale():
    metric = FormalMetrics(max_length=10, random_baseline=0.5)
    batch_a = {"targets": torch.tensor([[IGNORE, 1], [IGNORE, 1]]), "lengths": torch.tensor([2, 2])}
    batch_b = {"targets": torch.tensor([[1], [1], [1], [1]]), "lengths": torch.tensor([1, 1, 1, 1])}
    metric.update(_scored([[0, 1], [0, 1]], batch_a["targets"]), batch_a)  # length 2: 100 %
    metric.update(_scored([[1], [2], [2], [2]], batch_b["targets"]), batch_b)  # length 1: 25 %
    out = metric.compute()
    assert out["acc"] == pytest.approx(0.625)  # each length weighs the same
    assert out["acc_scaled"] == pytest.approx(0.25)
    assert out["acc@1"] == 0.25 and out["acc_scaled@2"] == 1.0


def test_accuracy_over_classified_sequences():
    metric = Accuracy()
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])  # argmax 0, 1, 0
    metric.update(Scored(logits, torch.tensor([0, 0, 0]), torch.arange(3)), {})
    metric.update(Scored(logits[:1], torch.tensor([1]), torch.arange(1)), {})
    assert metric.compute() == {"acc": 0.5}  # 2 of 4


def test_perplexity_is_exp_of_the_token_weighted_mean_nll():
    # two batches of 2 and 1 tokens: uniform over 4 classes (nll ln 4) and a certain-ish token (nll ln(1/0.5))
    metric = Perplexity()
    uniform = Scored(torch.zeros(2, 4), torch.tensor([0, 3]), torch.tensor([0, 0]))
    uniform.nll = torch.nn.functional.cross_entropy(uniform.logits, uniform.targets, reduction="none")
    half = Scored(torch.log(torch.tensor([[0.5, 0.5]])), torch.tensor([1]), torch.tensor([0]))
    half.nll = torch.nn.functional.cross_entropy(half.logits, half.targets, reduction="none")
    metric.update(uniform, {})
    metric.update(half, {})
    expected = math.exp((2 * math.log(4) + math.log(2)) / 3)  # = (4 * 4 * 2) ** (1/3)
    assert metric.compute()["ppl"] == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(32 ** (1 / 3))
    with pytest.raises(ValueError, match="NLL"):
        Perplexity().update(Scored(torch.zeros(1, 2), torch.tensor([0]), torch.tensor([0])), {})
