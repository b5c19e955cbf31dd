"""Token perplexity of whole documents in disjoint windows (the paper's PALOMA protocol, App. B.3).

A document t_0 .. t_{N-1} is read as [prefix] + tokens (the prefix is the end-of-text token, as in
lm-evaluation-harness's rolling log-likelihood), and every token is predicted exactly once. The targets are cut
into consecutive windows of at most L tokens; a window's input is the L tokens that end just before its last
target, so the first window starts at the prefix, a full window sees one token of the previous window as context,
and the last, shorter window is filled with earlier tokens (only its new tokens are scored). This is
``get_rolling_token_windows(max_seq_len=L, context_len=1)`` with ``make_disjoint_window`` in lm-evaluation-harness.

Per source: perplexity = exp(sum of NLL / number of scored tokens) over all its documents (token-weighted, not a mean
of document perplexities).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Window:
    """``inputs`` (<= L token ids) go through the model; its last ``len(targets)`` outputs score ``targets``."""

    inputs: tuple[int, ...]
    targets: tuple[int, ...]


def rolling_windows(tokens: list[int], max_len: int, prefix_token: int) -> list[Window]:
    """The disjoint windows of one document (see the module docstring); an empty document has none."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    seq = [prefix_token, *tokens]  # seq[i] is the input that predicts tokens[i]
    windows = []
    for start in range(0, len(tokens), max_len):
        end = min(start + max_len, len(tokens))  # targets tokens[start:end]
        first = max(0, end - max_len)  # inputs seq[first:end]: at most max_len, ending before the last target
        windows.append(Window(tuple(seq[first:end]), tuple(tokens[start:end])))
    return windows


@torch.no_grad()
def window_nll(lm: torch.nn.Module, windows: list[Window], batch_size: int = 8) -> tuple[float, int]:
    """(sum of NLL in nats, number of scored tokens) of ``windows`` under ``lm`` (token ids (B, S) -> logits
    (B, S, V)). Windows of one length are batched together; the sum is accumulated in float64."""
    device = next(lm.parameters()).device
    total, count = 0.0, 0
    by_length: dict[int, list[Window]] = {}
    for w in windows:
        by_length.setdefault(len(w.inputs), []).append(w)
    for length, group in by_length.items():
        for i in range(0, len(group), batch_size):
            batch = group[i:i + batch_size]
            inputs = torch.tensor([w.inputs for w in batch], device=device)
            logprobs = F.log_softmax(lm(inputs).double(), dim=-1)  # (B, S, V)
            for row, w in zip(logprobs, batch):
                scored = row[length - len(w.targets):]  # the outputs that predict the targets
                targets = torch.tensor(w.targets, device=device)
                total -= scored.gather(-1, targets[:, None]).sum().item()
                count += len(w.targets)
    return total, count


def perplexity(nll: float, tokens: int) -> float:
    """exp(total NLL / total tokens); NaN when nothing was scored."""
    return math.exp(nll / tokens) if tokens else float("nan")
