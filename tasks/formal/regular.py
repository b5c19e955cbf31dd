"""Regular languages (Chomsky level R): a finite automaton recognises them. One answer, at the last input position."""
from __future__ import annotations

import numpy as np

from .base import Language

BITS = ("_", "0", "1")  # PAD, then bit b as token b + 1


def parity(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Parity: is the number of ones odd? Answer the parity bit.

    Example: ``1 0 1 1`` -> ``1`` (three ones).
    """
    bits = rng.integers(0, 2, size=(batch, n))
    return bits + 1, (bits.sum(1) % 2 + 1)[:, None]


def even_pairs(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Even pairs: the parity of the number of unequal adjacent pairs ("01" and "10"), which is 1 exactly when the
    first and last bits differ.

    Example: ``0 1 1 0`` -> ``0`` (two unequal pairs); ``0 1 1`` -> ``1``.
    """
    bits = rng.integers(0, 2, size=(batch, n))
    return bits + 1, ((bits[:, 0] != bits[:, -1]).astype(np.int64) + 1)[:, None]


# steps +1, -1, +0 (tokens 1..3), then the 5 positions of the cycle (tokens 4..8)
CYCLE = ("_", "+1", "-1", "+0", "0", "1", "2", "3", "4")
_STEP = np.array([1, -1, 0])


def cycle_navigation(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Cycle navigation: an agent starts at position 0 of a cycle of 5 and moves by each step; answer its final
    position.

    Example: ``+1 +1 -1 +0 +1`` -> ``2``;  ``-1 -1`` -> ``3``.
    """
    steps = rng.integers(0, 3, size=(batch, n))
    return steps + 1, (_STEP[steps].sum(1) % 5 + 4)[:, None]


# PAD, the operators and "=", then digits 0..4 as tokens 5..9
ARITH = ("_", "+", "-", "*", "=", "0", "1", "2", "3", "4")


def evaluate_terms(digits: np.ndarray, ops: np.ndarray) -> np.ndarray:
    """Value of d0 op0 d1 op1 ... with * before + and - (ops 0: +, 1: -, 2: *), vectorised over the batch."""
    total = np.zeros(len(digits), dtype=np.int64)
    term = digits[:, 0].astype(np.int64)
    for j in range(ops.shape[1]):
        d = digits[:, j + 1]
        mul, minus = ops[:, j] == 2, ops[:, j] == 1
        total = np.where(mul, total, total + term)
        term = np.where(mul, term * d, np.where(minus, -d, d))
    return total + term


def modular_arithmetic(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Modular arithmetic without brackets: digits 0-4 and + - * with the usual precedence, the value mod 5.

    The expression has the largest odd length <= n - 1 and is followed by "="; an odd n therefore gives an input of
    n - 1 symbols (n >= 2). Example: ``3 + 4 * 2 - 1 =`` -> ``0`` (3 + 8 - 1 = 10).
    """
    e = n - 1 if (n - 1) % 2 else n - 2
    digits = rng.integers(0, 5, size=(batch, (e + 1) // 2))
    ops = rng.integers(0, 3, size=(batch, e // 2))
    x = np.empty((batch, e + 1), dtype=np.int64)
    x[:, 0:e:2], x[:, 1:e:2], x[:, e] = digits + 5, ops + 1, 4
    return x, (evaluate_terms(digits, ops) % 5 + 5)[:, None]


LANGUAGES = {
    "parity": Language("parity", "Parity", "regular", BITS, 2, parity),
    "even_pairs": Language("even_pairs", "Even Pairs", "regular", BITS, 2, even_pairs),
    "cycle_navigation": Language("cycle_navigation", "Cycle Nav", "regular", CYCLE, 5, cycle_navigation),
    "modular_arithmetic": Language("modular_arithmetic", "Mod Arithmetic (w/o brackets)", "regular", ARITH, 5,
                                   modular_arithmetic, min_length=2),
}
