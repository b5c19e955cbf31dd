"""Checkpoints, resume after a kill, a killed multirun, NaN handling, DDP and wandb offline."""
from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import xlstm
from experiments import results
from experiments.train import SuiteError, run
from xlstm.baselines.lstm import LSTM

from .helpers import ROOT, cli, compose_cfg, tmp_paths

# A parity run that takes several seconds on 2 cores, checkpointing every 10 steps.
RESUMABLE = ["model=lstm", "model.embedding_dim=32", "model.dropout=0.1", "model.num_blocks=2", "task=parity",
             "task.batch_size=64", "task.eval_samples_per_length=16", "task.eval_length_step=72",
             "trainer.max_steps=200", "trainer.val_check_interval=100", "trainer.checkpoint_every_n_steps=10",
             "optim.lr=1e-2"]


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, "the run ended before it could be killed:\n" + proc.stderr.read()[-2000:]
        assert time.time() < end, "timed out waiting"
        time.sleep(0.01)


def _popen(tmp: Path, *args: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "experiments.train", *tmp_paths(tmp), f"hydra.run.dir={tmp}/hydra/run",
               f"hydra.sweep.dir={tmp}/hydra/multirun", *args]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _records(tmp: Path, experiment: str = "adhoc") -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((tmp / "results" / experiment / "runs").glob("*.json"))]


def test_resume_after_kill_gives_identical_metrics(tmp_path):
    straight = cli(tmp_path / "a", *RESUMABLE)
    assert straight.returncode == 0, straight.stderr[-2000:]
    (reference,) = _records(tmp_path / "a")

    killed = tmp_path / "b"
    proc = _popen(killed, *RESUMABLE)
    ckpt = killed / "ckpt" / "adhoc" / reference["run_id"] / "last.ckpt"
    _wait_for(ckpt.exists, proc)
    time.sleep(0.3)  # let the checkpoint write finish, then kill hard mid-run
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _records(killed) == [], "the killed run must not have finished"
    step = torch.load(ckpt, weights_only=False, map_location="cpu")["global_step"]
    assert 0 < step < 200

    refused = cli(killed, *RESUMABLE)  # without resume=true the checkpoint is neither used nor overwritten
    assert refused.returncode == 1 and "resume=true" in refused.stdout + refused.stderr
    assert ckpt.exists()

    resumed = cli(killed, *RESUMABLE, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (record,) = _records(killed)
    assert record["run_id"] == reference["run_id"] and record["steps"] == 200
    assert record["metrics"] == reference["metrics"]  # identical, not merely close


def test_killed_multirun_keeps_finished_records_and_rerun_skips_them(tmp_path):
    args = ["experiment=formal_languages", "scale=smoke", "model=lstm", "task=parity", "seed=0,1,2", "trainer.max_steps=150",
            "task.batch_size=64"]
    proc = _popen(tmp_path, *args)
    runs = tmp_path / "results" / "formal_languages" / "runs"
    _wait_for(lambda: len(list(runs.glob("*.json"))) >= 1, proc, timeout=300)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    kept = {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}
    assert 1 <= len(kept) < 3
    for name in kept:
        assert json.loads((runs / name).read_text())["status"] == "finished"

    rerun = cli(tmp_path, *args, "resume=true")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert len(list(runs.glob("*.json"))) == 3
    assert {name: (runs / name).stat().st_mtime_ns for name in kept} == kept  # untouched
    assert (rerun.stdout + rerun.stderr).count("skip ") == len(kept)


class _NaNAfter(LSTM):
    """An LSTM whose output turns NaN from the 8th training forward on."""

    calls = 0

    def forward_state(self, x, state=None):
        y, state = super().forward_state(x, state)
        if self.training:
            type(self).calls += 1
            if type(self).calls >= 8:
                y = y * math.nan
        return y, state


def test_nan_loss_stops_with_one_line_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setitem(xlstm.MODELS, "lstm", _NaNAfter)
    _NaNAfter.calls = 0
    cfg = compose_cfg(tmp_path, "model=lstm", "trainer.max_steps=50", "trainer.checkpoint_every_n_steps=5",
                      "task.batch_size=8")
    with pytest.raises(SuiteError) as err:
        run(cfg)
    message = str(err.value)
    assert "\n" not in message and "nan" in message.lower() and "lower optim.lr" in message
    rid = results.run_id(cfg)
    ckpt = tmp_path / "ckpt" / "adhoc" / rid / "last.ckpt"
    assert str(ckpt) in message
    state = torch.load(ckpt, weights_only=False, map_location="cpu")
    assert state["global_step"] == 5
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values())
    record = json.loads(results.record_path(cfg.paths.results_dir, None, rid).read_text())
    assert record["status"] == "diverged" and record["steps"] == 7


def test_ddp_two_cpu_processes_train_one_smoke_point(tmp_path):
    proc = cli(tmp_path, "experiment=formal_languages", "scale=smoke", "model=lstm", "task=parity", "trainer=ddp",
               "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = _records(tmp_path, "formal_languages")
    assert record["status"] == "finished" and record["config"]["trainer"]["devices"] == 2
    assert record["metrics"]["test"]["acc"] >= 0


def test_wandb_offline_logger_does_not_hang(tmp_path):
    proc = cli(tmp_path, "logger=wandb", "trainer.max_steps=4", "trainer.val_check_interval=2",
               "task.eval_samples_per_length=4", "task.eval_length_step=108", env={"WANDB_MODE": "offline"},
               timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = _records(tmp_path)
    assert record["config"]["logger"]["mode"] == "offline"
    assert list((tmp_path / "out" / "wandb").glob("offline-run-*"))
