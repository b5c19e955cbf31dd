"""Formal-language generators against independent closed forms; vocabulary, baselines, layout, seeds, preview."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections import Counter
from math import isqrt
from pathlib import Path

import numpy as np
import pytest
import torch

from tasks import IGNORE, TASKS, build_task
from tasks.formal import LANGUAGES, FormalLanguageTask, FormalTaskConfig

ROOT = Path(__file__).resolve().parents[2]
LENGTHS = [1, 2, 3, 7, 40, 41, 256]
SAMPLES = 2000


def _samples(name: str, n: int, count: int = SAMPLES, definition: str = "paper"):
    lang = LANGUAGES[name]
    n = max(n, lang.min_length)
    count = count if n <= 64 else count // 8  # keep the recursive generators quick at n = 256
    x, y = lang.generator(definition)(np.random.default_rng([n, 7]), count, n)
    words = [[lang.vocab[t] for t in row] for row in x]
    answers = [[lang.vocab[t] for t in row if t != IGNORE] for row in y]
    return n, x, y, words, answers


def _bits(word):
    return [int(c) for c in word]


# ---- one independent oracle per task: (input symbols, requested n) -> expected answer symbols -------------------

def _even_pairs(w, n):
    return [str(sum(a != b for a, b in zip(w, w[1:])) % 2)]


def _cycle(w, n):
    pos = 0
    for step in w:
        pos = (pos + int(step)) % 5
    return [str(pos)]


def _arith(w, n):
    assert w[-1] == "=" and len(w) == (n if n % 2 == 0 else n - 1) and len(w) >= 2
    return [str(eval("".join(w[:-1])) % 5)]


def _brackets(w, n):
    assert len(w) == n and w[-1] == "="
    expression = w[:-1]
    if len(expression) >= 5:
        assert expression[0] == "(" and expression[-1] == ")"
    depth = 0
    for token in expression:
        depth += {"(": 1, ")": -1}.get(token, 0)
        assert depth >= 0
    assert depth == 0
    return [str(eval("".join(expression)) % 5)]


def _solve(w, n):
    assert len(w) == n and w[-3] == "=" and w[-1] == "?" and w.count("x") == 1 and "*" not in w
    lhs, r = "".join(w[:-3]), int(w[-2])
    solutions = [d for d in range(5) if eval(lhs.replace("x", f"({d})")) % 5 == r]
    assert len(solutions) == 1, "the hidden digit must be unique"
    return [str(solutions[0])]


def _stack(w, n, top_first=False):
    stack = []
    for token in w:
        if token == "pop":
            if stack:
                stack.pop()
        elif token.startswith("+"):
            stack.append(token[1:])
        else:  # the initial stack comes first, before any action
            assert not any(t == "pop" or t.startswith("+") for t in w[: w.index(token)])
            stack.append(token)
    return stack[::-1] if top_first else stack  # the paper's Listing 1: bottom to top


def _missing(w, n, second_copy=True):
    assert len(w) == n
    body = w[:-1] if n % 2 else w
    assert (w[-1] == "_") == (n % 2 == 1) and body.count("?") == 1
    half = len(body) // 2
    i = body.index("?")
    assert i >= half or not second_copy, "the paper masks a symbol of the repetition"
    twin = body[(i + half) % len(body)]
    restored = [twin if t == "?" else t for t in body]
    assert restored[:half] == restored[half:]
    return [twin]


def _binary(op):
    def oracle(w, n):
        assert len(w) == n
        sep = w.index(op)
        a_bits, b_bits = w[:sep], w[sep + 1:]
        assert a_bits and b_bits and a_bits[-1] == "1" and b_bits[-1] == "1"  # both >= 1, no trailing zeros
        a, b = (int("".join(bits[::-1]), 2) for bits in (a_bits, b_bits))
        value = a + b if op == "+" else a * b
        return list(bin(value)[2:][::-1])
    return oracle


def _sqrt(w, n):
    v = int("".join(w), 2)
    assert v >= 1
    r = isqrt(v)
    assert r * r <= v < (r + 1) ** 2
    return list(format(r, f"0{(n + 1) // 2}b"))


def _majority(w, n):
    counts = Counter(w)
    top = max(counts.values())
    return [next(t for t in w if counts[t] == top)]  # a tie goes to the symbol that occurs first


def _majority_unique(w, n):
    counts = Counter(w).most_common()
    assert len(counts) == 1 or counts[0][1] > counts[1][1], "the majority must be unique"
    return [counts[0][0]]


def _majority_count(w, n):
    return [str(min(Counter(w).most_common(1)[0][1], 63))]  # the paper: above the vocabulary, its highest symbol


def _majority_count_wrap(w, n):
    return [str((Counter(w).most_common(1)[0][1] - 1) % 63 + 1)]


ORACLES = {
    "parity": lambda w, n: [str(w.count("1") % 2)],
    "even_pairs": _even_pairs,
    "cycle_navigation": _cycle,
    "modular_arithmetic": _arith,
    "modular_arithmetic_brackets": _brackets,
    "solve_equation": _solve,
    "reverse_string": lambda w, n: w[::-1],
    "stack_manipulation": _stack,
    "bucket_sort": lambda w, n: sorted(w),
    "missing_duplicate": _missing,
    "odds_first": lambda w, n: w[0::2] + w[1::2],  # t1 t3 t5 ... then t2 t4 ... (1-based, Listing 1)
    "duplicate_string": lambda w, n: w + w,
    "binary_addition": _binary("+"),
    "binary_multiplication": _binary("*"),
    "compute_sqrt": _sqrt,
    "majority": _majority,
    "majority_count": _majority_count,
    "repetition": lambda w, n: list(w),
    "set": lambda w, n: list(dict.fromkeys(w)),
}


# the other readings of the tasks the paper defines differently from DeepMind (or leaves open)
VARIANT_ORACLES = {
    ("odds_first", "deepmind"): lambda w, n: w[1::2] + w[0::2],
    ("stack_manipulation", "deepmind"): lambda w, n: _stack(w, n, top_first=True),
    ("missing_duplicate", "deepmind"): lambda w, n: _missing(w, n, second_copy=False),
    ("majority", "unique"): _majority_unique,
    ("majority_count", "wrap"): _majority_count_wrap,
}


def test_every_language_has_an_oracle_and_a_registry_entry():
    assert set(ORACLES) == set(LANGUAGES) == {name for name, cls in TASKS.items() if cls is FormalLanguageTask}


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("name", list(LANGUAGES))
def test_generator_matches_its_independent_closed_form(name, n):
    n, x, y, words, answers = _samples(name, n)
    lang = LANGUAGES[name]
    assert x.min() >= 0 and x.max() < len(lang.vocab)
    if name not in ("modular_arithmetic", "missing_duplicate"):
        assert (x > 0).all(), "PAD inside an input"
    if name not in ("modular_arithmetic",):
        assert x.shape[1] == n, "the input must have exactly the requested length"
    for w, a in zip(words, answers):
        assert a == ORACLES[name](w, n), f"{' '.join(w)} -> {' '.join(a)}"


@pytest.mark.parametrize("n", [2, 3, 7, 40, 41])
@pytest.mark.parametrize("name, definition", list(VARIANT_ORACLES))
def test_other_readings_match_their_closed_forms(name, definition, n):
    assert set(LANGUAGES[name].variants) == {d for t, d in VARIANT_ORACLES if t == name}
    n, x, y, words, answers = _samples(name, n, definition=definition)
    for w, a in zip(words, answers):
        assert a == VARIANT_ORACLES[(name, definition)](w, n), f"{' '.join(w)} -> {' '.join(a)}"


def test_the_paper_listing_examples():
    """The examples of the paper's Listing 1 that the defaults follow, in the suite's symbols."""
    assert ORACLES["odds_first"]("2 7 3 2 6 9".split(), 6) == "2 3 6 7 2 9".split()
    assert _stack("a a c pop pop +c +c".split(), 7) == "a c c".split()  # ST1 ST1 ST3 POP POP PS3 PS3
    assert _majority_count(["5"] * 70, 70) == ["63"]
    assert _majority("3 7 7 3".split(), 4) == ["3"]


def test_majority_ties_and_missing_positions_occur_as_defined():
    _, _, _, words, _ = _samples("majority", 8, count=4000)
    tied = sum(sorted(Counter(w).values())[-2:] == [max(Counter(w).values())] * 2 for w in words if len(set(w)) > 1)
    assert tied > 200, "ties must be drawn, not excluded"
    _, _, _, words, _ = _samples("missing_duplicate", 40, count=4000, definition="deepmind")
    first_half = sum(w.index("?") < 20 for w in words) / len(words)
    assert 0.45 < first_half < 0.55  # DeepMind's reading masks either copy


def test_an_unknown_definition_is_refused_naming_the_valid_ones():
    with pytest.raises(ValueError, match="valid: paper, deepmind"):
        _task("odds_first", definition="xlstm")
    with pytest.raises(ValueError, match="valid: paper$"):
        _task("parity", definition="deepmind")


@pytest.mark.parametrize("name", list(LANGUAGES))
def test_answer_tokens_span_exactly_num_answers_classes(name):
    lang = LANGUAGES[name]
    seen = set()
    for n in (8, 40, 120):
        _, _, y, _, _ = _samples(name, n, count=3000)
        seen |= set(y[y != IGNORE].tolist())
    if name == "majority_count":  # counts of 1..63 need long strings; the ids are the 63 symbols
        assert seen <= set(range(1, 64)) and len(seen) > 20
    else:
        assert len(seen) == lang.num_answers, sorted(seen)


@pytest.mark.parametrize("name", ["parity", "even_pairs", "missing_duplicate", "reverse_string", "bucket_sort"])
def test_labels_are_balanced_where_the_task_defines_it(name):
    _, _, y, _, _ = _samples(name, 40, count=5000)
    freq = np.bincount(y[y != IGNORE], minlength=len(LANGUAGES[name].vocab))
    freq = freq[freq > 0] / freq.sum()
    expected = 1 / LANGUAGES[name].num_answers
    assert np.abs(freq - expected).max() < 0.02


def _paper_rows():
    with (ROOT / "results" / "paper" / "formal_tasks.csv").open() as f:
        return {r["task"]: r for r in csv.DictReader(f)}


def test_vocab_and_random_baseline_match_the_paper_table():
    rows = _paper_rows()
    in_paper = {lang.paper_name: lang for lang in LANGUAGES.values() if lang.in_paper}
    assert set(in_paper) == set(rows)
    for paper_name, lang in in_paper.items():
        assert len(lang.vocab) == int(rows[paper_name]["vocab_size"]), paper_name
        assert lang.random_baseline == pytest.approx(float(rows[paper_name]["random_baseline_value"]), abs=1e-4)
        level = rows[paper_name]["chomsky_level"]
        assert lang.level == (level if not level.startswith("unverified") else "extra"), paper_name


def _task(name: str, **kw):
    return build_task(FormalTaskConfig(name=name, **kw))


@pytest.mark.parametrize("name", ["parity", "reverse_string", "stack_manipulation", "bucket_sort", "set"])
def test_batch_layout(name):
    task = _task(name, batch_size=256, train_min_length=1, train_max_length=40)
    batch = task.train_batch(3)
    lang = LANGUAGES[name]
    tokens, targets, lengths = (batch[k].numpy() for k in ("tokens", "targets", "lengths"))
    assert lengths.min() >= 1 and lengths.max() <= 40 and len(np.unique(lengths)) > 30
    for row_tokens, row_targets, n in zip(tokens, targets, lengths):
        scored = np.flatnonzero(row_targets != IGNORE)
        n = max(n, lang.min_length)
        assert (row_tokens[:n] > 0).all()  # the input, no PAD
        if lang.query is None:
            assert scored.tolist() == [n - 1]  # one answer, at the last input symbol
        else:  # one query token per answer symbol, right after the input; nothing scored inside the input
            assert scored.tolist() == list(range(n, n + len(scored)))
            assert (row_tokens[scored] == lang.query).all()


def test_batches_are_deterministic_and_splits_disjoint():
    task = _task("parity", batch_size=64, eval_min_length=40, eval_max_length=40, eval_samples_per_length=64,
                 eval_batch_size=64)
    assert all(torch.equal(task.train_batch(5)[k], task.train_batch(5)[k]) for k in ("tokens", "targets"))
    assert not torch.equal(task.train_batch(5)["tokens"], task.train_batch(6)["tokens"])
    val, test = task.eval_batches("val"), task.eval_batches("test")
    val_rows = {tuple(r) for b in val for r in b["tokens"].tolist()}
    test_rows = {tuple(r) for b in test for r in b["tokens"].tolist()}
    train_rows = {tuple(r) for i in range(20) for r in task.train_batch(i)["tokens"].tolist() if len(r) == 40}
    assert not val_rows & test_rows and not train_rows & test_rows  # 2^40 strings: any overlap means shared seeds
    assert {tuple(r) for b in task.eval_batches("val") for r in b["tokens"].tolist()} == val_rows


def test_eval_lengths_cover_the_configured_range():
    task = _task("parity", eval_min_length=40, eval_max_length=256, eval_length_step=24, eval_samples_per_length=5,
                 eval_batch_size=4)
    batches = task.eval_batches("test")
    seen = sorted({int(b["lengths"][0]) for b in batches})
    assert seen == list(range(40, 257, 24))
    for b in batches:
        assert len(set(b["lengths"].tolist())) == 1 and b["tokens"].shape[1] == int(b["lengths"][0])
    assert sum(len(b["lengths"]) for b in batches) == 5 * len(seen)


@pytest.mark.parametrize("name", list(LANGUAGES))
def test_preview_prints_design_format(name, capsys):
    from tasks.__main__ import main

    assert main(["preview", name, "--n", "3", "--length", "9"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 3
    for line in out:
        sample = json.loads(line)
        assert set(sample) == {"task", "length", "input", "target"} and sample["task"] == name
        words = sample["input"].split()
        assert len(words) == sample["length"] and sample["target"]
        assert sample["target"].split() == ORACLES[name](words, 9)


def test_preview_cli():
    out = subprocess.run([sys.executable, "-m", "tasks", "preview", "parity", "--n", "3"], capture_output=True,
                         text=True, check=True).stdout.strip().splitlines()
    assert [json.loads(line)["task"] for line in out] == ["parity"] * 3


def test_preview_unknown_task_is_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "tasks", "preview", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "parity" in proc.stderr


@pytest.mark.parametrize("args, expected", [
    (["parity", "--length", "-3"], "--length: must be >= 1, got -3"),
    (["parity", "--length", "0"], "--length: must be >= 1, got 0"),
    (["parity", "--n", "-3"], "--n: must be >= 1, got -3"),
    (["parity", "--seed", "-1"], "--seed: must be >= 0, got -1"),
    (["parity", "--n", "two"], "'two' is not an integer"),
    (["mqar", "--length", "7"], "the context must be even"),
])
def test_preview_refuses_bad_arguments_in_one_line(args, expected):
    proc = subprocess.run([sys.executable, "-m", "tasks", "preview", *args], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and expected in proc.stderr, proc.stderr
    assert proc.stdout == ""


def test_preview_streams_its_samples():
    import itertools

    task = build_task(FormalTaskConfig(name="set"))
    samples = task.preview(10**12, None, 0)  # a generator: nothing is built before it is read
    assert [s["task"] for s in itertools.islice(samples, 2)] == ["set", "set"]
    proc = subprocess.Popen([sys.executable, "-m", "tasks", "preview", "set", "--n", "1000000000"],
                            stdout=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # arrives long before a billion samples could be built
    proc.kill()
    proc.wait()
    assert json.loads(first)["task"] == "set"
