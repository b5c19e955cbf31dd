"""Run records: one immutable JSON file per finished (or diverged, or infeasible) run.

Layout: ``results/<experiment>/<scale>/runs/<run_id>.json`` (ad-hoc runs under ``results/adhoc/<scale>/``); the
tables built from them (``experiments.tables``) sit beside ``runs/``, so a smoke run never touches a small-scale
table. A run's id is a readable prefix plus a hash of everything that can change its numbers (model, task, optim,
scale, seed, steps, precision) and nothing that cannot (logger, paths, device count, progress display).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parent.parent

# Config keys that do not change a run's numbers; they stay out of the run id.
NOT_IN_RUN_ID = ("logger", "paths", "resume", "model_settings", "size_settings", "task_settings", "scale.allow_cpu",
                 "trainer.accelerator", "trainer.devices", "trainer.strategy", "trainer.num_nodes",
                 "trainer.log_every_n_steps",
                 "trainer.checkpoint_every_n_steps", "trainer.enable_progress_bar", "trainer.progress_interval_s",
                 "trainer.detect_anomaly", "trainer.activation_checkpointing", "trainer.compile",
                 "trainer.fsdp_sharding", "task.num_workers",
                 "task.vocab_multiple")  # its effect is model.vocab_size, which the task's protocol sets

# Keys every record has; a JSON file under runs/ without them is not a record of this suite.
RECORD_KEYS = ("run_id", "experiment", "status", "task", "model", "scale", "seed", "lr", "steps", "metrics", "config",
               "git_commit")
STATUSES = ("finished", "diverged", "infeasible")


def drop_key(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.get(key, {})
    tree.pop(leaf, None)


def run_id(cfg: DictConfig) -> str:
    """e.g. ``parity__lstm__lr0.001__s0__3fa2c1d0``."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_IN_RUN_ID:
        drop_key(tree, key)
    speed = tree.get("job", "train") == "speed"
    if not speed:  # a training run's id does not depend on the speed settings (ids from before they existed stand)
        tree.pop("job", None)
        tree.pop("speed", None)
    digest = hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:8]
    variant = cfg.get("variant")
    named = f"{cfg.model.name}__{variant.split('/')[-1]}" if variant else cfg.model.name
    if speed:
        return f"speed_{cfg.speed.measure}__{named}__s{cfg.seed}__{digest}"
    return f"{cfg.task.name}__{named}__lr{cfg.optim.lr:g}__s{cfg.seed}__{digest}"


def experiment_dir(results_dir: str | Path, experiment: str | None, scale: str) -> Path:
    """Where an experiment's records (``runs/``) and tables of one scale live."""
    return Path(results_dir) / (experiment or "adhoc") / scale


def record_path(results_dir: str | Path, experiment: str | None, scale: str, rid: str) -> Path:
    return experiment_dir(results_dir, experiment, scale) / "runs" / f"{rid}.json"


def git_commit(root: Path = ROOT) -> tuple[str, bool]:
    """(commit, dirty) of the checkout the suite runs from; ("unknown", False) outside git. Dirty means a tracked
    file outside ``results/`` differs from the commit: a grid that rebuilds its committed table at the end does not
    mark the runs after it (in the same checkout) as run on changed code."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                     ":(exclude)results"], cwd=root, capture_output=True, text=True).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def commit_label() -> str:
    """The checkout's commit as benchmarks and tables print it: 10 hex digits, "+dirty" when the tree was."""
    commit, dirty = git_commit()
    return commit[:10] + ("+dirty" if dirty else "")


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu: {platform.machine()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_record(path: Path, record: dict) -> None:
    """Write once, atomically: a record that exists is never overwritten."""
    if path.exists():
        raise FileExistsError(f"{path} exists; records are immutable (delete it to rerun that point)")
    write_atomic(path, json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")


def make_record(cfg: DictConfig, rid: str, *, status: str, metrics: dict, params: int, steps: int,
                wall_time_s: float, training: list[dict] | None = None, checkpoint: str | None = None,
                error: str | None = None, throughput: dict | None = None, curve: list[dict] | None = None) -> dict:
    """``cfg`` is the resolved run config (the task's protocol applied), so ``lr`` and ``max_steps`` are what ran.
    ``training`` lists the commits that trained the weights, with their step ranges (a resumed run can span two);
    ``throughput`` has tokens seen, training tokens/s and peak memory, ``curve`` the validation metrics per step."""
    from xlstm import paper_label

    commit, dirty = git_commit()
    return {
        "run_id": rid, "experiment": cfg.experiment, "status": status, "error": error,
        "task": cfg.task.name, "model": cfg.model.name, "model_label": paper_label(cfg.model.name),
        "scale": cfg.scale.name, "seed": cfg.seed, "lr": cfg.optim.lr, "steps": steps,
        "max_steps": cfg.trainer.max_steps, "params": params, "metrics": metrics,
        "wall_time_s": round(wall_time_s, 2), "hardware": hardware(), "git_commit": commit, "git_dirty": dirty,
        "training": training or [], "checkpoint": checkpoint, "throughput": throughput or {},
        "curve": curve or [],
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def load_record(path: Path) -> dict:
    """A record, checked: one ValueError line naming the file when it is corrupt or not a record of this suite.
    Records written before the registry keys were the option names ("xlstm[1:1]") read with today's key."""
    from xlstm import canonical_name

    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"corrupt record {path}: {err}; delete it and rerun that point") from None
    missing = [k for k in RECORD_KEYS if not isinstance(record, dict) or k not in record]
    if missing:
        raise ValueError(f"{path} is not a run record of this suite (missing {', '.join(missing)}); move it out of "
                         f"{Path(path).parent}")
    if record["status"] not in STATUSES:
        raise ValueError(f"{path}: unknown status {record['status']!r} (valid: {', '.join(STATUSES)})")
    try:
        record["model"] = canonical_name(record["model"])
    except ValueError:
        pass  # a model no longer registered keeps its name
    return record


def load_records(results_dir: str | Path, experiment: str, scale: str) -> list[dict]:
    runs = experiment_dir(results_dir, experiment, scale) / "runs"
    return [load_record(path) for path in sorted(runs.glob("*.json"))]


def scales_with_records(results_dir: str | Path, experiment: str) -> list[str]:
    base = Path(results_dir) / experiment
    return sorted(p.parent.name for p in base.glob("*/runs") if any(p.glob("*.json")))


def finite(value: Any) -> float:
    """A metric as a float, NaN when missing or not finite (a NaN/Inf score counts as diverged, never as a score)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value if math.isfinite(value) else math.nan


def launched_as_rank_zero() -> bool:
    """False in the extra processes of a distributed run (Lightning's DDP children, SLURM tasks > 0)."""
    return all(os.environ.get(var, "0") == "0" for var in ("LOCAL_RANK", "RANK", "SLURM_PROCID"))
