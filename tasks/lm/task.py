"""Language modelling on prepared token shards: ``slimpajama`` (Tables 1 and 3, Figure 7) and ``lm_local`` (any
corpus prepared with ``python -m tasks.lm.prepare``, e.g. the embedded Wikipedia sample).

Training reads windows of ``context_length + 1`` tokens in the order of ``tasks.lm.data.windows_of_step``;
``batch_size`` is the global batch of one optimizer step (sequences over all processes and accumulation steps).
Validation scores a fixed set of windows at the start of the validation data (``eval_tokens`` tokens per evaluation
context, the same for every model), test the next ``eval_tokens`` (disjoint). Perplexity is exp(total NLL / total
tokens) over the split, summed across processes; also per source and, per evaluation context, per position bucket.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchmetrics import Metric

from xlstm.config import require

from ..base import Task, TaskConfig, private_generator
from ..heads import Scored, TokenClassifier
from .data import DataError, TokenData, windows_of_step
from .tokenizers import load_tokenizer


@dataclass
class LMConfig(TaskConfig):
    """Defaults: the embedded corpus as ``python -m tasks.lm.embedded`` prepares it under ``data/lm_local``."""

    name: str = "lm_local"
    train_data: str = "lm_local/train"  # a prepared folder, relative to paths.data_dir unless absolute
    val_data: str = "lm_local/validation"
    tokenizer: str = "lm_local/tokenizer.json"  # gpt2 | bytes | a tokenizer.json (relative to paths.data_dir)
    context_length: int = 2048
    batch_size: int = 256  # sequences per optimizer step, over all processes and accumulation steps
    eval_batch_size: int = 8
    eval_tokens: int = 2**20  # tokens scored per evaluation context in each of validation and test
    eval_context_lengths: list[int] = field(default_factory=list)  # more evaluation contexts (extrapolation)
    # the model's vocabulary: the tokenizer's rounded up to a multiple of this (GPT-2's 50257 -> 50304, the paper's)
    vocab_multiple: int = 64

    def check(self) -> None:
        super().check()
        require(self.context_length >= 1, "context_length", ">= 1", self.context_length)
        require(self.vocab_multiple >= 1, "vocab_multiple", ">= 1", self.vocab_multiple)
        lengths = list(self.eval_context_lengths)
        require(all(n >= 1 for n in lengths) and len(set([self.context_length, *lengths])) == len(lengths) + 1,
                "eval_context_lengths", "distinct lengths >= 1, other than context_length", lengths)
        require(self.eval_tokens >= max([self.context_length, *self.eval_context_lengths]), "eval_tokens",
                ">= the longest evaluation context", self.eval_tokens)


@dataclass
class SlimPajamaConfig(LMConfig):
    name: str = "slimpajama"
    train_data: str = "slimpajama/train"
    val_data: str = "slimpajama/validation"
    tokenizer: str = "gpt2"


def _folder(data_dir: str | Path, path: str) -> Path:
    return Path(path) if Path(path).is_absolute() else Path(data_dir) / path


def _hint(config: dict, split: str) -> str:
    if config["name"] == "lm_local":
        return "python -m tasks.lm.embedded --out <paths.data_dir>/lm_local (the embedded corpus)"
    return f"python -m tasks.lm.prepare --source /path/to/SlimPajama/{split} --tokenizer {config['tokenizer']} --out DIR"


def padded_vocab(vocab_size: int, multiple: int) -> int:
    """The embedding rows of a tokenizer's vocabulary, rounded up (unused rows are never a target)."""
    return -(-vocab_size // multiple) * multiple


def tokenizer_path(name: str, data_dir: str | Path) -> str:
    """A built-in tokenizer's name, or a tokenizer file's path (relative ones under ``data_dir``)."""
    return name if name in ("gpt2", "bytes") else str(_folder(data_dir, name))


def open_data(config: dict, data_dir: str | Path, split: str) -> TokenData:
    """The prepared data of ``split`` (train | validation), checked against the run's tokenizer."""
    folder = _folder(data_dir, config["train_data" if split == "train" else "val_data"])
    data = TokenData(folder, _hint(config, split).replace("DIR", str(folder)))
    tokenizer = load_tokenizer(tokenizer_path(config["tokenizer"], data_dir))
    if data.tokenizer["hash"] != tokenizer.hash:
        raise DataError(f"{folder} was prepared with tokenizer {data.tokenizer['name']!r} "
                        f"({data.tokenizer['hash']}), the run asks for {tokenizer.name!r} ({tokenizer.hash}); set "
                        "task.tokenizer to match or prepare the data again")
    return data


class LMMetrics(Metric):
    """Perplexity over a split: overall (``ppl``, at the training context), per evaluation context (``ppl@L``),
    per source (``ppl/<source>``, training context) and per position bucket (``nll@L/pos<p>``: mean NLL of the
    positions [p, 2p), 1-based)."""

    full_state_update = False

    def __init__(self, contexts: list[int], source_names: list[str]):
        super().__init__()
        self.contexts, self.source_names = contexts, source_names
        self.buckets = int(np.log2(max(contexts))) + 1
        C, S, P = len(contexts), max(1, len(source_names)), self.buckets
        for name, shape in (("nll", (C,)), ("count", (C,)), ("src_nll", (S,)), ("src_count", (S,)),
                            ("pos_nll", (C, P)), ("pos_count", (C, P))):
            dtype = torch.float64 if "nll" in name else torch.long
            self.add_state(name, torch.zeros(shape, dtype=dtype), dist_reduce_fx="sum")

    def update(self, scored: Scored, batch: dict) -> None:
        scored_mask = batch["targets"] != -100  # (B, S): every position, in the head's row-major order
        lengths = batch["lengths"][scored.rows]  # (N,)
        context = (lengths[:, None] == torch.tensor(self.contexts, device=lengths.device)).int().argmax(1)
        positions = torch.arange(scored_mask.shape[1], device=lengths.device).expand_as(scored_mask)[scored_mask] + 1
        bucket = torch.log2(positions.double()).long().clamp(max=self.buckets - 1)
        nll = scored.nll.double()
        self.nll.index_add_(0, context, nll)
        self.count.index_add_(0, context, torch.ones_like(context))
        flat = context * self.buckets + bucket
        self.pos_nll.view(-1).index_add_(0, flat, nll)
        self.pos_count.view(-1).index_add_(0, flat, torch.ones_like(flat))
        first = context == 0  # per source: at the training context
        sources = batch["token_sources"][scored_mask][first]
        self.src_nll.index_add_(0, sources, nll[first])
        self.src_count.index_add_(0, sources, torch.ones_like(sources))

    def compute(self) -> dict[str, float]:
        out = {}
        for c, length in enumerate(self.contexts):
            if self.count[c] > 0:
                ppl = float(torch.exp(self.nll[c] / self.count[c]))
                out[f"ppl@{length}"] = ppl
                if c == 0:
                    out["ppl"] = ppl
                for b in range(self.buckets):
                    if self.pos_count[c, b] > 0:
                        out[f"nll@{length}/pos{2 ** b}"] = float(self.pos_nll[c, b] / self.pos_count[c, b])
        for s, name in enumerate(self.source_names):
            if self.src_count[s] > 0:
                out[f"ppl/{name}"] = float(torch.exp(self.src_nll[s] / self.src_count[s]))
        return out


class _TrainWindows(IterableDataset):
    """Micro-batches of training windows from micro-step ``start`` on, this rank's slice of each step's batch."""

    def __init__(self, task: "LanguageModellingTask", start: int, micro: int, rank: int, world: int, accumulate: int):
        self.task, self.start, self.micro, self.rank, self.world, self.accumulate = (
            task, start, micro, rank, world, accumulate)

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        t, c = self.task, self.task.config
        index = self.start + worker
        while True:
            step, part = divmod(index, self.accumulate)
            windows = windows_of_step(t.num_train_windows, c.data_seed, step, c.batch_size)
            first = (part * self.world + self.rank) * self.micro
            yield t.batch(t.train, windows[first:first + self.micro], c.context_length)
            index += workers


class LanguageModellingTask(Task):
    config_class: ClassVar[type[TaskConfig]] = LMConfig

    def __init__(self, config: LMConfig, data_dir: str | Path = "data"):
        super().__init__(config, data_dir)
        self._train: TokenData | None = None
        self._val: TokenData | None = None
        self.max_positions: int | None = None  # the network's limit (learned positions); longer contexts are skipped

    @classmethod
    def protocol(cls, run: dict) -> dict[str, Any]:
        """The vocabulary of the prepared data (checked against the run's tokenizer) and the trained context."""
        task = run["task"]
        try:
            data = open_data(task, run["paths"]["data_dir"], "train")
        except (DataError, ValueError) as err:
            raise ValueError(str(err)) from None
        return {"model.vocab_size": padded_vocab(data.tokenizer["vocab_size"], task["vocab_multiple"]),
                "model.context_length": task["context_length"]}

    @property
    def train(self) -> TokenData:
        if self._train is None:
            self._train = open_data(vars(self.config), self.data_dir, "train")
            if self.num_train_windows < 1:
                raise DataError(f"{self._train.folder} has {self._train.total_tokens} tokens: not one window of "
                                f"{self.config.context_length + 1}")
        return self._train

    @property
    def val(self) -> TokenData:
        if self._val is None:
            self._val = open_data(vars(self.config), self.data_dir, "validation")
            c = self.config
            need = 2 * c.eval_tokens + 1
            if self._val.total_tokens < need:
                raise DataError(f"{self._val.folder} has {self._val.total_tokens:,} tokens; validation and test "
                                f"need {need:,}: lower task.eval_tokens")
        return self._val

    @property
    def num_train_windows(self) -> int:
        return self.train.num_windows(self.config.context_length)

    @property
    def vocab_size(self) -> int:
        return padded_vocab(int(self.train.tokenizer["vocab_size"]), self.config.vocab_multiple)

    @property
    def contexts(self) -> list[int]:
        return [self.config.context_length, *self.config.eval_context_lengths]

    def network(self, backbone) -> TokenClassifier:
        self.max_positions = backbone.max_positions
        return TokenClassifier(backbone)

    def metrics(self) -> LMMetrics:
        return LMMetrics(self.contexts, self.val.source_names)

    def batch(self, data: TokenData, windows: np.ndarray, length: int, offset: int = 0) -> dict:
        """Windows (by index, ``length`` tokens each, the first starting at token ``offset``) as a batch."""
        rows = np.stack([data.read(offset + w * length, offset + w * length + length + 1) for w in windows])
        sources = np.stack([data.sources(offset + w * length + 1, offset + w * length + length + 1) for w in windows])
        return {"tokens": torch.from_numpy(rows[:, :-1]), "targets": torch.from_numpy(rows[:, 1:]),
                "lengths": torch.full((len(windows),), length, dtype=torch.long),
                "token_sources": torch.from_numpy(sources.astype(np.int64))}

    def train_dataloader(self) -> DataLoader:
        trainer = getattr(self, "trainer", None)
        rank, world = self.rank_share()
        accumulate = trainer.accumulate_grad_batches if trainer is not None else 1
        if self.config.batch_size % (world * accumulate):
            raise DataError(f"task.batch_size={self.config.batch_size} does not split into {world} processes x "
                            f"{accumulate} accumulation steps")
        micro = self.config.batch_size // (world * accumulate)
        start = trainer.global_step * accumulate if trainer is not None else 0
        self.train  # open (and check) before workers start
        return DataLoader(_TrainWindows(self, start, micro, rank, world, accumulate), batch_size=None,
                          num_workers=self.config.num_workers, generator=private_generator())

    def _eval_loader(self, split: str) -> DataLoader:
        """Every evaluation context's windows, dealt round-robin to the processes (each scores a share; the metric
        sums over all), in batches of ``eval_batch_size``."""
        c, data = self.config, self.val
        rank, world = self.rank_share()
        offset = 0 if split == "val" else c.eval_tokens  # test: the next eval_tokens tokens, disjoint
        batches = []
        for length in self.contexts:
            if self.max_positions is not None and length > self.max_positions:
                continue  # e.g. GPT-3's learned positions: no ppl@length in its record (the table shows n/a)
            count = c.eval_tokens // length
            if count < world:
                raise DataError(f"task.eval_tokens={c.eval_tokens} gives {count} windows of {length} tokens, fewer "
                                f"than the {world} processes: raise task.eval_tokens")
            mine = np.arange(count)[rank::world]
            for first in range(0, len(mine), c.eval_batch_size):
                batches.append(self.batch(data, mine[first:first + c.eval_batch_size], length, offset))
        return DataLoader(batches, batch_size=None, shuffle=False, generator=private_generator())

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def preview(self, n: int, length: int | None, seed: int) -> Iterator[dict]:
        tokenizer = load_tokenizer(tokenizer_path(self.config.tokenizer, self.data_dir))
        length = length or min(self.config.context_length, 64)
        rng = np.random.default_rng([seed, 99])
        for w in rng.integers(0, max(1, self.train.num_windows(length)), size=n):
            window = self.train.window(int(w), length)
            yield {"task": self.config.name, "length": int(length), "input": tokenizer.decode(window[:-1].tolist()),
                   "target": tokenizer.decode(window[1:].tolist())}


class SlimPajamaTask(LanguageModellingTask):
    """The same task with SlimPajama's defaults (GPT-2 tokenizer, data under ``slimpajama/``)."""

    config_class = SlimPajamaConfig
