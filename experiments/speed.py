"""The speed experiment (``experiment=speed``, the paper's Figure 9 and training throughput): one job measures one
model with one of three measurements (``speed.measure``), on random weights and tokens (speed does not depend on
what a model has learned):

* ``generation``: batch 1, a ``prefill``-token prompt in one call, then greedy decoding through ``step()`` (the
  recurrent state, or Llama's KV cache) up to the longest of ``lengths``; the time to reach each length
  (Figure 9 left: linear in length for the recurrent models, quadratic for attention with a cache);
* ``decoding``: per batch size, a ``decode_prefill``-token prompt, then ``decode_tokens`` tokens; throughput = batch x
  decode_tokens / decoding time (Figure 9 right);
* ``training``: full optimizer steps (forward, cross-entropy, backward, AdamW) at each context of ``contexts`` with
  ``train_tokens`` tokens per step; tokens/s per context (flat for the linear-time models).

Every point records its time, the decoding state's size (the KV cache grows with the length, a recurrent state does
not) and, on a GPU, peak memory; a point that runs out of memory is recorded as ``oom`` and the sweep goes on.
"""
from __future__ import annotations

import logging
import statistics
import time
from typing import Any

import torch

log = logging.getLogger("experiments.speed")
MEASURES = ("generation", "decoding", "training")


def state_bytes(state: Any) -> int:
    """Bytes held by a decoding state (any nesting of tuples, lists, dicts and tensors)."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    if isinstance(state, (tuple, list)):
        return sum(state_bytes(s) for s in state)
    if isinstance(state, dict):
        return sum(state_bytes(s) for s in state.values())
    return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mb(device: torch.device) -> float | None:
    """Peak allocated GPU memory since the last reset; None on a CPU (no allocator statistics)."""
    return torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None


def _oom(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or (isinstance(err, RuntimeError) and
                                                            "out of memory" in str(err).lower())


@torch.no_grad()
def generation_times(model, vocab: int, prefill: int, lengths: list[int], device: torch.device,
                     generator: torch.Generator) -> list[dict]:
    """Seconds from the start of the prompt to each generated length (batch 1, greedy)."""
    prompt = torch.randint(0, vocab, (1, prefill), generator=generator).to(device)
    marks, points = sorted(lengths), []
    _reset_peak(device)
    _sync(device)
    start = time.perf_counter()
    logits, state = model.step(prompt, None)
    for generated in range(1, marks[-1] + 1):
        token = logits[:, -1:].argmax(-1)
        logits, state = model.step(token, state)
        if generated in marks:
            _sync(device)
            points.append({"length": generated, "seconds": time.perf_counter() - start,
                           "state_mb": state_bytes(state) / 2**20, "peak_mb": _peak_mb(device), "status": "ok"})
    return points


@torch.no_grad()
def decoding_throughput(model, vocab: int, prefill: int, batch: int, tokens: int, device: torch.device,
                        generator: torch.Generator) -> dict:
    """Tokens per second of decoding ``tokens`` tokens at ``batch`` after a ``prefill``-token prompt."""
    prompt = torch.randint(0, vocab, (batch, prefill), generator=generator).to(device)
    _reset_peak(device)
    logits, state = model.step(prompt, None)
    _sync(device)
    start = time.perf_counter()
    for _ in range(tokens):
        logits, state = model.step(logits[:, -1:].argmax(-1), state)
    _sync(device)
    seconds = time.perf_counter() - start
    return {"batch": batch, "seconds": seconds, "tokens_per_s": batch * tokens / seconds,
            "state_mb": state_bytes(state) / 2**20, "peak_mb": _peak_mb(device), "status": "ok"}


def training_throughput(network, vocab: int, context: int, batch: int, steps: int, dtype: torch.dtype) -> dict:
    from .bench.lm import median_step_seconds

    device = next(network.parameters()).device
    _reset_peak(device)
    seconds = median_step_seconds(network, vocab, batch, context, steps, dtype)
    return {"context": context, "batch": batch, "step_s": seconds, "tokens_per_s": batch * context / seconds,
            "peak_mb": _peak_mb(device), "status": "ok"}


def _guarded(what: dict, fn) -> list[dict]:
    """Run one point; out of memory becomes a recorded ``oom`` point."""
    try:
        out = fn()
        return out if isinstance(out, list) else [out]
    except Exception as err:  # noqa: BLE001 (only OOM is caught below; everything else re-raises)
        if not _oom(err):
            raise
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        log.warning(f"out of memory at {what}")
        return [{**what, "status": "oom"}]


def measure(cfg, network, device: torch.device) -> list[dict]:
    """The points of one job: ``network`` is the task network (a language model with ``step``)."""
    s = cfg.speed
    vocab = cfg.model.vocab_size
    generator = torch.Generator().manual_seed(cfg.seed)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[s.precision]
    if s.measure == "training":
        network.train()
        return [p for context in s.contexts for p in _guarded(
            {"context": context}, lambda c=context: training_throughput(
                network, vocab, c, max(1, s.train_tokens // c), s.train_steps, dtype))]
    model = network.to(dtype).eval()
    if s.measure == "generation":
        runs = [_guarded({"length": max(s.lengths)}, lambda: generation_times(
            model, vocab, s.prefill, list(s.lengths), device, generator)) for _ in range(s.reps)]
        failed = [run for run in runs if any(p["status"] == "oom" for p in run)]
        if failed:  # an out-of-memory repetition stands for the point
            return failed[0]
        # the median over repetitions, per length
        return [{**run_points[0], "seconds": statistics.median(p["seconds"] for p in run_points)}
                for run_points in zip(*runs)]
    points = []
    for batch in s.batch_sizes:
        reps = [_guarded({"batch": batch}, lambda b=batch: decoding_throughput(
            model, vocab, s.decode_prefill, b, s.decode_tokens, device, generator))[0] for _ in range(s.reps)]
        failed = [p for p in reps if p["status"] == "oom"]
        points.append(failed[0] if failed else sorted(reps, key=lambda p: p["seconds"])[len(reps) // 2])  # median
    return points
