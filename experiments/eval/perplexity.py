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

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


PRECISIONS = ("fp32", "bf16", "bf16-mixed")


def place(model: torch.nn.Module, precision: str, device: str | torch.device) -> torch.nn.Module:
    """The model on ``device`` in eval mode: bfloat16 weights for ``bf16``, float32 otherwise (``bf16-mixed`` keeps
    float32 weights and computes under autocast, see ``autocast``). The paper took the best of the three."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    return model.to(torch.device(device), torch.bfloat16 if precision == "bf16" else torch.float32).eval()


def autocast(precision: str, device: str | torch.device):
    if precision == "bf16-mixed":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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


@dataclass(frozen=True)
class WindowScore:
    logprob: float  # sum of log p(target) over the window's targets, in nats
    greedy: bool  # every target is its position's argmax (lm-evaluation-harness's ``is_greedy``)


@torch.no_grad()
def score_windows(lm: torch.nn.Module, windows: list[Window], batch_size: int = 8) -> list[WindowScore]:
    """Score ``windows`` under ``lm`` (token ids (B, S) -> logits (B, S, V)), in input order. Windows go through
    the model longest first, ``batch_size`` at a time, right-padded to the longest of their batch: the models are
    causal, so padding after a window never changes its outputs. Log-probabilities are taken in float64."""
    device = next(lm.parameters()).device
    scores: list[WindowScore | None] = [None] * len(windows)
    order = sorted(range(len(windows)), key=lambda i: -len(windows[i].inputs))
    for first in range(0, len(order), batch_size):
        batch = order[first:first + batch_size]
        width = len(windows[batch[0]].inputs)
        inputs = torch.zeros(len(batch), width, dtype=torch.long)
        for row, i in enumerate(batch):
            inputs[row, :len(windows[i].inputs)] = torch.tensor(windows[i].inputs)
        logprobs = F.log_softmax(lm(inputs.to(device)).double(), dim=-1)  # (B, width, V)
        for row, i in enumerate(batch):
            w = windows[i]
            end = len(w.inputs)
            scored = logprobs[row, end - len(w.targets):end]  # the outputs that predict the targets
            targets = torch.tensor(w.targets, device=device)
            scores[i] = WindowScore(scored.gather(-1, targets[:, None]).sum().item(),
                                    bool((scored.argmax(-1) == targets).all()))
    return scores  # type: ignore[return-value]


def document_nlls(lm: torch.nn.Module, documents: list[list[int]], max_len: int, prefix_token: int,
                  batch_size: int = 8) -> list[tuple[float, int]]:
    """(NLL in nats, scored tokens) of each document (token ids) under ``lm``, in its disjoint rolling windows; the
    windows of all documents are batched together."""
    per_doc = [rolling_windows(tokens, max_len, prefix_token) for tokens in documents]
    scores = iter(score_windows(lm, [w for windows in per_doc for w in windows], batch_size))
    return [(-sum(next(scores).logprob for _ in windows), sum(len(w.targets) for w in windows)) for windows in per_doc]


def perplexity(nll: float, tokens: int) -> float:
    """exp(total NLL / total tokens); NaN when nothing was scored."""
    return math.exp(nll / tokens) if tokens else float("nan")
