"""The callbacks' own logic: which commits trained a checkpoint's weights, and the progress line."""
from __future__ import annotations

import logging
from types import SimpleNamespace

from experiments.callbacks import ProgressLog, TrainingProvenance


def _trainer(step: int, total: int = 100, loss: float | None = None):
    return SimpleNamespace(global_step=step, max_steps=total,
                           callback_metrics={} if loss is None else {"train/loss": loss})


def test_a_run_resumed_at_another_commit_lists_both_with_their_steps():
    first = TrainingProvenance("aaa", False)
    first.on_train_start(_trainer(0), None)
    checkpoint: dict = {}
    first.on_save_checkpoint(_trainer(40), None, checkpoint)
    assert checkpoint["training_segments"] == [{"commit": "aaa", "dirty": False, "start_step": 0, "end_step": 40}]

    resumed = TrainingProvenance("bbb", True)  # a later commit, with local changes
    resumed.on_load_checkpoint(_trainer(40), None, checkpoint)
    resumed.on_train_start(_trainer(40), None)
    assert resumed.trained(_trainer(100)) == [
        {"commit": "aaa", "dirty": False, "start_step": 0, "end_step": 40},
        {"commit": "bbb", "dirty": True, "start_step": 40, "end_step": 100}]

    same = TrainingProvenance("aaa", False)  # resumed at the same commit: one segment
    same.on_load_checkpoint(_trainer(40), None, checkpoint)
    same.on_train_start(_trainer(40), None)
    assert same.trained(_trainer(100)) == [{"commit": "aaa", "dirty": False, "start_step": 0, "end_step": 100}]

    # resumed from weights that had finished: the new commit trained nothing and is not listed
    finished = TrainingProvenance("ccc", False)
    finished.on_load_checkpoint(_trainer(100), None, {"training_segments": same.trained(_trainer(100))})
    finished.on_train_start(_trainer(100), None)
    assert [s["commit"] for s in finished.trained(_trainer(100))] == ["aaa"]


def test_progress_line_says_step_loss_rate_and_time_left(caplog):
    progress = ProgressLog("point", interval_s=0.0)
    progress.on_train_start(_trainer(0), None)
    with caplog.at_level(logging.INFO, logger="experiments.train"):
        progress.on_train_batch_end(_trainer(25, loss=0.5), None)
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("point: step 25/100 (25%), loss 0.5000, ") and "steps/s" in line and "min left" in line
