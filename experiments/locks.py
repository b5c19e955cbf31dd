"""Claims on grid points, so several processes (a SLURM array, two shells) can share one grid.

A point is trained by the one process that holds its lock file ``runs/<run_id>.lock``, created exclusively
(``O_CREAT | O_EXCL``: one creator wins, on a local disk and on NFS v3+). The holder writes its pid and host into it
and touches it every ``HEARTBEAT_S`` seconds while it runs; it removes the file when the run ends, whatever the
outcome. A lock is stale, and is taken over, when its holder is a dead process on this host or when it has not been
touched for ``STALE_AFTER_S`` seconds (a holder on another host that was killed).

Only the global rank 0 of a distributed job claims points. The other ranks of a job whose ranks start as separate
tasks (``srun``) follow its decision (``follow_rank_zero``): they train a point when its lock names their own job.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("experiments.locks")
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    since: str
    job: str | None = None  # the scheduler's job id (SLURM), so the job's other ranks recognise their rank 0

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}" + (f" (job {self.job})" if self.job else "")


def current_job() -> str | None:
    """This process's SLURM job (array jobs: <array job>_<task>), None outside SLURM."""
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID")


def _read_holder(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text())
        return Holder(int(data["pid"]), str(data["host"]), str(data["since"]), data.get("job"))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # gone, or being written this instant


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_stale(path: Path, holder: Holder | None, now: float | None = None) -> bool:
    try:
        age = (now or time.time()) - path.stat().st_mtime
    except FileNotFoundError:
        return True
    if holder is not None and holder.host == socket.gethostname() and not _alive(holder.pid):
        return True
    return age > STALE_AFTER_S


class PointLock:
    """``acquire()`` returns None when this process now holds the point, or the live ``Holder`` that does."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.me = Holder(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%dT%H:%M:%S"), current_job())
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def acquire(self) -> Holder | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = _read_holder(self.path)
                if not is_stale(self.path, holder):
                    return holder or Holder(-1, "unknown", "just now")
                live = self._take_over(holder)
                if live is not None:
                    return live
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(vars(self.me), f)
            self._heartbeat = threading.Thread(target=self._beat, daemon=True, name=f"lock {self.path.name}")
            self._heartbeat.start()
            return None
        return _read_holder(self.path) or Holder(-1, "unknown", "just now")

    def _take_over(self, stale: Holder | None) -> Holder | None:
        """Move a stale lock aside (one rename wins); if what was moved turns out to be a fresh lock that another
        process created meanwhile, put it back and report that process as the holder."""
        aside = self.path.with_name(f"{self.path.name}.stale{os.getpid()}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return None  # another process removed it first; try to create ours
        moved = _read_holder(aside)
        if moved is not None and moved != stale:
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink(missing_ok=True)
            return moved
        aside.unlink(missing_ok=True)
        log.warning(f"took over the stale lock {self.path} ({stale.describe() if stale else 'unreadable'})")
        return None

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
            self._heartbeat = None
            if _read_holder(self.path) == self.me:
                self.path.unlink(missing_ok=True)


def follow_rank_zero(record: Path, lock: Path, timeout_s: float = 600.0, poll_s: float = 0.5) -> bool:
    """For a rank > 0 started as its own task: True when this job's rank 0 holds the point (train it with it),
    False when the point is finished or another job holds it (skip it, as rank 0 does)."""
    job, end = current_job(), time.time() + timeout_s
    while time.time() < end:
        if record.exists():
            return False
        holder = _read_holder(lock)
        if holder is not None and not is_stale(lock, holder):
            return holder.job == job
        time.sleep(poll_s)
    raise TimeoutError(f"rank 0 of job {job} did not claim or skip {record.stem} within {timeout_s:.0f} s")
