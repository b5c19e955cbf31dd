"""Language-modelling tables on hand-made records: lr chosen by the lowest validation perplexity, the paper's
value beside ours, missing paper models, the size ladder, and n/a where a model cannot read a length."""
from __future__ import annotations

import pytest

from experiments.tables.language_modelling import extrapolation, slimpajama, slimpajama_300b
from tests.experiments.helpers import ROOT

PAPER = ROOT / "results" / "paper"


def _record(model, lr, val_ppl, *, size="w64", params=1_000_000, status="finished", extra=None, context=32,
            eval_lengths=()):
    val = {"ppl": val_ppl, **(extra or {})}
    config = {"model": {"name": model}, "task": {"name": "lm_local", "context_length": context,
                                                  "eval_context_lengths": list(eval_lengths)},
              "optim": {"lr": lr}, "seed": 0, "model_size": size, "trainer": {"max_steps": 10}}
    return {"run_id": f"{model}__{lr}__{size}", "experiment": "slimpajama", "model": model, "task": "lm_local",
            "lr": lr, "seed": 0, "status": status, "scale": "small", "steps": 10, "params": params,
            "hardware": "cpu", "git_commit": "0123456789abcdef", "git_dirty": False, "error": None,
            "metrics": {"val": val, "test": {"ppl": val_ppl + 1}} if status == "finished" else {},
            "throughput": {"tokens_seen": 1280, "tokens_per_s": 1000.0, "peak_memory_mb": 500.0},
            "curve": [{"step": 5, "tokens": 640, "ppl": 2 * (val_ppl or 1)},
                      {"step": 10, "tokens": 1280, "ppl": val_ppl or 1}],
            "config": config}


def test_table1_picks_the_lowest_validation_perplexity_and_lists_every_paper_row(tmp_path):
    records = [_record("xlstm_1_0", 1e-3, 30.0), _record("xlstm_1_0", 3e-3, 20.0), _record("llama", 1e-3, 25.0),
               _record("mamba", 1e-3, None, status="diverged")]
    artefact = slimpajama(records, PAPER)
    row = artefact.table.set_index("model").loc["xlstm_1_0"]
    assert row.best_lr == 3e-3 and row.val_ppl == 20.0 and row.test_ppl_mean == 21.0
    md = artefact.markdown
    assert "| xLSTM[1:0] | 1.00 (409) | 20.00 (13.43) | 21.00 | 1,280 | 1,000 | 500 |" in md
    assert "| GLA | – (412) | not run (16.15) |" in md  # registered, not in these records
    assert "| GPT-3 | – (356) | not run (14.26) |" in md
    assert "| not built (" not in md  # every model of Table 1 is registered
    assert "| Mamba |" in md and "diverged" in md.split("| Mamba |")[1].splitlines()[0]
    for name, draw in artefact.figures.items():
        draw(tmp_path / name)
        assert (tmp_path / name).stat().st_size > 1000


def test_a_paper_model_the_suite_does_not_have_is_listed_as_not_built(tmp_path):
    table1 = (PAPER / "table1_slimpajama15b.csv").read_text()
    (tmp_path / "table1_slimpajama15b.csv").write_text(table1 + "S4,400,20.00,20.00,hand-made row,\n")
    md = slimpajama([_record("llama", 1e-3, 25.0)], tmp_path).markdown
    assert "| S4 | – (400) | not built (20.00) |" in md


def test_table3_is_a_size_ladder_with_the_paper_beside_it(tmp_path):
    records = [_record("llama", 1e-3, 40.0, size="w64", params=600_000),
               _record("llama", 1e-3, 30.0, size="w128", params=1_400_000),
               _record("xlstm_7_1", 1e-3, 35.0, size="w64", params=650_000),
               _record("xlstm_7_1", 1e-3, 25.0, size="w128", params=1_450_000)]
    artefact = slimpajama_300b(records, PAPER)
    md = artefact.markdown
    assert "| model | w64 | w128 |" in md and "| Llama | 40.00 [0.60M] | 30.00 [1.40M] |" in md
    assert "| xLSTM[1:0] | 14.63 [163.8M] |" in md  # the paper's Table 3 as reference, sizes differing from ours
    paper_size = slimpajama_300b([_record("llama", 1e-3, 12.5, size="350M", params=406_600_000)], PAPER)
    assert "| Llama | 12.50 (12.19) [406.60M] |" in paper_size.markdown
    for name, draw in artefact.figures.items():
        draw(tmp_path / name)
        assert (tmp_path / name).stat().st_size > 1000


def test_extrapolation_shows_na_where_a_model_cannot_read_the_length(tmp_path):
    lengths = {"eval_lengths": (64, 128), "context": 32}
    xl = {"ppl@32": 20.0, "ppl@64": 19.0, "ppl@128": 18.5, "nll@128/pos1": 5.0, "nll@128/pos64": 2.9}
    records = [_record("xlstm_1_0", 1e-3, 20.0, extra=xl, **lengths),
               _record("gpt3", 1e-3, 22.0, extra={"ppl@32": 22.0}, **lengths),
               _record("llama", 1e-3, 21.0, extra={"ppl@32": 21.0, "ppl@64": 80.0, "ppl@128": 400.0}, **lengths)]
    artefact = extrapolation(records, PAPER)
    md = artefact.markdown
    assert "| model | 32 | 64 | 128 |" in md
    assert "| GPT-3 | 22.00 | n/a | n/a |" in md and "| Llama | 21.00 | 80.00 | 400.00 |" in md
    assert "| xLSTM[1:0] | 20.00 | 19.00 | 18.50 |" in md
    draw = artefact.figures["extrapolation.png"]
    draw(tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 1000


@pytest.mark.parametrize("builder", [slimpajama, slimpajama_300b, extrapolation])
def test_lm_tables_label_their_provenance(builder):
    md = builder([_record("llama", 1e-3, 21.0, extra={"ppl@32": 21.0})], PAPER).markdown
    assert "small scale" in md and "commits: 0123456789" in md
