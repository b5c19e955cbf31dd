"""The command line: Hydra's own flags work through the suite's pre-checks, and bad input ends in one line."""
from __future__ import annotations

import subprocess
import sys

import pytest

from .helpers import ROOT, cli, records, tmp_paths


def _train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("flags", [["--cfg", "job"], ["--cfg=job"], ["-c", "job"], ["--cfg", "job", "--resolve"],
                                   ["--cfg", "job", "experiment=formal_languages", "model=xlstm_1_1"]])
def test_cfg_prints_the_job_config_and_starts_nothing(flags):
    proc = _train(*flags)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("model:") and "\ntask:" in proc.stdout and "runs (" not in proc.stdout


def test_cfg_hydra_info_help_behave_as_hydra_documents():
    assert "hydra:" in _train("--cfg", "hydra").stdout
    assert "Config search path" in _train("--info").stdout
    assert "Configuration groups" in _train("--help").stdout and "== Flags ==" in _train("--hydra-help").stdout
    both = _train("-m", "--cfg", "job")
    assert both.returncode == 2 and both.stderr.count("\n") == 1 and "only one of" in both.stderr


def test_multirun_flag_runs_a_sweep_and_says_what_it_starts(tmp_path):
    proc = _train("-m", *tmp_paths(tmp_path), f"hydra.sweep.dir={tmp_path}/hydra", "seed=0,1", "trainer.max_steps=2",
                  "trainer.val_check_interval=2", "task.eval_samples_per_length=2", "task.eval_length_step=200")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ad-hoc, scale smoke: 2 runs (seed x 2)" in proc.stdout and len(records(tmp_path)) == 2


@pytest.mark.parametrize("args, expected", [
    (["+trainer.max_stepz=3"], "unknown key trainer.max_stepz"),
    (["model=nope"], "unknown model 'nope'"),
    (["task.batch_size=0"], "task.batch_size must be >= 1"),
    (["experiment=formal_languages", "scale=paper"], "scale.allow_cpu=true"),
])
def test_bad_input_is_one_line_and_exit_2(args, expected):
    proc = _train(*args)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr


def test_a_model_too_large_for_the_machine_is_refused_before_allocating(tmp_path):
    proc = cli(tmp_path, "model.embedding_dim=100000")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "GiB" in out and "lower model.embedding_dim" in out and "Traceback" not in out
    line = next(ln for ln in out.splitlines() if "does not fit" in ln)
    assert "160,002.2M parameters" in line and "available RAM" in line
