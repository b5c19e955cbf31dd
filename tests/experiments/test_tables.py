"""Table builders on hand-made run records: learning-rate choice by validation, mean ± std over seeds, the paper's
value beside ours, infeasible and diverged points, and the figures they draw."""
from __future__ import annotations

import numpy as np
import pytest

from experiments.tables.formal_languages import formal_languages
from experiments.tables.mqar import mqar_table
from tests.experiments.helpers import ROOT

PAPER = ROOT / "results" / "paper"


def _record(model, task, lr, seed, val, test, *, status="finished", config=None, by_length=None, steps=10):
    metrics = {"val": {"acc_scaled": val, "acc": val}, "test": {"acc_scaled": test, "acc": test}}
    for length, value in (by_length or {}).items():
        metrics["test"][f"acc_scaled@{length}"] = value
    config = config or {"model": {"name": model}, "task": {"name": task},
                        "optim": {"lr": lr}, "seed": seed, "trainer": {"max_steps": steps}}
    return {"run_id": f"{task}__{model}__{lr}__{seed}__{steps}", "experiment": "formal_languages", "model": model,
            "task": task, "lr": lr, "seed": seed, "status": status, "scale": "small", "steps": steps,
            "hardware": "cpu", "git_commit": "0123456789abcdef", "git_dirty": False, "error": None,
            "metrics": metrics if status == "finished" else {}, "config": config}


def test_formal_table_picks_lr_by_validation_and_reports_test_mean_std_over_seeds(tmp_path):
    records = [
        # lr 1e-2 wins on validation although its test score is lower: the table must not peek at the test set
        _record("llama", "reverse_string", 1e-2, 0, 0.50, 0.20, by_length={40: 0.3, 64: 0.1}),
        _record("llama", "reverse_string", 1e-2, 1, 0.40, 0.30, by_length={40: 0.5, 64: 0.1}),
        _record("llama", "reverse_string", 1e-3, 0, 0.30, 0.90),
        _record("llama", "reverse_string", 1e-3, 1, 0.30, 0.90),
        _record("lstm", "parity", 1e-3, 0, 1.0, 1.0),
        _record("lstm", "parity", 1e-3, 1, 0.9, 0.8),
    ]
    artefact = formal_languages(records, PAPER)
    row = artefact.table.set_index(["model", "task"]).loc[("llama", "reverse_string")]
    assert row.best_lr == 1e-2
    assert row.test_mean == pytest.approx(0.25)
    assert row.test_std == pytest.approx(np.std([0.2, 0.3], ddof=1))
    assert row.paper_mean == pytest.approx(0.06)  # Figure 12: Llama, Reverse String
    assert "0.25 ± 0.07 (0.06)" in artefact.markdown
    assert "| LSTM |" in artefact.markdown and "0.90 ± 0.14" in artefact.markdown
    # Figure 4's grouping: the regular task's column comes before the context-free one
    header = next(line for line in artefact.markdown.splitlines() if line.startswith("| model"))
    assert header.index("Parity (R)") < header.index("Reverse String (DCF)")
    for name, draw in artefact.figures.items():
        draw(tmp_path / name)
        assert (tmp_path / name).stat().st_size > 1000


def test_formal_table_ranks_an_lr_with_a_diverged_seed_below_complete_ones():
    records = [
        _record("lstm", "parity", 1e-2, 0, 0.99, 0.99),
        _record("lstm", "parity", 1e-2, 1, None, None, status="diverged"),
        _record("lstm", "parity", 1e-3, 0, 0.50, 0.40),
        _record("lstm", "parity", 1e-3, 1, 0.50, 0.60),
    ]
    row = formal_languages(records, PAPER).table.iloc[0]
    assert row.best_lr == 1e-3 and row.test_mean == pytest.approx(0.5) and row.seeds == 2


def _mqar_record(model, width, context, lr, val, test, *, pairs=0, evals=(), status="finished", error=None):
    config = {"model": {"name": model, "embedding_dim": width}, "optim": {"lr": lr},
              "task": {"name": "mqar", "context_length": context, "num_kv_pairs": pairs,
                       "eval_context_lengths": list(evals)}}
    rec = _record(model, "mqar", lr, 0, None, None, status=status, config=config)
    rec["error"] = error
    if status == "finished":
        # validation at every evaluated context: the training context's value, and at the longer ones a tenth of
        # the test value (so a test can tell which split a cell shows)
        rec["metrics"] = {"val": {f"acc@{c}": val if c == context else test[c] / 10 for c in (context, *evals)},
                          "test": {f"acc@{c}": test[c] for c in (context, *evals)}}
    return rec


def test_mqar_table_best_lr_per_width_and_setting_with_extrapolation_and_infeasible_points(tmp_path):
    records = [
        _mqar_record("xlstm[1:1]", 32, 64, 1e-3, 0.9, {64: 0.8}),
        _mqar_record("xlstm[1:1]", 32, 64, 1e-2, 0.5, {64: 0.99}),
        _mqar_record("xlstm[1:1]", 64, 64, 1e-2, 0.7, {64: 0.7}),
        _mqar_record("lstm", 32, 64, 1e-3, 0.0, {64: 0.01}),
        # experiment 3's layout: trained at 128, scored at 128 and 256; lr chosen at the training context
        _mqar_record("llama", 32, 128, 1e-3, 0.6, {128: 0.6, 256: 0.1}, pairs=8, evals=(256,)),
        _mqar_record("llama", 32, 128, 1e-2, 0.4, {128: 0.4, 256: 0.9}, pairs=8, evals=(256,)),
        _mqar_record("llama", 32, 768, 1e-3, None, None, pairs=256, status="infeasible",
                     error="context 768 cannot hold 256 key-value pairs"),
    ]
    artefact = mqar_table(records, PAPER, "mqar_extrapolation")
    table = artefact.table.set_index(["model", "width", "context", "eval_context"])
    assert table.loc[("xlstm[1:1]", 32, 64, 64)].test_mean == pytest.approx(0.8)
    assert table.loc[("xlstm[1:1]", 64, 64, 64)].test_mean == pytest.approx(0.7)
    assert table.loc[("llama", 32, 128, 256)].best_lr == 1e-3
    assert table.loc[("llama", 32, 128, 256)].test_mean == pytest.approx(0.1)
    assert table.loc[("llama", 32, 128, 256)].val_acc_mean == pytest.approx(0.01)  # what the cell shows
    assert table.loc[("xlstm[1:1]", 32, 64, 64)].val_acc_mean == pytest.approx(0.9)
    assert set(artefact.table.pairs) == {4, 8}  # num_kv_pairs 0 means context / 16
    md = artefact.markdown
    assert "no paper" in md and "context 768 cannot hold 256 key-value pairs" in md
    assert "## context 128, 8 pairs, evaluated at 256" in md
    assert "| xLSTM[1:1] | 0.90 | 0.70 |" in md  # validation accuracy, as the paper plots
    assert "| Llama | 0.01 |" in md  # at the evaluation context 256, lr chosen at the training context
    assert "6 runs" in md  # the infeasible point is listed, not counted as a run
    artefact.figures["table.png"](tmp_path / "table.png")
    assert (tmp_path / "table.png").stat().st_size > 1000


def test_runs_of_different_settings_are_rows_of_their_own_not_seeds():
    records = [
        _record("lstm", "parity", 1e-2, 0, 0.1, 0.1, steps=20),
        _record("lstm", "parity", 1e-2, 0, 0.9, 0.9, steps=2000),
        _record("lstm", "parity", 1e-2, 1, 0.7, 0.7, steps=2000),
        _record("llama", "parity", 1e-2, 0, 0.5, 0.5, steps=2000),  # alone in its cell: no variant label
    ]
    artefact = formal_languages(records, PAPER)
    rows = artefact.table.set_index(["model", "variant"])
    assert rows.loc[("lstm", "trainer.max_steps=20")].test_mean == pytest.approx(0.1)
    long = rows.loc[("lstm", "trainer.max_steps=2000")]
    assert long.test_mean == pytest.approx(0.8) and long.seeds == 2
    assert "| LSTM [trainer.max_steps=20] | 0.10 |" in artefact.markdown
    assert "| LSTM [trainer.max_steps=2000] | 0.80 ± 0.14 |" in artefact.markdown and "| Llama | 0.50 |" in artefact.markdown


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), None])
def test_non_finite_scores_count_as_diverged_never_as_a_score(bad):
    records = [
        _record("lstm", "parity", 1e-2, 0, bad if bad is not None else 0.99, 0.99 if bad is None else bad),
        _record("lstm", "parity", 1e-3, 0, 0.40, 0.30),
    ]
    if bad is None:  # a finite val but an infinite test score: diverged too
        records[0]["metrics"]["test"]["acc_scaled"] = float("inf")
    artefact = formal_languages(records, PAPER)
    row = artefact.table.iloc[0]
    assert row.best_lr == 1e-3 and row.test_mean == pytest.approx(0.3) and row.diverged == 1
    assert "| LSTM | 0.30 † |" in artefact.markdown and "† some runs of this cell diverged" in artefact.markdown
    alone = formal_languages(records[:1], PAPER)
    assert "| LSTM | diverged |" in alone.markdown and "inf" not in alone.markdown and "nan" not in alone.markdown


def test_foreign_and_corrupt_files_in_runs_end_in_one_line_naming_the_file(tmp_path):
    import json
    import subprocess
    import sys

    from experiments.results import load_record

    runs = tmp_path / "formal_languages" / "small" / "runs"
    runs.mkdir(parents=True)
    good = _record("lstm", "parity", 1e-2, 0, 0.5, 0.5)
    (runs / "good.json").write_text(json.dumps(good))
    foreign = runs / "foreign.json"
    foreign.write_text(json.dumps({"experiment": "mqar"}))
    with pytest.raises(ValueError, match="not a run record of this suite"):
        load_record(foreign)
    proc = subprocess.run([sys.executable, "-m", "experiments.tables", "formal_languages", "--results-dir",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and str(foreign) in proc.stderr
    foreign.write_text('{"run_id": ')
    proc = subprocess.run([sys.executable, "-m", "experiments.tables", "formal_languages", "--results-dir",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and f"corrupt record {foreign}" in proc.stderr
    foreign.unlink()
    proc = subprocess.run([sys.executable, "-m", "experiments.tables", "formal_languages", "--results-dir",
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and "small scale" in proc.stdout


def test_legacy_records_read_with_todays_model_keys(tmp_path):
    import json

    from experiments.results import load_record

    legacy = _record("xlstm[1:1]", "parity", 1e-2, 0, 0.5, 0.5)
    (tmp_path / "r.json").write_text(json.dumps(legacy))
    assert load_record(tmp_path / "r.json")["model"] == "xlstm_1_1"
