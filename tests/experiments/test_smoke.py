"""Every experiment file runs its first smoke point end to end; the main CLI writes records and tables."""
from __future__ import annotations

import json
import shutil

import pytest

from experiments import results
from experiments.config import options
from experiments.tables import rebuild
from experiments.train import run

from .helpers import cli, compose_cfg, first_grid_point


@pytest.mark.parametrize("experiment", options("experiment"))
def test_first_smoke_point_runs_end_to_end(tmp_path, lm_data_dir, experiment):
    point = first_grid_point(tmp_path, experiment, "smoke")
    cfg = compose_cfg(tmp_path, f"experiment={experiment}", "scale=smoke", *point, f"paths.data_dir={lm_data_dir}")
    record = run(cfg)
    assert record["status"] == "finished" and record["params"] > 0 and record["git_commit"]
    if cfg.job == "speed":  # a measurement, not a training run: points instead of steps and splits
        assert record["steps"] == 0 and record["metrics"]["points"]
    else:
        # the steps as resolved (an experiment's task_settings can set them): every one of them ran
        assert record["steps"] == record["max_steps"]
        for split in ("val", "test"):
            assert record["metrics"][split], f"no {split} metrics"
    path = results.record_path(cfg.paths.results_dir, experiment, "smoke", record["run_id"])
    assert json.loads(path.read_text())["metrics"] == record["metrics"]
    # the point is skipped on rerun: the same record comes back and the file is untouched
    mtime = path.stat().st_mtime_ns
    assert run(cfg)["finished_at"] == record["finished_at"] and path.stat().st_mtime_ns == mtime


def test_formal_languages_smoke_cli_writes_records_and_table(tmp_path):
    # the committed small-scale results sit beside it: a smoke run must not touch them
    small = tmp_path / "results" / "formal_languages" / "small"
    shutil.copytree(results.ROOT / "results" / "formal_languages" / "small", small)
    small_before = {p: p.read_bytes() for p in small.rglob("*") if p.is_file()}
    proc = cli(tmp_path, "experiment=formal_languages", "scale=smoke")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "results" / "formal_languages" / "smoke"
    records = sorted((out / "runs").glob("*.json"))
    assert len(records) == 4  # the smoke grid: two models x two tasks
    assert {(json.loads(p.read_text())["model"], json.loads(p.read_text())["task"]) for p in records} == {
        ("xlstm_1_1", "parity"), ("llama", "parity"), ("xlstm_1_1", "reverse_string"), ("llama", "reverse_string")}
    for name in ("table.csv", "table.md", "table.png", "accuracy_by_length.png"):
        assert (out / name).stat().st_size > 0, name
    table = (out / "table.md").read_text()
    assert "| xLSTM[1:1] |" in table and "| Llama |" in table and "smoke scale" in table and "scale: smoke" in table
    assert "Reverse String (DCF)" in table and "(0.06)" in table  # Llama's Figure 12 value beside ours

    # rebuilding from the same records is idempotent, byte for byte
    before = {name: (out / name).read_bytes() for name in ("table.csv", "table.md", "table.png")}
    rebuild("formal_languages", "smoke", tmp_path / "results")
    assert before == {name: (out / name).read_bytes() for name in before}

    assert {p: p.read_bytes() for p in small.rglob("*") if p.is_file()} == small_before

    # a second invocation skips both finished points
    again = cli(tmp_path, "experiment=formal_languages", "scale=smoke")
    assert again.returncode == 0 and again.stdout.count("skip ") + again.stderr.count("skip ") == 4


def test_tables_cli_rebuilds_and_reports_missing_records(tmp_path):
    import subprocess
    import sys

    from .helpers import ROOT

    def tables(*args):
        return subprocess.run([sys.executable, "-m", "experiments.tables", *args, "--results-dir", str(tmp_path)],
                              cwd=ROOT, capture_output=True, text=True)

    proc = tables("formal_languages")
    assert proc.returncode == 2 and "no records" in proc.stderr and proc.stderr.count("\n") == 1
    proc = tables("formal_languages", "--scale", "small")
    assert proc.returncode == 2 and "scale=small" in proc.stderr and proc.stderr.count("\n") == 1
    proc = tables("nope")
    assert proc.returncode == 2 and "formal_languages" in proc.stderr


@pytest.mark.parametrize("model", options("model"))
def test_every_model_trains_in_the_formal_languages_smoke_setting(tmp_path, model):
    cfg = compose_cfg(tmp_path, "experiment=formal_languages", "scale=smoke", f"model={model}", "task=parity",
                      "trainer.max_steps=3", "trainer.val_check_interval=3")
    record = run(cfg)
    assert record["status"] == "finished" and record["steps"] == 3
    assert record["metrics"]["test"]["loss"] == record["metrics"]["test"]["loss"]  # not NaN


def test_a_compiled_smoke_point_trains_as_the_eager_one(tmp_path):
    """model.compile (``trainer.compile=true``: torch.compile per residual block) on a smoke training point with
    both xLSTM block kinds (the first formal-languages point, xLSTM[1:1]): it trains all its steps, writes its
    record, and its last training loss is the eager run's up to float32 reordering (inductor fuses and reorders
    sums: ~1e-6 relative per op; 1e-3 after the smoke steps leaves room for that and none for a wrong gradient)."""
    point = first_grid_point(tmp_path, "formal_languages", "smoke")
    losses = {}
    for compiled in (False, True):
        out = tmp_path / ("compiled" if compiled else "eager")
        cfg = compose_cfg(out, "experiment=formal_languages", "scale=smoke", *point, f"trainer.compile={compiled}")
        record = run(cfg)
        assert record["status"] == "finished" and record["steps"] == record["max_steps"]
        losses[compiled] = record["curve"][-1]["loss"]
    assert record["model"] == "xlstm_1_1"
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)
