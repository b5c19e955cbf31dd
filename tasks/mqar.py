"""Multi-query associative recall (MQAR, Arora et al. 2023, the Zoology generator).

A sample of context length T with K key-value pairs: the pairs k1 v1 ... kK vK (keys from the lower half of the
vocabulary, values from the upper half, distinct within a sample), then a query region of T - 2K positions, all 0
except that each key appears once, at even offsets drawn without replacement with probability proportional to
a i^(a-1) (a = 0.01, so early offsets dominate). The model must output the paired value at each query key; only
those K positions are scored (targets IGNORE elsewhere).

A setting is (context length T, pairs K); K = 0 means T / 16, the pairing of the first experiment (64/4, 128/8,
256/16). Training uses a fixed set of ``num_train`` samples, reshuffled every epoch; validation and test sets come from
other seeds and may add longer contexts with the same K (the extrapolation experiment). Accuracy is reported per
context length.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Optional

import numpy as np
import torch

from xlstm.config import require

from .base import IGNORE, InfeasibleSetting, SyntheticTask, TaskConfig, split_rng
from .metrics import AccuracyByLength


# App. B.1.2: batch size by context length, and the learning-rate grid at batch 24 by the value it replaces in the
# grid of the larger batches; a learning rate outside that grid gets a tenth, the two grids' ratio.
PAPER_LR_AT_24 = {1e-2: 1e-3, 2.15e-3: 2.2e-4, 4.6e-4: 5e-5, 1e-4: 1e-5}
PAPER_BATCH = {64: 512, 128: 512, 256: 256, 756: 128, 768: 128, 1024: 96, 2048: 24}


def lr_at_batch_24(lr: float) -> float:
    """The paper's learning rate at batch 24 for a learning rate of the larger batches' grid."""
    for grid, small in PAPER_LR_AT_24.items():
        if math.isclose(lr, grid, rel_tol=1e-9):
            return small
    return float(f"{lr * 0.1:.12g}")  # not in the grid: a tenth (no 0.0010000000000000002)


def paper_batch(context: int) -> int:
    if context not in PAPER_BATCH:
        raise ValueError(f"task.batch_size=0 takes the paper's batch for the context, and the paper gives none for "
                         f"context {context} (only {', '.join(map(str, PAPER_BATCH))}); set task.batch_size")
    return PAPER_BATCH[context]


def check_setting(context: int, pairs: int) -> None:
    """The generator's constraints: T even, K >= 1, 4 K <= T."""
    if context % 2 or pairs < 1 or 4 * pairs > context:
        raise InfeasibleSetting(f"MQAR context {context} with {pairs} pairs: the context must be even and at least "
                                "4 x the pairs")


def _first_arrivals(race: np.ndarray, k: int) -> np.ndarray:
    """Per row, the indices of the k smallest entries, smallest first. With race = Exp(1) / p this is k draws
    without replacement with probabilities p, in draw order (the exponential race, equivalent to numpy's
    successive ``choice(..., replace=False, p=p)`` but vectorised)."""
    idx = np.argpartition(race, k - 1, axis=1)[:, :k]
    return np.take_along_axis(idx, np.argsort(np.take_along_axis(race, idx, 1), axis=1), 1)


def mqar(rng: np.random.Generator, n: int, context: int, pairs: int, vocab: int = 8192, power_a: float = 0.01,
         random_non_queries: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """n samples -> (inputs (n, T), targets (n, T)), targets IGNORE except at the K query positions.

    Example (vocab 16, T 12, K 2): pairs ``3 9 5 14``, queries at offsets 0 and 4 ->
    inputs ``3 9 5 14 | 5 0 0 0 3 0 0 0``, targets ``14`` at the query 5 and ``9`` at the query 3.
    """
    half = vocab // 2
    keys = _first_arrivals(rng.random((n, half - 1)), pairs) + 1  # distinct, uniform over 1 .. V/2 - 1
    values = _first_arrivals(rng.random((n, vocab - half)), pairs) + half  # distinct, over V/2 .. V - 1
    kvs = np.empty((n, 2 * pairs), dtype=np.int64)
    kvs[:, 0::2], kvs[:, 1::2] = keys, values
    space = (context - 2 * pairs) // 2
    p = power_a * np.arange(1, space + 1) ** (power_a - 1)
    gaps = 2 * _first_arrivals(rng.exponential(size=(n, space)) / p, pairs)
    queries = np.zeros((n, context - 2 * pairs + 1), dtype=np.int64)
    np.put_along_axis(queries, gaps, keys, axis=1)
    examples = np.concatenate([kvs, queries], axis=1)  # (n, T + 1)
    labels = np.full_like(examples, IGNORE)
    np.put_along_axis(labels, 2 * pairs + gaps + 1, values, axis=1)
    inputs, targets = examples[:, :-1], labels[:, 1:]  # the target sits at the query key's own position
    if random_non_queries:
        filler = rng.integers(0, vocab, size=inputs.shape)
        inputs = np.where(inputs == 0, filler, inputs)
    return inputs, targets


@dataclass
class MQARConfig(TaskConfig):
    name: str = "mqar"
    context_length: int = 64
    num_kv_pairs: int = 0  # 0 = context_length // 16
    eval_context_lengths: list[int] = field(default_factory=list)  # extra evaluation contexts, same pairs
    vocab_size: int = 8192
    power_a: float = 0.01
    random_non_queries: bool = False  # Zoology's generator default is True; its Figure-2 configs set False
    num_train: int = 100_000
    num_eval: int = 3_000
    batch_size: int = 0  # 0 = the paper's batch size for the training context length (PAPER_BATCH)
    eval_batch_size: int = 256
    epochs: Optional[int] = None  # when set, train for epochs x (num_train / batch) steps instead of trainer.max_steps

    batch_size_rule: ClassVar[tuple[int, str]] = (0, ">= 0 (0 = the paper's batch for the context)")

    def check(self) -> None:
        super().check()
        for key in ("context_length", "num_train", "num_eval"):
            require(getattr(self, key) >= 1, key, ">= 1", getattr(self, key))
        require(self.num_kv_pairs >= 0, "num_kv_pairs", ">= 0 (0 = context_length / 16)", self.num_kv_pairs)
        require(self.vocab_size >= 4, "vocab_size", ">= 4", self.vocab_size)
        require(self.epochs is None or self.epochs >= 1, "epochs", "None or >= 1", self.epochs)


class MQARMetrics(AccuracyByLength):
    """Accuracy on the query positions per evaluated context length; ``acc`` is the training context's."""

    def __init__(self, max_context: int, train_context: int):
        super().__init__(max_context)
        self.train_context = train_context

    def summarize(self, per_length: dict[int, float]) -> dict[str, float]:
        return {"acc": per_length[self.train_context]} if self.train_context in per_length else {}


class MQARTask(SyntheticTask):
    config_class = MQARConfig
    paper_name = "MQAR"

    def __init__(self, config: MQARConfig, data_dir: str = "data"):
        super().__init__(config, data_dir)
        self.context, self.pairs = config.context_length, config.num_kv_pairs or config.context_length // 16
        self.eval_contexts = [self.context, *config.eval_context_lengths]
        for context in self.eval_contexts:
            check_setting(context, self.pairs)
        if config.vocab_size // 2 - 1 < self.pairs:
            raise InfeasibleSetting(f"MQAR vocabulary {config.vocab_size} has fewer than {self.pairs} keys")
        self.batch_size = config.batch_size or paper_batch(self.context)
        self._train: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def vocab_size_of(cls, config: dict) -> int:
        return config["vocab_size"]

    @classmethod
    def protocol(cls, run: dict) -> dict[str, Any]:
        """The paper's batch for the context (``batch_size: 0``) with its learning-rate grid at batch 24, and the steps
        of ``epochs`` passes over the training set."""
        task, optim = run["task"], run["optim"]
        values = super().protocol(run)
        batch = task["batch_size"]
        if batch == 0:
            batch = values["task.batch_size"] = paper_batch(task["context_length"])
            if batch <= 24:
                values["optim.lr"] = lr_at_batch_24(optim["lr"])
                if optim.get("min_lr") is not None:  # an absolute floor moves with it; a ratio needs nothing
                    values["optim.min_lr"] = float(f"{optim['min_lr'] * 0.1:.12g}")
        if task["epochs"] is not None:
            values["trainer.max_steps"] = task["epochs"] * max(1, task["num_train"] // batch)
        return values

    def metrics(self) -> MQARMetrics:
        return MQARMetrics(max(self.eval_contexts), self.context)

    def _generate(self, split: str, index: int, n: int, context: int, pairs: int):
        c = self.config
        return mqar(split_rng(c.data_seed, split, index), n, context, pairs, c.vocab_size, c.power_a,
                    c.random_non_queries)

    def _batch(self, inputs: np.ndarray, targets: np.ndarray, context: int) -> dict:
        return {"tokens": torch.from_numpy(inputs), "targets": torch.from_numpy(targets),
                "lengths": torch.full((len(inputs),), context, dtype=torch.long)}

    def train_batch(self, index: int) -> dict:
        """Batch ``index`` of the fixed training set: epoch e = index // batches per epoch, in a permutation drawn
        from (data seed, e); the set itself is generated once, in chunks of 1000 samples from their own seeds."""
        c = self.config
        if self._train is None:
            chunks = [self._generate("train", i, min(1000, c.num_train - start), self.context, self.pairs)
                      for i, start in enumerate(range(0, c.num_train, 1000))]
            self._train = (np.concatenate([x for x, _ in chunks]), np.concatenate([y for _, y in chunks]))
        per_epoch = max(1, c.num_train // self.batch_size)
        epoch, position = divmod(index, per_epoch)
        order = np.random.default_rng([c.data_seed, 1000 + epoch]).permutation(c.num_train)
        rows = order[position * self.batch_size:(position + 1) * self.batch_size]
        return self._batch(self._train[0][rows], self._train[1][rows], self.context)

    def eval_batches(self, split: str) -> list[dict]:
        c = self.config
        batches = []
        for k, context in enumerate(self.eval_contexts):
            for start in range(0, c.num_eval, c.eval_batch_size):
                size = min(c.eval_batch_size, c.num_eval - start)
                inputs, targets = self._generate(split, 1000 * k + start // c.eval_batch_size, size, context,
                                                 self.pairs)
                batches.append(self._batch(inputs, targets, context))
        return batches

    def preview(self, n: int, length: int | None, seed: int) -> Iterator[dict]:
        """``length`` is the context; it gets length / 16 pairs (at least 1)."""
        c = self.config
        context, pairs = (length, max(1, length // 16)) if length else (self.context, self.pairs)
        check_setting(context, pairs)
        rng = np.random.default_rng([seed, 99])
        for _ in range(n):
            inputs, targets = mqar(rng, 1, context, pairs, c.vocab_size, c.power_a, c.random_non_queries)
            yield {"task": c.name, "length": int(context), "input": " ".join(map(str, inputs[0])),
                   "target": " ".join(str(t) for t in targets[0] if t != IGNORE)}
