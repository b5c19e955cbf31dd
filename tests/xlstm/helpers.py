"""Shared helpers for the model tests."""
from __future__ import annotations

import torch


def stepped_logits(lm, tokens: torch.Tensor) -> torch.Tensor:
    """The logits of ``lm.step`` fed one token at a time from an empty state: (B, S) -> (B, S, V)."""
    state, steps = None, []
    for t in range(tokens.shape[1]):
        logits, state = lm.step(tokens[:, t:t + 1], state)
        steps.append(logits)
    return torch.cat(steps, dim=1)
