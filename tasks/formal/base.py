"""Formal-language tasks: a language spec, the task (data module) and its metric.

Sequence layout (project decisions, documented in the README). Token 0 is PAD; vocabularies and the number of
possible answers match the paper's App. B.1.1 (|V| and s_rand).
* Single-answer tasks: the model reads the input x_1..x_n and the answer is predicted at the last input position
  (the logit there must name the answer token).
* Sequence-answer tasks (reverse, sort, copy, ...): the input is followed by one query token per answer symbol
  (DeepMind's layout, no teacher forcing); the i-th answer symbol is predicted at the i-th query position.
"Length" is n, the length the generator is asked for (the number of input symbols; a task whose grammar cannot hit
n exactly says so in its docstring). Training lengths are drawn per sample, uniformly in
[train_min_length, train_max_length]; evaluation uses every length in range(eval_min_length, eval_max_length + 1,
eval_length_step), the same number of samples for each, in batches of one length. The score is per-token accuracy
over the answer positions, per length, averaged over lengths.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from xlstm.config import require

from ..base import IGNORE, SyntheticTask, TaskConfig, split_rng
from ..metrics import AccuracyByLength, rescale

# (rng, batch, n) -> (x (batch, n') input token ids, y (batch, m) answer token ids, IGNORE-padded when answers
# have different lengths within the batch)
Generator = Callable[[np.random.Generator, int, int], tuple[np.ndarray, np.ndarray]]

LEVELS = ("regular", "deterministic context-free", "context-sensitive", "extra")


@dataclass(frozen=True)
class Language:
    name: str
    paper_name: str
    level: str  # one of LEVELS; "extra" = the paper's own tasks, whose level it does not state
    vocab: tuple[str, ...]  # token id -> natural symbol; id 0 is PAD
    num_answers: int  # possible answer tokens; s_rand = 1 / num_answers
    generate: Generator  # the paper's definition (App. B.1.1, Listing 1), else DeepMind's
    min_length: int = 1
    query: int | None = None  # token id of the query positions of sequence answers; None = one answer, at the end
    in_paper: bool = True  # one of the 15 tasks of the paper's Figures 4 and 12
    variants: dict[str, Generator] = field(default_factory=dict)  # other readings, by name (task.definition)

    def generator(self, definition: str) -> Generator:
        if definition == "paper":
            return self.generate
        if definition not in self.variants:
            valid = ", ".join(["paper", *self.variants])
            raise ValueError(f"task.definition={definition!r} is not a definition of {self.name}; valid: {valid}")
        return self.variants[definition]

    @property
    def random_baseline(self) -> float:
        return 1.0 / self.num_answers


@dataclass
class FormalTaskConfig(TaskConfig):
    batch_size: int = 256
    train_min_length: int = 1
    train_max_length: int = 40
    eval_min_length: int = 40
    eval_max_length: int = 256
    eval_length_step: int = 1
    eval_samples_per_length: int = 32
    definition: str = "paper"  # "paper", or a task's other reading ("deepmind", ...: see the README's task table)

    def check(self) -> None:
        super().check()
        require(1 <= self.train_min_length <= self.train_max_length, "train_min_length",
                ">= 1 and <= task.train_max_length", self.train_min_length)
        require(1 <= self.eval_min_length <= self.eval_max_length, "eval_min_length",
                ">= 1 and <= task.eval_max_length", self.eval_min_length)
        require(self.eval_length_step >= 1, "eval_length_step", ">= 1", self.eval_length_step)
        require(self.eval_samples_per_length >= 1, "eval_samples_per_length", ">= 1", self.eval_samples_per_length)


class FormalMetrics(AccuracyByLength):
    """Accuracy per evaluation length and rescaled; ``acc`` and ``acc_scaled`` are the means over lengths."""

    def __init__(self, max_length: int, random_baseline: float):
        super().__init__(max_length)
        self.random_baseline = random_baseline

    def summarize(self, per_length: dict[int, float]) -> dict[str, float]:
        out = {f"acc_scaled@{n}": rescale(a, self.random_baseline) for n, a in per_length.items()}
        if per_length:
            acc = float(np.mean(list(per_length.values())))
            out.update(acc=acc, acc_scaled=rescale(acc, self.random_baseline))
        return out


def layout(x: np.ndarray, y: np.ndarray, query: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per sample (tokens, targets). Single answer: tokens = x, the target at the last input position.
    Sequence answer: tokens = x followed by one query token per answer symbol, targets at the query positions."""
    rows = []
    for xi, yi in zip(x, y):
        yi = yi[yi != IGNORE]
        if query is None:
            targets = np.full(len(xi), IGNORE, dtype=np.int64)
            targets[-1] = yi[0]
            rows.append((xi.astype(np.int64), targets))
        else:
            tokens = np.concatenate([xi, np.full(len(yi), query)]).astype(np.int64)
            targets = np.concatenate([np.full(len(xi), IGNORE), yi]).astype(np.int64)
            rows.append((tokens, targets))
    return rows


def _language(name: str) -> Language:
    from . import LANGUAGES

    if name not in LANGUAGES:
        raise ValueError(f"unknown formal language {name!r}; valid: {', '.join(LANGUAGES)}")
    return LANGUAGES[name]


class FormalLanguageTask(SyntheticTask):
    """One formal language (chosen by ``config.name``) as a data module."""

    config_class = FormalTaskConfig

    def __init__(self, config: FormalTaskConfig, data_dir: str = "data"):
        super().__init__(config, data_dir)
        self.language: Language = _language(config.name)
        self.generate: Generator = self.language.generator(config.definition)
        self.paper_name = self.language.paper_name

    @classmethod
    def vocab_size_of(cls, config: dict) -> int:
        return len(_language(config["name"]).vocab)

    @property
    def eval_lengths(self) -> list[int]:
        c = self.config
        return list(range(c.eval_min_length, c.eval_max_length + 1, c.eval_length_step))

    def metrics(self) -> FormalMetrics:
        max_len = max(self.config.eval_max_length, self.config.train_max_length)
        return FormalMetrics(max_len, self.language.random_baseline)

    def _sample(self, rng: np.random.Generator, batch: int, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        x, y = self.generate(rng, batch, max(n, self.language.min_length))
        return layout(x, y, self.language.query)

    def _to_batch(self, rows: list[tuple[np.ndarray, np.ndarray]], lengths: list[int]) -> dict:
        width = max(len(t) for t, _ in rows)
        tokens = np.zeros((len(rows), width), dtype=np.int64)  # right-padded with PAD = 0
        targets = np.full((len(rows), width), IGNORE, dtype=np.int64)
        for i, (t, g) in enumerate(rows):
            tokens[i, : len(t)], targets[i, : len(g)] = t, g
        return {"tokens": torch.from_numpy(tokens), "targets": torch.from_numpy(targets),
                "lengths": torch.tensor(lengths, dtype=torch.long)}

    def train_batch(self, index: int) -> dict:
        c = self.config
        rng = split_rng(c.data_seed, "train", index)
        lengths = rng.integers(c.train_min_length, c.train_max_length + 1, size=c.batch_size)
        rows: list[tuple[np.ndarray, np.ndarray]] = [None] * c.batch_size  # type: ignore[list-item]
        for n in np.unique(lengths):  # one vectorised call per distinct length
            idx = np.flatnonzero(lengths == n)
            for i, row in zip(idx, self._sample(rng, len(idx), int(n))):
                rows[i] = row
        return self._to_batch(rows, lengths.tolist())

    def eval_batches(self, split: str) -> list[dict]:
        c = self.config
        batches = []
        for n in self.eval_lengths:
            rng = split_rng(c.data_seed, split, n)
            left = c.eval_samples_per_length
            while left > 0:
                size = min(left, c.eval_batch_size)
                batches.append(self._to_batch(self._sample(rng, size, n), [n] * size))
                left -= size
        return batches

    def decode(self, ids) -> str:
        return " ".join(self.language.vocab[int(i)] for i in ids)

    def preview(self, n: int, length: int | None, seed: int) -> Iterator[dict]:
        c = self.config
        rng = np.random.default_rng([seed, 99])
        for _ in range(n):
            size = length if length is not None else int(rng.integers(c.train_min_length, c.train_max_length + 1))
            x, y = self.generate(rng, 1, max(size, self.language.min_length))
            yield {"task": c.name, "length": int(x.shape[1]), "input": self.decode(x[0]),
                   "target": self.decode(y[0][y[0] != IGNORE])}
