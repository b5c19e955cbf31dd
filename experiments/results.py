"""The only writer under results/: one immutable JSON record per finished run, and the tables built from them.

Layout: ``results/<experiment>/runs/<run_id>.json``, ``results/<experiment>/{table.csv, table.md, *.png}``.
A run's id is a readable prefix plus a hash of everything that can change its numbers (model, task, optim, scale,
seed, steps, precision) and nothing that cannot (logger, paths, device count, progress bars). A run whose record
exists is skipped on rerun; tables are rebuilt from all records, deterministically.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

ROOT = Path(__file__).resolve().parent.parent

# Config keys that do not change a run's numbers; they stay out of the run id.
NOT_IN_RUN_ID = ("logger", "paths", "resume", "trainer.accelerator", "trainer.devices", "trainer.strategy",
                 "trainer.num_nodes", "trainer.log_every_n_steps", "trainer.checkpoint_every_n_steps",
                 "trainer.enable_progress_bar", "trainer.detect_anomaly", "task.num_workers")


def _drop(tree: dict, dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        tree = tree.get(key, {})
    tree.pop(leaf, None)


def run_id(cfg: DictConfig) -> str:
    """e.g. ``parity__lstm__lr0.001__s0__3fa2c1d0``."""
    tree = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_IN_RUN_ID:
        _drop(tree, key)
    digest = hashlib.sha256(json.dumps(tree, sort_keys=True).encode()).hexdigest()[:8]
    from xlstm import option_name

    return f"{cfg.task.name}__{option_name(cfg.model.name)}__lr{cfg.optim.lr:g}__s{cfg.seed}__{digest}"


def experiment_dir(results_dir: str | Path, experiment: str | None) -> Path:
    return Path(results_dir) / (experiment or "adhoc")


def record_path(results_dir: str | Path, experiment: str | None, rid: str) -> Path:
    return experiment_dir(results_dir, experiment) / "runs" / f"{rid}.json"


def git_commit() -> tuple[str, bool]:
    """(commit, dirty) of the checkout the suite runs from; ("unknown", False) outside git."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                    capture_output=True, text=True).stdout.strip())
        return commit, dirty
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False


def hardware() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return f"cpu: {platform.machine()} ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def write_record(path: Path, record: dict) -> None:
    """Write once, atomically: a record that exists is never overwritten."""
    if path.exists():
        raise FileExistsError(f"{path} exists; records are immutable (delete it to rerun that point)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def make_record(cfg: DictConfig, rid: str, *, status: str, metrics: dict, params: int, steps: int, max_steps: int,
                lr: float, wall_time_s: float, error: str | None = None) -> dict:
    """``lr`` is the learning rate the optimizer used (optim.lr times the task's factor, if any)."""
    commit, dirty = git_commit()
    return {
        "run_id": rid, "experiment": cfg.experiment, "status": status, "error": error,
        "task": cfg.task.name, "model": cfg.model.name, "scale": cfg.scale.name,
        "seed": cfg.seed, "lr": cfg.optim.lr, "effective_lr": lr, "steps": steps, "max_steps": max_steps,
        "params": params, "metrics": metrics, "wall_time_s": round(wall_time_s, 2),
        "hardware": hardware(), "git_commit": commit, "git_dirty": dirty,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def load_record(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"corrupt record {path}: {err}; delete it and rerun that point") from err


def load_records(results_dir: str | Path, experiment: str) -> list[dict]:
    runs = experiment_dir(results_dir, experiment) / "runs"
    return [load_record(path) for path in sorted(runs.glob("*.json"))]


def rebuild(experiment: str, results_dir: str | Path = ROOT / "results") -> Path:
    """Rebuild table.csv, table.md and the figures of ``experiment`` from its records; returns the folder."""
    from .tables import table_builder

    build = table_builder(experiment)
    out = experiment_dir(results_dir, experiment)
    records = load_records(results_dir, experiment)
    if not records:
        raise ValueError(f"no records under {out / 'runs'}; run `python -m experiments.train experiment={experiment}` first")
    artefact = build(records, ROOT / "results" / "paper")
    out.mkdir(parents=True, exist_ok=True)
    artefact.table.to_csv(out / "table.csv", index=False, float_format="%.4f")
    (out / "table.md").write_text(artefact.markdown)
    for name, draw in artefact.figures.items():
        draw(out / name)
    return out


def launched_as_rank_zero() -> bool:
    """False in the extra processes of a distributed run (Lightning's DDP children, SLURM tasks > 0)."""
    return all(os.environ.get(var, "0") == "0" for var in ("LOCAL_RANK", "RANK", "SLURM_PROCID"))


class RebuildTables(Callback):
    """Hydra callback: rebuild the experiment's table after a multirun (and after a single run)."""

    def _rebuild(self, config: DictConfig) -> None:
        experiment = config.get("experiment")
        if not experiment or not launched_as_rank_zero():
            return
        try:
            out = rebuild(experiment, config.paths.results_dir)
        except ValueError as err:
            print(f"[tables] {err}")
            return
        print(f"[tables] {experiment}: wrote {out / 'table.md'}\n" + (out / "table.md").read_text())

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._rebuild(config)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._rebuild(config)
