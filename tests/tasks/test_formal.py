"""Formal-language generators against independent closed forms; seeds, lengths, layout and preview."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from tasks import IGNORE, build_task
from tasks.formal import LANGUAGES, FormalTaskConfig

LENGTHS = [1, 2, 3, 7, 40, 41, 100, 256]


def _task(name: str, **kw):
    return build_task(FormalTaskConfig(name=name, **kw))


@pytest.mark.parametrize("n", LENGTHS)
def test_parity_label_is_sum_mod_two(n):
    lang = LANGUAGES["parity"]
    x, y = lang.generate(np.random.default_rng(n), 4000, n)
    bits = x - 1  # tokens 1, 2 are bits 0, 1
    assert x.shape == (4000, n) and set(np.unique(x)) <= {1, 2}
    assert np.array_equal(y, np.array([sum(row) % 2 for row in bits.tolist()]) + 1)
    if n >= 2:  # balanced labels: P(odd) = 1/2 within 4 sigma
        assert abs((y == 2).mean() - 0.5) < 4 * 0.5 / np.sqrt(4000)


def test_vocab_and_random_baseline_match_the_paper_table():
    import csv
    from pathlib import Path

    rows = {r["deepmind_task_name"]: r for r in
            csv.DictReader((Path(__file__).resolve().parents[2] / "results/paper/formal_tasks.csv").open())}
    for name, lang in LANGUAGES.items():
        paper_key = {"parity": "parity_check"}.get(name, name)
        row = rows[paper_key]
        assert len(lang.vocab) == int(row["vocab_size"]), name
        assert lang.random_baseline == pytest.approx(float(row["random_baseline_value"]), abs=1e-4), name


def test_training_batches_layout_and_lengths():
    task = _task("parity", batch_size=512, train_min_length=1, train_max_length=40)
    batch = task.train_batch(3)
    tokens, targets, lengths = batch["tokens"].numpy(), batch["targets"].numpy(), batch["lengths"].numpy()
    assert lengths.min() >= 1 and lengths.max() <= 40 and len(np.unique(lengths)) > 30
    for row_tokens, row_targets, n in zip(tokens, targets, lengths):
        scored = np.flatnonzero(row_targets != IGNORE)
        assert scored.tolist() == [n - 1]  # exactly one answer, at the last input symbol
        assert (row_tokens[n:] == 0).all() and (row_tokens[:n] > 0).all()  # PAD after, no answer leak
        assert row_targets[n - 1] == (row_tokens[:n] - 1).sum() % 2 + 1


def test_batches_are_deterministic_and_splits_disjoint():
    task = _task("parity", batch_size=64, eval_min_length=40, eval_max_length=40, eval_samples_per_length=64,
                 eval_batch_size=64)
    assert all((task.train_batch(5)[k] == task.train_batch(5)[k]).all() for k in ("tokens", "targets"))
    assert not torch.equal(task.train_batch(5)["tokens"], task.train_batch(6)["tokens"])
    val, test = task.eval_batches("val"), task.eval_batches("test")
    val_rows = {tuple(r) for b in val for r in b["tokens"].tolist()}
    test_rows = {tuple(r) for b in test for r in b["tokens"].tolist()}
    assert not val_rows & test_rows  # 2^40 strings: any overlap means shared seeds
    again = {tuple(r) for b in task.eval_batches("val") for r in b["tokens"].tolist()}
    assert again == val_rows


def test_eval_lengths_cover_the_configured_range():
    task = _task("parity", eval_min_length=40, eval_max_length=256, eval_length_step=24, eval_samples_per_length=5,
                 eval_batch_size=4)
    batches = task.eval_batches("test")
    seen = sorted({int(b["lengths"][0]) for b in batches})
    assert seen == list(range(40, 257, 24))
    for b in batches:
        assert len(set(b["lengths"].tolist())) == 1 and b["tokens"].shape[1] == int(b["lengths"][0])
    assert sum(len(b["lengths"]) for b in batches) == 5 * len(seen)


def test_preview_cli_prints_design_format():
    out = subprocess.run([sys.executable, "-m", "tasks", "preview", "parity", "--n", "3", "--length", "6"],
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()
    assert len(out) == 3
    for line in out:
        sample = json.loads(line)
        assert set(sample) == {"task", "length", "input", "target"} and sample["task"] == "parity"
        bits = sample["input"].split()
        assert len(bits) == sample["length"] == 6 and set(bits) <= {"0", "1"}
        assert sample["target"] == str(bits.count("1") % 2)


def test_preview_unknown_task_is_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "tasks", "preview", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "parity" in proc.stderr
