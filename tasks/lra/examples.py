"""What every Long Range Arena source hands the task: one split as right-padded arrays, plus the one error a user
sees when data are missing or unreadable."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class DataMissing(ValueError):
    """Data a task needs are not where it looks, or cannot be read: the message is one line that says where to put
    them or which command fetches them."""


@dataclass
class Examples:
    """One split of a classification task.

    inputs: (N, S) token ids, (N, S, C) pixel channels, or (N, 2, S) token ids of document pairs; right-padded with 0
    lengths: (N,) valid positions per row ((N, 2) for pairs)
    labels: (N,) int64 class ids
    """

    inputs: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.labels)
        if len(self.inputs) != n or len(self.lengths) != n:
            raise ValueError(f"inputs ({len(self.inputs)}), lengths ({len(self.lengths)}) and labels ({n}) differ")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, rows: np.ndarray | slice) -> "Examples":
        return Examples(self.inputs[rows], self.lengths[rows], self.labels[rows])


def pad(sequences: list[np.ndarray], max_length: int, dtype=np.int16) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad 1-D sequences with 0 after truncating each to ``max_length`` -> (inputs (N, S), lengths (N,)), with
    S the longest kept length."""
    lengths = np.array([min(len(s), max_length) for s in sequences], dtype=np.int64)
    out = np.zeros((len(sequences), int(lengths.max()) if len(sequences) else 0), dtype=dtype)
    for row, (s, n) in enumerate(zip(sequences, lengths)):
        out[row, :n] = s[:n]
    return out, lengths
