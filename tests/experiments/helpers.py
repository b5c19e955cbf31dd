"""Shared helpers for the experiment tests: compose configs into a temporary results/checkpoint area."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from experiments.config import CONFIG_DIR
from experiments.schema import register

ROOT = Path(__file__).resolve().parents[2]


def tmp_paths(tmp: Path) -> list[str]:
    return [f"paths.results_dir={tmp}/results", f"paths.checkpoint_dir={tmp}/ckpt", f"paths.output_dir={tmp}/out"]


def compose_cfg(tmp: Path, *overrides: str, hydra_node: bool = False) -> DictConfig:
    register()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        return compose("train", overrides=[*tmp_paths(tmp), *overrides], return_hydra_config=hydra_node)


def first_grid_point(tmp: Path, experiment: str, scale: str) -> list[str]:
    """The overrides of the first point of an experiment's grid at a scale."""
    cfg = compose_cfg(tmp, f"experiment={experiment}", f"scale={scale}", hydra_node=True)
    params = cfg.hydra.sweeper.params or {}
    return [f"{key}={str(value).split(',')[0]}" for key, value in params.items()]


def grid_points(tmp: Path, experiment: str, scale: str) -> dict[str, list[str]]:
    cfg = compose_cfg(tmp, f"experiment={experiment}", f"scale={scale}", hydra_node=True)
    return {key: str(value).split(",") for key, value in (cfg.hydra.sweeper.params or {}).items()}


def cli(tmp: Path, *args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m experiments.train`` with outputs under ``tmp``."""
    command = [sys.executable, "-m", "experiments.train", *tmp_paths(tmp), f"hydra.run.dir={tmp}/hydra/run",
               f"hydra.sweep.dir={tmp}/hydra/multirun", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def popen(tmp: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """``python -m experiments.train`` in the background, outputs under ``tmp``."""
    command = [sys.executable, "-m", "experiments.train", *tmp_paths(tmp), f"hydra.run.dir={tmp}/hydra/run",
               f"hydra.sweep.dir={tmp}/hydra/multirun", *args]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def runs_dir(tmp: Path, experiment: str = "adhoc", scale: str = "smoke") -> Path:
    return tmp / "results" / experiment / scale / "runs"


def records(tmp: Path, experiment: str = "adhoc", scale: str = "smoke") -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(runs_dir(tmp, experiment, scale).glob("*.json"))]
