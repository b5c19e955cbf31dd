"""Lightning callbacks of the suite."""
from __future__ import annotations

import logging
import os
import random
import time
from typing import Any

import lightning as L
import numpy as np
import torch

_log = logging.getLogger("experiments.train")


class RNGStateCheckpoint(L.Callback):
    """Saves and restores the Python, NumPy and torch RNG states with each checkpoint, so a resumed run draws the
    same dropout masks as an uninterrupted one (data batches are already a function of the step)."""

    def on_save_checkpoint(self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        name, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["rng_states"] = {  # tensors and builtins only, so the checkpoint loads with weights_only=True
            "python": random.getstate(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def on_load_checkpoint(self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if not states:
            return
        random.setstate(states["python"])
        name, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(states["torch"])
        if states["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


class TrainingProvenance(L.Callback):
    """Keeps, in every checkpoint, which commits trained the weights and over which steps, so a run resumed at
    another commit says so in its record ("training": [{commit, dirty, start_step, end_step}, ...]) and old weights
    are never passed off as the current commit's."""

    def __init__(self, commit: str, dirty: bool):
        self.commit, self.dirty = commit, dirty
        self.segments: list[dict] = []

    def on_load_checkpoint(self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self.segments = [dict(s) for s in checkpoint.get("training_segments", [])]

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        step = trainer.global_step
        last = self.segments[-1] if self.segments else None
        if not (last and last["commit"] == self.commit and last["dirty"] == self.dirty and last["end_step"] == step):
            self.segments.append({"commit": self.commit, "dirty": self.dirty, "start_step": step, "end_step": step})

    def _update(self, trainer: L.Trainer) -> None:
        if self.segments:
            self.segments[-1]["end_step"] = trainer.global_step

    def on_save_checkpoint(self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._update(trainer)
        checkpoint["training_segments"] = [dict(s) for s in self.segments]

    def trained(self, trainer: L.Trainer) -> list[dict]:
        """The segments that trained at least one step."""
        self._update(trainer)
        return [dict(s) for s in self.segments if s["end_step"] > s["start_step"]]


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM (SLURM preemption, ``timeout``, ``kill``), Lightning stops the loop with a ``SIGTERMException``
    (an exit with status 0 by itself); this writes the checkpoint the run resumes from before the exception leaves
    ``fit``. In DDP every rank gets the exception and takes part in the save."""

    def __init__(self, path: str):
        self.path = path

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path, weights_only=False)


class ProgressLog(L.Callback):
    """A log line every ``interval_s`` seconds of training (and at the last step), for runs without a progress bar
    (stdout not a terminal: batch jobs, CI, ``| tee``)."""

    def __init__(self, name: str, interval_s: float):
        self.name, self.interval_s = name, interval_s
        self._start = self._last = 0.0
        self._first_step = 0

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = self._last = time.time()
        self._first_step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, *args: Any) -> None:
        now, step, total = time.time(), trainer.global_step, trainer.max_steps
        if now - self._last < self.interval_s and step < total:
            return
        self._last = now
        rate = (step - self._first_step) / max(now - self._start, 1e-9)
        eta = (total - step) / rate if rate > 0 else float("nan")
        loss = trainer.callback_metrics.get("train/loss")
        loss_text = f", loss {float(loss):.4f}" if loss is not None else ""
        _log.info(f"{self.name}: step {step}/{total} ({100 * step / total:.0f}%){loss_text}, "
                      f"{rate:.2f} steps/s, {eta / 60:.1f} min left")


def cuda_in_use() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def resident_mb() -> float:
    """This process's resident set size now (Linux /proc; elsewhere the process's peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TrainingLog(L.Callback):
    """What a record says about how the run trained: tokens seen (input tokens of every step's global batch,
    padding included), training tokens/s (time in training steps only, validation excluded), peak memory of rank 0
    during this run (on a GPU the peak CUDA memory torch allocated; on a CPU the largest resident set size seen at
    the end of a training step) and the validation curve (step, tokens seen, validation metrics without the
    per-length ones). Kept in checkpoints, so a resumed run reports the whole run."""

    def __init__(self):
        self.tokens, self.train_seconds, self.curve = 0, 0.0, []
        self._t0, self._peak_rss = 0.0, 0.0

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if cuda_in_use():
            torch.cuda.reset_peak_memory_stats()

    def state_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "train_seconds": self.train_seconds, "curve": list(self.curve)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tokens, self.train_seconds = state["tokens"], state["train_seconds"]
        self.curve = list(state["curve"])

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, *args: Any) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any,
                           *args: Any) -> None:
        if cuda_in_use():
            torch.cuda.synchronize()
        self.train_seconds += time.perf_counter() - self._t0
        self.tokens += batch["tokens"].numel() * trainer.world_size  # every rank reads an equal share
        self._peak_rss = max(self._peak_rss, resident_mb())

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val" not in getattr(module, "final_metrics", {}):
            return
        values = {k: round(v, 6) for k, v in module.final_metrics["val"].items() if "@" not in k}
        point = {"step": trainer.global_step, "tokens": self.tokens, **values}
        if not self.curve or self.curve[-1]["step"] != point["step"]:
            self.curve.append(point)

    def summary(self) -> dict[str, Any]:
        rate = self.tokens / self.train_seconds if self.train_seconds > 0 else 0.0
        cuda = cuda_in_use()
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else self._peak_rss
        return {"tokens_seen": self.tokens, "train_seconds": round(self.train_seconds, 2),
                "tokens_per_s": round(rate, 1), "peak_memory_mb": round(peak, 1),
                "peak_memory_kind": "cuda_allocated" if cuda else "cpu_rss"}
