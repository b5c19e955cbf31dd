"""Regular languages (Chomsky level R)."""
from __future__ import annotations

import numpy as np

from .base import Language

BITS = ("_", "0", "1")  # PAD, then bit b as token b + 1


def parity(rng: np.random.Generator, batch: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Parity: is the number of ones odd?

    Input n bits; answer the parity bit (sum mod 2) at the last input position.
    Example: input ``1 0 1 1`` -> target ``1`` (three ones).
    """
    bits = rng.integers(0, 2, size=(batch, n))
    return bits + 1, bits.sum(1) % 2 + 1


LANGUAGES = {
    "parity": Language("parity", "Parity", "regular", BITS, num_answers=2, generate=parity),
}
