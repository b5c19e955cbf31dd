"""Several processes on one grid: each point is claimed by one process through an exclusive lock file; a point
held by a live process is skipped with one line, a stale lock (its holder killed) is taken over."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import locks
from experiments.locks import PointLock
from experiments.train import run

from .helpers import ROOT, compose_cfg, records, runs_dir

QUICK = ["trainer.max_steps=4", "trainer.val_check_interval=4", "task.eval_samples_per_length=4",
         "task.eval_length_step=12"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(path: Path, pid: int, host: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "since": "earlier"}))


def test_a_lock_is_exclusive_and_released(tmp_path):
    path = tmp_path / "runs" / "p.lock"
    first, second = PointLock(path), PointLock(path)
    assert first.acquire() is None and path.exists()
    holder = second.acquire()
    assert holder is not None and holder.pid == os.getpid()
    first.release()
    assert not path.exists()
    assert second.acquire() is None
    second.release()


def test_stale_locks_are_taken_over(tmp_path, monkeypatch):
    path = tmp_path / "p.lock"
    _write_lock(path, _dead_pid())  # its holder died on this host
    lock = PointLock(path)
    assert lock.acquire() is None and json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()

    _write_lock(path, 1, host="another-node")  # a holder on another host: stale only once its heartbeat stops
    assert PointLock(path).acquire() is not None
    old = time.time() - locks.STALE_AFTER_S - 1
    os.utime(path, (old, old))
    lock = PointLock(path)
    assert lock.acquire() is None
    lock.release()


def test_the_holder_keeps_its_lock_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr(locks, "HEARTBEAT_S", 0.05)
    path = tmp_path / "p.lock"
    lock = PointLock(path)
    assert lock.acquire() is None
    old = time.time() - 1000
    os.utime(path, (old, old))
    time.sleep(0.3)
    assert time.time() - path.stat().st_mtime < 5
    lock.release()


def test_a_point_held_by_a_live_process_is_skipped_in_one_line(tmp_path, caplog):
    cfg = compose_cfg(tmp_path, *QUICK)
    probe = compose_cfg(tmp_path / "probe", *QUICK)
    rid = run(probe)["run_id"]
    lock = runs_dir(tmp_path) / f"{rid}.lock"
    _write_lock(lock, os.getpid())  # this test process holds it
    with caplog.at_level("INFO", logger="experiments.train"):
        assert run(cfg) is None
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skip ")]
    assert f"pid {os.getpid()}" in line and rid in line
    assert records(tmp_path) == [] and lock.exists()  # nothing written, the holder's lock untouched


def test_two_processes_share_a_grid_and_run_every_point_once(tmp_path):
    """Two `experiment=mqar scale=smoke` processes started together on one results folder, each with its own
    (default) output folder and the shared checkpoint folder."""
    command = [sys.executable, "-m", "experiments.train", "experiment=mqar", "scale=smoke",
               f"paths.results_dir={tmp_path}/results", f"paths.checkpoint_dir={tmp_path}/ckpt"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    done = records(tmp_path, "mqar")
    points = {(r["model"], r["config"]["model"]["embedding_dim"]) for r in done}
    assert len(done) == 4 and points == {(m, d) for m in ("xlstm_1_1", "llama") for d in (16, 32)}
    trained = [line for o in outputs for line in o.splitlines() if " - finished " in line]
    skipped = [line for o in outputs for line in o.splitlines() if " - skip " in line]
    assert len(trained) == 4 and len(skipped) == 4, outputs  # each point trained by one, skipped by the other
    assert {line.split(" - finished ")[1].split(":")[0] for line in trained} == {r["run_id"] for r in done}
    assert not list(runs_dir(tmp_path, "mqar").glob("*.lock"))
    folders = sorted(p.name for p in (tmp_path / "outputs" / "mqar").iterdir())
    assert len(folders) == 2, folders  # one output folder per process, never shared
    assert (tmp_path / "results" / "mqar" / "smoke" / "table.md").exists()


def test_the_other_ranks_of_a_slurm_job_follow_their_rank_zero(tmp_path, monkeypatch):
    record, lock = tmp_path / "p.json", tmp_path / "p.lock"
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    _write_lock(lock, os.getpid())
    data = json.loads(lock.read_text())
    lock.write_text(json.dumps({**data, "job": "7"}))  # this job's rank 0 claimed it: train along
    assert locks.follow_rank_zero(record, lock, timeout_s=1)
    lock.write_text(json.dumps({**data, "job": "8"}))  # another job holds it: skip, as rank 0 does
    assert not locks.follow_rank_zero(record, lock, timeout_s=1)
    _write_lock(lock, _dead_pid())  # a stale lock decides nothing: rank 0 is about to take it over
    with pytest.raises(TimeoutError, match="did not claim or skip"):
        locks.follow_rank_zero(record, lock, timeout_s=0.3, poll_s=0.05)
    record.write_text("{}")  # finished: skip
    assert not locks.follow_rank_zero(record, lock, timeout_s=1)
    fresh = PointLock(tmp_path / "q.lock")  # rank 0's own lock names the job
    assert fresh.acquire() is None and json.loads((tmp_path / "q.lock").read_text())["job"] == "7"
    fresh.release()
