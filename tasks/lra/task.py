"""Long Range Arena on the task contract: one classification task per LRA dataset, each a pooled classifier (a
pair classifier for Retrieval) around any backbone, scored by accuracy.

Data come as one ``Examples`` per split (``tasks.lra.examples``) from a generator (ListOps, Pathfinder) or files
(CIFAR-10, IMDB, AAN, the released ListOps / Pathfinder). Generated splits are a pure function of (data seed, split,
index) and are cached under ``<data_dir>/lra/generated`` by their settings. Training batch i is rows of epoch
i // batches-per-epoch in a permutation drawn from (data seed, epoch): the same in every run and after a resume.
Every batch is trimmed to its longest row; ``mask`` marks the valid positions of right-padded rows.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterator, Optional

import numpy as np
import torch
from torch import nn

from xlstm.config import require

from ..base import IndexedTask, TaskConfig
from ..heads import POOLINGS, PairClassifier, PooledClassifier
from ..metrics import Accuracy
from .examples import Examples

SPLIT_NAMES = ("train", "val", "test")


@dataclass
class LRAConfig(TaskConfig):
    pooling: str = "mean"  # mean | last: over the valid positions (the backbone is causal; see the README)
    num_train: int = 0  # 0 = the task's whole split; n > 0 = its first n rows (generated tasks: n samples)
    num_val: int = 0
    num_test: int = 0
    path: Optional[str] = None  # where files are read; None = <paths.data_dir>/lra/<task's folder>

    def check(self) -> None:
        super().check()
        require(self.pooling in POOLINGS, "pooling", " | ".join(POOLINGS), self.pooling)
        for key in ("num_train", "num_val", "num_test"):
            require(getattr(self, key) >= 0, key, ">= 0 (0 = the whole split)", getattr(self, key))


class LRATask(IndexedTask):
    """Base of the LRA tasks. Subclasses give ``load(split) -> Examples``, ``num_classes``, the ``encoder`` and the
    ``describe`` of a row for previews; ``paired`` tasks feed (B, 2, S) document pairs to a ``PairClassifier``."""

    config_class: ClassVar[type[LRAConfig]] = LRAConfig
    paper_name: ClassVar[str] = ""
    folder: ClassVar[str] = ""  # under <data_dir>/lra
    num_classes: ClassVar[int] = 2
    paired: ClassVar[bool] = False
    generated_defaults: ClassVar[dict[str, int]] = {}  # split -> size when a generated task's num_<split> is 0

    def __init__(self, config: LRAConfig, data_dir: str | Path = "data"):
        super().__init__(config, data_dir)
        self._examples: dict[str, Examples] = {}

    # ---- data -------------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        return Path(self.config.path) if self.config.path else self.data_dir / "lra" / self.folder

    def prepare(self) -> None:
        for split in SPLIT_NAMES:
            self.examples(split)

    def size(self, split: str) -> int:
        """Rows wanted from ``split`` (0 = all)."""
        return getattr(self.config, f"num_{split}")

    def load(self, split: str) -> Examples:
        raise NotImplementedError

    def examples(self, split: str) -> Examples:
        if split not in self._examples:
            ex = self.load(split)
            n = self.size(split)
            self._examples[split] = ex.subset(slice(0, n)) if n and n < len(ex) else ex
        return self._examples[split]

    def cached(self, split: str, settings: dict, make) -> Examples:
        """A generated split, from <data_dir>/lra/generated when the same settings made it before."""
        key = hashlib.sha256(json.dumps({"task": self.config.name, "split": split, **settings},
                                        sort_keys=True).encode()).hexdigest()[:16]
        path = self.data_dir / "lra" / "generated" / f"{self.config.name}-{split}-{key}.npz"
        if path.exists():
            with np.load(path) as f:
                return Examples(f["inputs"], f["lengths"], f["labels"])
        ex = make()
        try:  # a cache only: an unwritable data folder costs the generation time again, nothing else
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
            np.savez(tmp, inputs=ex.inputs, lengths=ex.lengths, labels=ex.labels)
            os.replace(tmp, path)
        except OSError:
            pass
        return ex

    def generated_size(self, split: str) -> int:
        return self.size(split) or self.generated_defaults[split]

    def features(self, inputs: np.ndarray) -> torch.Tensor:
        """A batch's stored inputs -> what the encoder takes (token ids by default)."""
        return torch.from_numpy(inputs.astype(np.int64))

    def batch(self, ex: Examples) -> dict:
        longest = int(ex.lengths.max())
        inputs = ex.inputs[..., :longest] if self.paired else ex.inputs[:, :longest]  # positions: axis 1 or 2 of pairs
        positions = np.arange(longest)
        mask = positions < ex.lengths[..., None]  # (B, S) or (B, 2, S)
        return {"tokens": self.features(inputs), "mask": torch.from_numpy(mask),
                "targets": torch.from_numpy(ex.labels.astype(np.int64))}

    def train_batch(self, index: int) -> dict:
        ex, b = self.examples("train"), self.config.batch_size
        per_epoch = max(1, len(ex) // b)
        epoch, position = divmod(index, per_epoch)
        order = np.random.default_rng([self.config.data_seed, 1000 + epoch]).permutation(len(ex))
        return self.batch(ex.subset(np.sort(order[position * b:(position + 1) * b])))

    def eval_batches(self, split: str) -> list[dict]:
        ex, b = self.examples(split), self.config.eval_batch_size
        return [self.batch(ex.subset(slice(start, start + b))) for start in range(0, len(ex), b)]

    # ---- model and metrics ------------------------------------------------------------------------
    def encoder(self, dim: int) -> nn.Module:
        raise NotImplementedError

    def network(self, backbone: nn.Module) -> nn.Module:
        head = PairClassifier if self.paired else PooledClassifier
        return head(backbone, self.encoder(backbone.dim), self.num_classes, self.config.pooling)

    def metrics(self) -> Accuracy:
        return Accuracy()

    # ---- preview ----------------------------------------------------------------------------------
    def describe(self, inputs: np.ndarray, length) -> str:
        """One row's valid inputs in the task's own symbols."""
        return " ".join(str(int(v)) for v in np.asarray(inputs).reshape(-1)[:int(np.sum(length))])

    def preview(self, n: int, length: int | None, seed: int) -> Iterator[dict]:
        ex = self.preview_examples(n, length, seed)
        for i in range(len(ex)):
            yield {"task": self.config.name, "length": int(np.max(ex.lengths[i])),
                   "input": self.describe(ex.inputs[i], ex.lengths[i]), "target": str(int(ex.labels[i]))}

    def preview_examples(self, n: int, length: int | None, seed: int) -> Examples:
        return self.examples("train").subset(slice(0, n))


__all__ = ["LRAConfig", "LRATask", "SPLIT_NAMES"]
