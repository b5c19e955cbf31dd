"""The paper's own tasks beyond DeepMind's set: Majority, Majority Count, Repetition, Set.

The paper gives only their names, vocabulary sizes and random baselines (App. B.1.1); the definitions below are the
suite's (README). Their Chomsky level is not stated; the tables show them as "extra".
"""
from __future__ import annotations

import numpy as np

from ..base import IGNORE
from .base import Language
from .dcf import STRING10

# PAD, then 63 symbols 1..63 (tokens 1..63); |V| = 64, s_rand = 1/63
SYMBOLS63 = ("_", *map(str, range(1, 64)))


def _skewed_strings(rng: np.random.Generator, batch: int, n: int) -> np.ndarray:
    """Strings over a random subset of k ~ U{2..63} of the 63 symbols, uniform within the subset (so that symbols
    repeat at every length)."""
    out = np.empty((batch, n), dtype=np.int64)
    for i in range(batch):
        k = int(rng.integers(2, 64))
        alphabet = rng.choice(63, size=k, replace=False) + 1
        out[i] = alphabet[rng.integers(0, k, size=n)]
    return out


def _counts(x: np.ndarray) -> np.ndarray:
    counts = np.zeros((len(x), 64), dtype=np.int64)
    np.add.at(counts, (np.arange(len(x))[:, None], x), 1)
    return counts


def _first_of_most_frequent(x: np.ndarray) -> np.ndarray:
    """Per row, the most frequent symbol; among tied ones, the one that occurs first."""
    counts = _counts(x)
    top = counts.max(1, keepdims=True)
    tied = np.take_along_axis(counts, x, 1) == top  # (batch, n): positions holding a most frequent symbol
    return x[np.arange(len(x)), tied.argmax(1)]


def majority(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Majority: answer the most frequent symbol; when several are most frequent, the one that occurs first (the
    paper does not say how ties are handled; strings are drawn without regard to them).

    Example: ``7 3 7 12 7 3`` -> ``7``; ``3 7 7 3`` -> ``3``.
    """
    x = _skewed_strings(rng, batch, n)
    return x, _first_of_most_frequent(x)[:, None]


def majority_unique(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Majority over strings whose most frequent symbol is unique (strings with a tie are redrawn).

    Example: ``7 3 7 12 7 3`` -> ``7``.
    """
    x = _skewed_strings(rng, batch, n)
    while True:
        counts = _counts(x)
        tied = (counts == counts.max(1, keepdims=True)).sum(1) > 1
        if not tied.any():
            return x, counts.argmax(1)[:, None]
        x[tied] = _skewed_strings(rng, int(tied.sum()), n)


def majority_count(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Majority count: answer how often the most frequent symbol occurs, as the symbol with that number; a count
    above the vocabulary is answered by its highest symbol, 63 (the paper's rule).

    Example: ``7 3 7 12 7 3`` -> ``3``.
    """
    x = _skewed_strings(rng, batch, n)
    return x, np.minimum(_counts(x).max(1), 63)[:, None]


def majority_count_wrap(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Majority count with counts above 63 wrapping around (count c is answered by symbol ((c - 1) mod 63) + 1)."""
    x = _skewed_strings(rng, batch, n)
    return x, ((_counts(x).max(1) - 1) % 63 + 1)[:, None]


def repetition(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Repetition over 10 symbols: answer the input again, one symbol per query position.

    Example: ``3 1 4`` -> ``3 1 4``.
    """
    x = rng.integers(2, 12, size=(batch, n))
    return x, x.copy()


# PAD, the query "?", then 126 symbols 1..126 (tokens 2..127); |V| = 128, s_rand = 1/126
SYMBOLS126 = ("_", "?", *map(str, range(1, 127)))


def set_task(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Set: answer the distinct symbols of the input in order of first occurrence. Strings are drawn over a random
    subset of k ~ U{2..126} symbols, so that repeats occur.

    Example: ``5 9 5 2 9`` -> ``5 9 2``.
    """
    x = np.empty((batch, n), dtype=np.int64)
    answers = []
    for i in range(batch):
        k = int(rng.integers(2, 127))
        alphabet = rng.choice(126, size=k, replace=False) + 2
        x[i] = alphabet[rng.integers(0, k, size=n)]
        _, first = np.unique(x[i], return_index=True)
        answers.append(x[i][np.sort(first)])
    y = np.full((batch, max(map(len, answers))), IGNORE, dtype=np.int64)
    for i, row in enumerate(answers):
        y[i, : len(row)] = row
    return x, y


LANGUAGES = {
    "majority": Language("majority", "Majority", "extra", SYMBOLS63, 63, majority,
                         variants={"unique": majority_unique}),
    "majority_count": Language("majority_count", "Majority Count", "extra", SYMBOLS63, 63, majority_count,
                               variants={"wrap": majority_count_wrap}),
    "repetition": Language("repetition", "Repetition", "extra", STRING10, 10, repetition, query=1),
    "set": Language("set", "Set", "extra", SYMBOLS126, 126, set_task, query=1),
}
