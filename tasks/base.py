"""Task contract: a LightningDataModule that also knows its encoder, decoder, metrics and preview.

A batch is a dict of tensors: ``tokens`` (B, S) int64 model input, ``targets`` (B, S) int64 with ``IGNORE``
everywhere except the positions that are scored, and ``lengths`` (B,) int64 (the task's notion of sample length).
Synthetic tasks are pure functions of (config, split, batch index): training batch i of data seed s is the same
in every run, on every machine, and after a resume.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

IGNORE = -100  # target value of unscored positions (torch cross-entropy's ignore_index)


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


def split_rng(data_seed: int, split: str, index: int) -> np.random.Generator:
    """The generator for batch ``index`` of ``split``: independent streams per (seed, split, index)."""
    return np.random.default_rng([data_seed, SPLITS[split], index])


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


def _private_generator() -> torch.Generator:
    """A DataLoader draws a seed from its generator each time it is iterated; with the global generator that draw
    would shift the model's dropout masks, and a resumed run would no longer match an uninterrupted one."""
    return torch.Generator().manual_seed(0)


class SyntheticTask(L.LightningDataModule):
    """Base of generated tasks. Subclasses implement ``train_batch(index)`` and ``eval_batches(split)``."""

    config_class: ClassVar[type[TaskConfig]] = TaskConfig
    paper_name: ClassVar[str] = ""

    def __init__(self, config: TaskConfig):
        super().__init__()
        self.config = config
        self._eval_cache: dict[str, list[dict]] = {}

    # ---- what the model needs -------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encoder(self, dim: int) -> nn.Module:
        return TokenEncoder(self.vocab_size, dim)

    def decoder(self, dim: int) -> nn.Module:
        return nn.Linear(dim, self.vocab_size, bias=False)

    def tie_embeddings(self, encoder: nn.Module, decoder: nn.Module) -> None:
        """Share the token embedding with the output layer (models configured with tie_embeddings)."""
        if not (isinstance(encoder, TokenEncoder) and isinstance(decoder, nn.Linear)
                and decoder.weight.shape == encoder.embedding.weight.shape):
            raise ValueError(f"task {self.config.name!r} has no token embedding and output layer of the same shape "
                             "to tie; set model.tie_embeddings=false")
        decoder.weight = encoder.embedding.weight

    def max_steps(self, default: int) -> int:
        """Optimizer steps to train: ``default`` (trainer.max_steps) unless the task counts in epochs."""
        return default

    def lr_scale(self) -> float:
        """Factor on optim.lr that the task's protocol prescribes (1 unless stated)."""
        return 1.0

    def metrics(self) -> Any:
        """A fresh torchmetrics object with ``update(predictions (B, S), batch)`` and ``compute() -> dict[str, float]``
        (predictions are read only where ``batch["targets"]`` is scored)."""
        raise NotImplementedError

    # ---- data -------------------------------------------------------------------------------------
    def train_batch(self, index: int) -> dict:
        raise NotImplementedError

    def eval_batches(self, split: str) -> list[dict]:
        raise NotImplementedError

    def preview(self, n: int, length: int | None, seed: int) -> list[dict]:
        raise NotImplementedError

    def _start_index(self) -> tuple[int, int]:
        """(first batch index, stride): continue where the restored global step left off; shard over ranks."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        world, rank = trainer.world_size, trainer.global_rank
        consumed = trainer.global_step * trainer.accumulate_grad_batches
        return consumed * world + rank, world

    def train_dataloader(self) -> DataLoader:
        start, stride = self._start_index()
        return DataLoader(_BatchStream(self.train_batch, start, stride), batch_size=None,
                          num_workers=self.config.num_workers, generator=_private_generator())

    def _eval_loader(self, split: str) -> DataLoader:
        if split not in self._eval_cache:
            self._eval_cache[split] = self.eval_batches(split)
        batches = self._eval_cache[split]
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.world_size > 1:  # each rank scores a disjoint share; metrics sum counts
            batches = batches[trainer.global_rank::trainer.world_size]
        return DataLoader(batches, batch_size=None, shuffle=False, generator=_private_generator())

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


class TokenEncoder(nn.Module):
    """Token embedding with the small init used throughout the suite."""

    def __init__(self, vocab_size: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embedding.weight, std=(2.0 / (5.0 * dim)) ** 0.5)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embedding(tokens)
