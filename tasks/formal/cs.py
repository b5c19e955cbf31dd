"""Context-sensitive languages (Chomsky level CS): beyond a pushdown automaton (counting, copying, sorting)."""
from __future__ import annotations

from math import isqrt

import numpy as np

from ..base import IGNORE
from .base import Language
from .dcf import STRING10

# 10 symbols 0..9 as tokens 1..10; PAD (token 0) doubles as the query token, which gives the paper's |V| = 11
SORT = ("_", *map(str, range(10)))


def bucket_sort(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Bucket sort over 10 symbols; answer the input sorted, one symbol per query position (the query token is PAD).

    Example: ``3 1 4 1`` -> ``1 1 3 4``.
    """
    x = rng.integers(1, 11, size=(batch, n))
    return x, np.sort(x, axis=1)


# PAD, the mask "?", then 9 symbols 1..9 as tokens 2..10
MISSING = ("_", "?", *map(str, range(1, 10)))


def _masked_twice(rng: np.random.Generator, batch: int, n: int, second_copy_only: bool):
    """s s with one symbol masked (anywhere, or in the second copy only); a trailing PAD when n is odd."""
    half = max(1, n // 2)
    s = rng.integers(2, 11, size=(batch, half))
    x = np.concatenate([s, s], axis=1)
    hidden = half + rng.integers(0, half, size=batch) if second_copy_only else rng.integers(0, 2 * half, size=batch)
    answer = x[np.arange(batch), hidden].copy()
    x[np.arange(batch), hidden] = 1
    if n % 2 and n > 1:
        x = np.concatenate([x, np.zeros((batch, 1), dtype=x.dtype)], axis=1)
    return x, answer[:, None]


def missing_duplicate(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Missing duplicate (the paper's reading: the mask sits "in the repetition"): a string s of floor(n/2) symbols
    written twice (s s), one position of the second copy masked with "?", a trailing PAD when n is odd; answer the
    masked symbol.

    Example: ``3 5 7 3 ? 7`` -> ``5``.
    """
    return _masked_twice(rng, batch, n, second_copy_only=True)


def missing_duplicate_deepmind(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Missing duplicate as in DeepMind's code: the masked position may be in either copy.

    Example: ``3 ? 7 3 5 7`` -> ``5``.
    """
    return _masked_twice(rng, batch, n, second_copy_only=False)


def odds_first(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Odds first over 10 symbols (the paper's Listing 1): answer the symbols at the odd positions t1, t3, t5, ...
    (1-based), then those at the even ones, t2, t4, ...

    Example: ``2 7 3 2 6 9`` -> ``2 3 6 7 2 9``.
    """
    x = rng.integers(2, 12, size=(batch, n))
    return x, np.concatenate([x[:, 0::2], x[:, 1::2]], axis=1)


def odds_first_deepmind(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Odds first as in DeepMind's code: the odd 0-based positions first, x[1::2] then x[0::2].

    Example: ``2 7 3 2 6 9`` -> ``7 2 9 2 3 6``.
    """
    x = rng.integers(2, 12, size=(batch, n))
    return x, np.concatenate([x[:, 1::2], x[:, 0::2]], axis=1)


BINARY = ("_", "?", "0", "1")  # PAD, query, bits as tokens 2 and 3


def duplicate_string(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Duplicate string (not in the paper's figures): answer the bit string written twice.

    Example: ``1 0 0`` -> ``1 0 0 1 0 0``.
    """
    x = rng.integers(2, 4, size=(batch, n))
    return x, np.concatenate([x, x], axis=1)


ADDITION = ("_", "?", "0", "1", "+")
MULTIPLICATION = ("_", "?", "0", "1", "*")


def _binary_operation(rng: np.random.Generator, batch: int, n: int, operation) -> tuple[np.ndarray, np.ndarray]:
    """a op b with a, b >= 1 written little-endian (most significant bit last, always 1) around the operator; n
    input symbols in all. Answer: a op b little-endian, without trailing zeros."""
    xs, ys = [], []
    for _ in range(batch):
        a_len = int(rng.integers(1, n - 1))
        lengths = (a_len, n - 1 - a_len)
        operands = []
        for length in lengths:
            bits = rng.integers(0, 2, size=length)
            bits[-1] = 1
            operands.append(bits)
        a, b = (int("".join(map(str, bits[::-1])), 2) for bits in operands)
        result = [int(c) for c in bin(operation(a, b))[2:][::-1]]
        xs.append([*(operands[0] + 2), 4, *(operands[1] + 2)])
        ys.append([bit + 2 for bit in result])
    y = np.full((batch, max(map(len, ys))), IGNORE, dtype=np.int64)
    for i, row in enumerate(ys):
        y[i, : len(row)] = row
    return np.array(xs, dtype=np.int64), y


def binary_addition(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary addition (not in the paper's figures), little-endian operands and result.

    Example: ``1 1 + 1`` (3 + 1) -> ``0 0 1`` (4).
    """
    return _binary_operation(rng, batch, n, lambda a, b: a + b)


def binary_multiplication(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Binary multiplication (not in the paper's figures), little-endian operands and result.

    Example: ``1 1 * 0 1`` (3 * 2) -> ``0 1 1`` (6).
    """
    return _binary_operation(rng, batch, n, lambda a, b: a * b)


def compute_sqrt(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Square root (not in the paper's figures): v >= 1 as n bits, big-endian; answer floor(sqrt(v)) as
    ceil(n / 2) bits, big-endian, zero-filled.

    Example: ``1 1 0 1`` (13) -> ``1 1`` (3).
    """
    bits = rng.integers(0, 2, size=(batch, n))
    bits[bits.sum(1) == 0, -1] = 1  # v >= 1
    out_len = (n + 1) // 2
    ys = []
    for row in bits:
        root = isqrt(int("".join(map(str, row)), 2))
        ys.append([int(c) for c in format(root, f"0{out_len}b")])
    return bits + 2, np.array(ys, dtype=np.int64) + 2


LANGUAGES = {
    "bucket_sort": Language("bucket_sort", "Bucket Sort", "context-sensitive", SORT, 10, bucket_sort, query=0),
    "missing_duplicate": Language("missing_duplicate", "Missing Duplicate", "context-sensitive", MISSING, 9,
                                  missing_duplicate, min_length=2, variants={"deepmind": missing_duplicate_deepmind}),
    "odds_first": Language("odds_first", "Odds First", "context-sensitive", STRING10, 10, odds_first, query=1,
                           variants={"deepmind": odds_first_deepmind}),
    "duplicate_string": Language("duplicate_string", "Duplicate String", "context-sensitive", BINARY, 2,
                                 duplicate_string, query=1, in_paper=False),
    "binary_addition": Language("binary_addition", "Binary Addition", "context-sensitive", ADDITION, 2,
                                binary_addition, min_length=3, query=1, in_paper=False),
    "binary_multiplication": Language("binary_multiplication", "Binary Multiplication", "context-sensitive",
                                      MULTIPLICATION, 2, binary_multiplication, min_length=3, query=1,
                                      in_paper=False),
    "compute_sqrt": Language("compute_sqrt", "Compute Sqrt", "context-sensitive", BINARY, 2, compute_sqrt, query=1,
                             in_paper=False),
}
