"""Checkpoints, resume after a kill, SIGTERM and SLURM requeue, reruns after deleting a record, unwritable folders,
corrupt files, NaN handling, DDP and wandb offline."""
from __future__ import annotations

import json
import math
import os
import signal
import stat
import threading
import time
from pathlib import Path

import pytest
import torch

import xlstm
from experiments.config import SuiteError
from experiments.train import PREEMPTED_EXIT, run
from xlstm.baselines.lstm import LSTM

from .helpers import cli, compose_cfg, popen, records, runs_dir

# A parity run that takes several seconds on 2 cores, checkpointing every 10 steps.
RESUMABLE = ["model=lstm", "model.embedding_dim=32", "model.dropout=0.1", "model.num_blocks=2", "task=parity",
             "task.batch_size=64", "task.eval_samples_per_length=16", "task.eval_length_step=72",
             "trainer.max_steps=200", "trainer.val_check_interval=100", "trainer.checkpoint_every_n_steps=10",
             "optim.lr=1e-2"]
QUICK = ["trainer.max_steps=6", "trainer.val_check_interval=6", "task.eval_samples_per_length=4",
         "task.eval_length_step=12"]


def _wait_for(predicate, proc, timeout: float = 120.0) -> None:
    end = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, "the run ended before it could be stopped:\n" + proc.stderr.read()[-2000:]
        assert time.time() < end, "timed out waiting"
        time.sleep(0.01)


class _Lines:
    """Collects a background process's stdout lines (where the suite logs) while the test waits."""

    def __init__(self, proc):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=lambda: self.lines.extend(iter(proc.stdout.readline, "")), daemon=True)
        self.thread.start()

    def text(self) -> str:
        self.thread.join(timeout=120)
        return "".join(self.lines)


def _training_started(lines: _Lines) -> bool:
    return any("steps/s" in line for line in list(lines.lines))


def _ckpt_dir(tmp: Path) -> Path:
    (point,) = (tmp / "ckpt" / "adhoc" / "smoke").iterdir()
    return point


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The RESUMABLE point trained without interruption."""
    tmp = tmp_path_factory.mktemp("reference")
    straight = cli(tmp, *RESUMABLE)
    assert straight.returncode == 0, straight.stderr[-2000:]
    (record,) = records(tmp)
    return record


def test_resume_after_kill_gives_identical_metrics(tmp_path, reference):
    proc = popen(tmp_path, *RESUMABLE)
    ckpt = tmp_path / "ckpt" / "adhoc" / "smoke" / reference["run_id"] / "last.ckpt"
    _wait_for(ckpt.exists, proc)
    time.sleep(0.3)  # let the checkpoint write finish, then kill hard mid-run
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert records(tmp_path) == [], "the killed run must not have finished"
    step = torch.load(ckpt, weights_only=False, map_location="cpu")["global_step"]
    assert 0 < step < 200

    refused = cli(tmp_path, *RESUMABLE)  # without resume=true the checkpoint is neither used nor overwritten
    assert refused.returncode == 1 and "resume=true" in refused.stdout + refused.stderr
    assert ckpt.exists()

    resumed = cli(tmp_path, *RESUMABLE, "resume=true")  # the killed process's lock is stale: taken over
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (record,) = records(tmp_path)
    assert record["run_id"] == reference["run_id"] and record["steps"] == 200
    assert record["metrics"] == reference["metrics"]  # identical, not merely close
    assert [(s["start_step"], s["end_step"]) for s in record["training"]] == [(0, 200)]  # one commit trained it
    assert not ckpt.exists() and Path(record["checkpoint"]).name == "final.ckpt"


def test_sigterm_saves_a_checkpoint_exits_nonzero_and_resumes_to_the_same_result(tmp_path, reference):
    # no periodic checkpoint; a progress line every step shows when training is under way
    args = [*RESUMABLE, "trainer.checkpoint_every_n_steps=1000", "trainer.progress_interval_s=0.001"]
    proc = popen(tmp_path, *args)
    lines = _Lines(proc)
    _wait_for(lambda: _training_started(lines), proc)
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    proc.wait(timeout=120)
    out = lines.text()
    assert proc.returncode == PREEMPTED_EXIT, (out + err)[-2000:]
    last = tmp_path / "ckpt" / "adhoc" / "smoke" / reference["run_id"] / "last.ckpt"
    assert f"checkpoint saved at {last}" in out + err and "resume=true" in out + err
    assert records(tmp_path) == []
    assert 0 < torch.load(last, weights_only=False, map_location="cpu")["global_step"] < 200
    assert not list(runs_dir(tmp_path).glob("*.lock"))  # the point is free again

    resumed = cli(tmp_path, *args, "resume=true")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    (record,) = records(tmp_path)
    assert record["steps"] == 200 and record["metrics"] == reference["metrics"]


def test_sigterm_on_slurm_requeues_the_job_and_the_requeued_job_resumes(tmp_path):
    calls = tmp_path / "scontrol_calls"
    fake = tmp_path / "bin" / "scontrol"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {"PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}", "SLURM_JOB_ID": "4242"}
    args = [*RESUMABLE, "trainer.checkpoint_every_n_steps=5"]
    proc = popen(tmp_path, *args, env=env)
    _wait_for(lambda: any(tmp_path.glob("ckpt/adhoc/smoke/*/last.ckpt")), proc)
    proc.send_signal(signal.SIGUSR1)  # SLURM's early warning (--signal=USR1@90): handled like SIGTERM
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == PREEMPTED_EXIT, err[-2000:]
    assert calls.read_text().split() == ["requeue", "4242"]
    # the requeued job runs the same command: it resumes by itself
    again = cli(tmp_path, *args, env={**env, "SLURM_RESTART_COUNT": "1"})
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from" in again.stdout + again.stderr and records(tmp_path)[0]["steps"] == 200


def test_deleting_a_record_reruns_the_point_from_scratch(tmp_path):
    first = cli(tmp_path, *QUICK)
    assert first.returncode == 0, first.stderr[-2000:]
    (record,) = records(tmp_path)
    final = Path(record["checkpoint"])
    assert final.exists() and not (final.parent / "last.ckpt").exists()
    (runs_dir(tmp_path) / f"{record['run_id']}.json").unlink()
    again = cli(tmp_path, *QUICK)  # as documented: no resume=true needed, nothing refused
    assert again.returncode == 0, again.stderr[-2000:]
    (rerun,) = records(tmp_path)
    assert rerun["run_id"] == record["run_id"] and rerun["steps"] == 6 and "resuming" not in again.stderr
    assert [(s["start_step"], s["end_step"]) for s in rerun["training"]] == [(0, 6)]
    assert rerun["metrics"] == record["metrics"]  # trained again from scratch, deterministically


@pytest.mark.parametrize("key", ["results_dir", "checkpoint_dir"])
def test_an_unwritable_folder_is_found_before_training(tmp_path, key):
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where a folder should be")
    proc = cli(tmp_path, *QUICK, f"paths.{key}={blocker}/sub", "trainer.max_steps=100000")
    assert proc.returncode == 1
    line = [ln for ln in proc.stderr.splitlines() + proc.stdout.splitlines() if f"paths.{key}" in ln]
    assert line and "cannot write" in line[0] and "run " not in proc.stdout + proc.stderr  # never started


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated"])
def test_a_corrupt_checkpoint_with_resume_is_one_line(tmp_path, content):
    cfg = compose_cfg(tmp_path, *QUICK, "resume=true")
    probe = cli(tmp_path / "probe", *QUICK)  # learn the point's id
    (rid,) = [r["run_id"] for r in records(tmp_path / "probe")]
    ckpt = tmp_path / "ckpt" / "adhoc" / "smoke" / rid / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(content)
    with pytest.raises(SuiteError) as err:
        run(cfg)
    assert "\n" not in str(err.value) and f"cannot resume from {ckpt}" in str(err.value)
    assert probe.returncode == 0


def test_a_corrupt_record_in_a_grid_rerun_is_one_line_and_the_sweep_goes_on(tmp_path):
    args = ["experiment=formal_languages", "scale=smoke", "model=lstm", "task=parity", "seed=0,1", *QUICK]
    assert cli(tmp_path, *args).returncode == 0
    runs = runs_dir(tmp_path, "formal_languages")
    first, second = sorted(runs.glob("*.json"))
    first.write_text("{ truncated")
    second.unlink()
    rerun = cli(tmp_path, *args)
    assert rerun.returncode == 1
    assert f"corrupt record {first}" in rerun.stdout + rerun.stderr
    assert second.exists()  # the other point of the sweep ran
    assert "Traceback" not in rerun.stdout + rerun.stderr


def test_progress_lines_without_a_terminal(tmp_path):
    proc = cli(tmp_path, *QUICK, "trainer.progress_interval_s=0.001")
    assert proc.returncode == 0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "step " in ln and "steps/s" in ln]
    assert lines and "step 6/6 (100%)" in lines[-1]


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
    spec = xlstm.MODELS["lstm"]
    monkeypatch.setitem(xlstm.MODELS, "lstm", type(spec)(_NaNAfter, spec.label, spec.family, spec.defaults))
    _NaNAfter.calls = 0
    cfg = compose_cfg(tmp_path, "model=lstm", "trainer.max_steps=50", "trainer.checkpoint_every_n_steps=5",
                      "task.batch_size=8")
    with pytest.raises(SuiteError) as err:
        run(cfg)
    message = str(err.value)
    assert "\n" not in message and "nan" in message.lower() and "lower optim.lr" in message
    ckpt = _ckpt_dir(tmp_path) / "last.ckpt"
    assert str(ckpt) in message
    state = torch.load(ckpt, weights_only=False, map_location="cpu")
    assert state["global_step"] == 5
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values())
    (record,) = records(tmp_path)
    assert record["status"] == "diverged" and record["steps"] == 7


def test_ddp_two_cpu_processes_train_one_smoke_point(tmp_path):
    proc = cli(tmp_path, "experiment=formal_languages", "scale=smoke", "model=lstm", "task=parity", "trainer=ddp",
               "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = records(tmp_path, "formal_languages")
    assert record["status"] == "finished" and record["config"]["trainer"]["devices"] == 2
    assert record["metrics"]["test"]["acc"] >= 0


def test_wandb_offline_logger_does_not_hang(tmp_path):
    proc = cli(tmp_path, "logger=wandb", "trainer.max_steps=4", "trainer.val_check_interval=2",
               "task.eval_samples_per_length=4", "task.eval_length_step=108", env={"WANDB_MODE": "offline"},
               timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = records(tmp_path)
    assert record["config"]["logger"]["mode"] == "offline"
    assert list((tmp_path / "out" / "wandb").glob("offline-run-*"))


def test_the_multirun_kill_keeps_finished_records_and_rerun_skips_them(tmp_path):
    args = ["experiment=formal_languages", "scale=smoke", "model=lstm", "task=parity", "seed=0,1,2",
            "trainer.max_steps=150", "task.batch_size=64"]
    proc = popen(tmp_path, *args)
    runs = runs_dir(tmp_path, "formal_languages")
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


def test_records_call_a_checkout_dirty_for_code_changes_not_for_rebuilt_results(tmp_path):
    import subprocess

    from experiments.results import git_commit

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.md").write_text("old\n")
    (tmp_path / "model.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    assert git_commit(tmp_path)[1] is False
    (tmp_path / "results" / "table.md").write_text("rebuilt by a grid\n")
    (tmp_path / "new_untracked.txt").write_text("")
    assert git_commit(tmp_path)[1] is False
    (tmp_path / "model.py").write_text("x = 2\n")
    assert git_commit(tmp_path)[1] is True
