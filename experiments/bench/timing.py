"""Timing of a language model's forward and forward+backward on CPU. Imports nothing but torch, so the script that
times the official ``xlstm`` package (in its own environment, where our ``xlstm`` must not be importable) can load it
by path."""
from __future__ import annotations

import statistics
import time

import torch


def median_seconds(fn, reps: int, warmup: int = 1) -> float:
    """Median wall seconds of ``fn()`` over ``reps`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def time_lm(model: torch.nn.Module, tokens: torch.Tensor, reps: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of ``model(tokens)`` and of forward + backward of the mean logit (a cheap scalar loss)."""

    def fwd():
        with torch.no_grad():
            model(tokens)

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        model(tokens).float().mean().backward()

    return {"fwd_s": median_seconds(fwd, reps, warmup), "fwd_bwd_s": median_seconds(fwd_bwd, reps, warmup)}
