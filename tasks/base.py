"""The task contract. A ``Task`` is a LightningDataModule that also knows the head it needs, its metrics, the values
its protocol fixes in the run config, and how to preview its samples. ``IndexedTask`` is the kind whose batches are
pure functions of their index; ``SyntheticTask`` (generated token-level tasks) and ``tasks.lra.task.LRATask``
(classification over a fixed data set) extend it.

Batches are dicts of tensors; which keys depends on the head (``tasks.heads``): token tasks give ``tokens`` (B, S)
and ``targets`` (B, S) with ``IGNORE`` where nothing is scored, classification tasks ``tokens`` and ``targets`` (B,)
(plus ``mask`` for padding). Tasks whose metrics bin by sample length add ``lengths`` (B,). Indexed tasks are pure
functions of (config, split, batch index): training batch i of data seed s is the same in every run, on every
machine, and after a resume.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from xlstm.config import require

from .heads import IGNORE, TokenClassifier


class InfeasibleSetting(ValueError):
    """A grid point the task's generator cannot produce (e.g. MQAR with 4 K > T): recorded as such, not trained."""


# Split ids enter every generator seed, so train, validation and test streams never share a seed.
SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass
class TaskConfig:
    name: str = ""
    batch_size: int = 32
    eval_batch_size: int = 64
    data_seed: int = 1  # the same samples in every experiment (paper); the run seed only drives the model
    num_workers: int = 0
    batch_size_rule: ClassVar[tuple[int, str]] = (1, ">= 1")  # a task whose batch 0 means something says so

    def check(self) -> None:
        """Values the types allow but no run can use (the key is relative to ``task``)."""
        minimum, rule = self.batch_size_rule
        require(self.batch_size >= minimum, "batch_size", rule, self.batch_size)
        require(self.eval_batch_size >= 1, "eval_batch_size", ">= 1", self.eval_batch_size)
        require(self.data_seed >= 0, "data_seed", ">= 0", self.data_seed)
        require(self.num_workers >= 0, "num_workers", ">= 0", self.num_workers)


def split_rng(data_seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for batch ``index`` of ``split``: independent streams per (seed, split, index)."""
    return np.random.default_rng([data_seed, SPLITS[split], index])


class Task(L.LightningDataModule):
    """Base of every task. Subclasses set ``config_class`` and implement ``network``, ``metrics``, ``preview`` and
    Lightning's ``train_dataloader`` / ``val_dataloader`` / ``test_dataloader``.

    ``data_dir`` (the run's ``paths.data_dir``) is where tasks that read files look for them.
    """

    config_class: ClassVar[type[TaskConfig]] = TaskConfig

    def __init__(self, config: TaskConfig, data_dir: str | Path = "data"):
        super().__init__()
        config.check()
        self.config, self.data_dir = config, Path(data_dir)

    @classmethod
    def protocol(cls, run: dict) -> dict[str, Any]:
        """Values the task's own protocol fixes in the run config, as dotted keys (``{"trainer.max_steps": 12500}``),
        given the composed run config as a plain dict. The training entry writes them into the config it records,
        so a record shows the steps, batch and learning rate that ran."""
        return {}

    def prepare(self) -> None:
        """Load or generate the data a run needs before training starts, so that missing or corrupt data stop it
        with one line (a ``ValueError``) before anything is written."""

    def network(self, backbone: nn.Module) -> nn.Module:
        """The backbone inside the head this task needs (``tasks.heads``): an ``nn.Module`` with ``score(batch)``."""
        raise NotImplementedError

    def metrics(self) -> Any:
        """A fresh torchmetrics object with ``update(scored: Scored, batch)`` and ``compute() -> dict[str, float]``."""
        raise NotImplementedError

    def preview(self, n: int, length: int | None, seed: int) -> Iterator[dict]:
        """``n`` samples as dicts {"task", "length", "input", "target"} in the task's own symbols, one at a time."""
        raise NotImplementedError

    def rank_share(self) -> tuple[int, int]:
        """(rank, world size) of this process (0, 1 outside a trainer)."""
        trainer = getattr(self, "trainer", None)
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)


class _BatchStream(IterableDataset):
    """Infinite stream of ``make_batch(i)`` for i = start, start + stride, ...; workers interleave in order."""

    def __init__(self, make_batch: Callable[[int], dict], start: int, stride: int = 1):
        self.make_batch, self.start, self.stride = make_batch, start, stride

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        index = self.start + worker * self.stride
        while True:
            yield self.make_batch(index)
            index += workers * self.stride


def private_generator() -> torch.Generator:
    """A DataLoader draws a seed from its generator each time it is iterated; with the global generator that draw
    would shift the model's dropout masks, and a resumed run would no longer match an uninterrupted one."""
    return torch.Generator().manual_seed(0)


class IndexedTask(Task):
    """Tasks whose batches are pure functions of their index: ``train_batch(index)`` (an endless stream that a
    resumed run continues where it stopped, sharded over ranks) and ``eval_batches(split)`` (a fixed list, each rank
    scoring a disjoint share)."""

    def __init__(self, config: TaskConfig, data_dir: str | Path = "data"):
        super().__init__(config, data_dir)
        self._eval_cache: dict[str, list[dict]] = {}

    # ---- data -------------------------------------------------------------------------------------
    def train_batch(self, index: int) -> dict:
        raise NotImplementedError

    def eval_batches(self, split: str) -> list[dict]:
        raise NotImplementedError

    def _start_index(self) -> tuple[int, int]:
        """(first batch index, stride): continue where the restored global step left off; shard over ranks."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        rank, world = self.rank_share()
        consumed = trainer.global_step * trainer.accumulate_grad_batches
        return consumed * world + rank, world

    def train_dataloader(self) -> DataLoader:
        start, stride = self._start_index()
        return DataLoader(_BatchStream(self.train_batch, start, stride), batch_size=None,
                          num_workers=self.config.num_workers, generator=private_generator())

    def _eval_loader(self, split: str) -> DataLoader:
        if split not in self._eval_cache:
            self._eval_cache[split] = self.eval_batches(split)
        rank, world = self.rank_share()  # each rank scores a disjoint share; metrics sum counts
        return DataLoader(self._eval_cache[split][rank::world], batch_size=None, shuffle=False,
                          generator=private_generator())

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


class SyntheticTask(IndexedTask):
    """Generated token-level tasks: the head is the language model (``TokenClassifier``) over the task's vocabulary,
    scored where the targets are not ``IGNORE``."""

    paper_name: ClassVar[str] = ""

    @classmethod
    def vocab_size_of(cls, config: dict) -> int:
        """The vocabulary size a task config implies (the model's ``vocab_size``)."""
        raise NotImplementedError

    @classmethod
    def protocol(cls, run: dict) -> dict[str, Any]:
        return {"model.vocab_size": cls.vocab_size_of(run["task"])}

    @property
    def vocab_size(self) -> int:
        return self.vocab_size_of(vars(self.config))

    def network(self, backbone: nn.Module) -> TokenClassifier:
        if backbone.config.vocab_size != self.vocab_size:
            raise ValueError(f"model.vocab_size={backbone.config.vocab_size} but task {self.config.name!r} has "
                             f"{self.vocab_size} tokens; leave model.vocab_size to the task")
        return TokenClassifier(backbone)


__all__ = ["IGNORE", "InfeasibleSetting", "IndexedTask", "SPLITS", "SyntheticTask", "Task", "TaskConfig",
           "split_rng"]
