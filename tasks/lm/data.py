"""Reading prepared token shards (``tasks.lm.prepare``): one logical token stream, windows, and the training order.

* ``TokenData(folder)``: checks the manifest and every shard (missing, short or corrupt -> one line naming it),
  memory-maps the shards, and reads any token range as one array; ``sources(start, stop)`` gives the source id of
  every token (for per-source perplexity).
* Window ``i`` of length L is tokens [i L, i L + L + 1): L inputs and their L next tokens, across document
  boundaries (end-of-text separates documents), the last incomplete window dropped.
* ``window_order(n, seed, epoch)``: one seeded permutation of the windows per epoch. Optimizer step s trains on
  positions [s B, (s + 1) B) of the concatenated epochs (B = the global batch), whatever the number of processes:
  each rank and micro-batch takes a fixed slice of it, so a resumed run, even on another number of GPUs, sees the
  batches an uninterrupted one would.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import MANIFEST


class DataError(ValueError):
    """Prepared data that is missing, incomplete or corrupt; the message says which file and what to do."""


class TokenData:
    def __init__(self, folder: str | Path, prepare_hint: str = ""):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        hint = prepare_hint or f"python -m tasks.lm.prepare --source SRC --tokenizer NAME --out {self.folder}"
        if not path.exists():
            raise DataError(f"no prepared data at {self.folder}: run `{hint}`")
        try:
            self.manifest = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise DataError(f"{path} is corrupt; prepare {self.folder} again") from None
        if not self.manifest.get("complete"):
            raise DataError(f"{self.folder} was not prepared to the end; run the same prepare command again to finish")
        self.dtype = np.dtype(self.manifest["dtype"]).newbyteorder("<")
        self.shards, starts, doc_rows = [], [0], []
        for shard in self.manifest["shards"]:
            file = self.folder / shard["file"]
            expected = shard["tokens"] * self.dtype.itemsize
            if not file.exists() or file.stat().st_size != expected:
                size = file.stat().st_size if file.exists() else "missing"
                raise DataError(f"corrupt or short shard {file} ({size} bytes, expected {expected}); prepare "
                                f"{self.folder} again")
            self.shards.append(np.memmap(file, dtype=self.dtype, mode="r"))
            try:
                docs = np.load(self.folder / f"{shard['file']}.docs.npy").reshape(-1, 2)
            except (OSError, ValueError):
                raise DataError(f"missing or corrupt {file}.docs.npy; prepare {self.folder} again") from None
            doc_rows.append(docs + np.array([starts[-1], 0]))
            starts.append(starts[-1] + shard["tokens"])
        self.offsets = np.array(starts, dtype=np.int64)  # shard k holds tokens [offsets[k], offsets[k + 1])
        docs = np.concatenate(doc_rows) if doc_rows else np.zeros((0, 2), dtype=np.int64)
        self.doc_starts, self.doc_sources = docs[:, 0], docs[:, 1]
        self.source_names: list[str] = self.manifest["source_names"]

    @property
    def total_tokens(self) -> int:
        return int(self.offsets[-1])

    @property
    def tokenizer(self) -> dict:
        return self.manifest["tokenizer"]

    def read(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) as int64."""
        out = np.empty(stop - start, dtype=np.int64)
        k = int(np.searchsorted(self.offsets, start, side="right")) - 1
        pos = start
        while pos < stop:
            begin, end = self.offsets[k], self.offsets[k + 1]
            take = min(stop, end) - pos
            out[pos - start:pos - start + take] = self.shards[k][pos - begin:pos - begin + take]
            pos += take
            k += 1
        return out

    def sources(self, start: int, stop: int) -> np.ndarray:
        """The source id of each token in [start, stop) (the source of the document it belongs to)."""
        positions = np.arange(start, stop)
        doc = np.searchsorted(self.doc_starts, positions, side="right") - 1
        return self.doc_sources[np.maximum(doc, 0)]

    def num_windows(self, length: int) -> int:
        return max(0, (self.total_tokens - 1) // length)

    def window(self, index: int, length: int) -> np.ndarray:
        """L + 1 tokens: inputs window[:-1], next tokens window[1:]."""
        return self.read(index * length, index * length + length + 1)


@lru_cache(maxsize=4)
def window_order(num_windows: int, seed: int, epoch: int) -> np.ndarray:
    """The training order of the windows in one epoch (a permutation seeded by (seed, epoch))."""
    return np.random.default_rng([seed, epoch]).permutation(num_windows)


def windows_of_step(num_windows: int, seed: int, step: int, batch: int) -> np.ndarray:
    """Window indices of optimizer step ``step`` (global batch ``batch``), continuing across epochs."""
    positions = np.arange(step * batch, (step + 1) * batch)
    epochs, within = np.divmod(positions, num_windows)
    return np.array([window_order(num_windows, seed, int(e))[i] for e, i in zip(epochs, within)], dtype=np.int64)
