"""Table builders on hand-made run records: learning-rate choice by validation, mean ± std over seeds, the paper's
value beside ours, infeasible and diverged points, and the figures they draw."""
from __future__ import annotations

import numpy as np
import pytest

from experiments.tables.formal_languages import formal_languages
from experiments.tables.mqar import mqar_table
from tests.experiments.helpers import ROOT

PAPER = ROOT / "results" / "paper"


def _record(model, task, lr, seed, val, test, *, status="finished", config=None, by_length=None):
    metrics = {"val": {"acc_scaled": val, "acc": val}, "test": {"acc_scaled": test, "acc": test}}
    for length, value in (by_length or {}).items():
        metrics["test"][f"acc_scaled@{length}"] = value
    return {"model": model, "task": task, "lr": lr, "seed": seed, "status": status, "scale": "small", "steps": 10,
            "hardware": "cpu", "git_commit": "0123456789abcdef", "git_dirty": False, "error": None,
            "metrics": metrics if status == "finished" else {}, "config": config or {}}


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
    config = {"model": {"embedding_dim": width},
              "task": {"context_length": context, "num_kv_pairs": pairs, "eval_context_lengths": list(evals)}}
    rec = _record(model, "mqar", lr, 0, None, None, status=status, config=config)
    rec["error"] = error
    if status == "finished":
        rec["metrics"] = {"val": {f"acc@{context}": val}, "test": {f"acc@{c}": test[c] for c in (context, *evals)}}
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
    assert set(artefact.table.pairs) == {4, 8}  # num_kv_pairs 0 means context / 16
    md = artefact.markdown
    assert "no paper" in md and "context 768 cannot hold 256 key-value pairs" in md
    assert "## context 128, 8 pairs, evaluated at 256" in md
    assert "| xLSTM[1:1] | 0.80 | 0.70 |" in md
    assert "6 runs" in md  # the infeasible point is listed, not counted as a run
    artefact.figures["table.png"](tmp_path / "table.png")
    assert (tmp_path / "table.png").stat().st_size > 1000
