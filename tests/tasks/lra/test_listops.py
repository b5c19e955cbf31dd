"""ListOps: the generator against an independent evaluator and the LRA constraints; the released TSV loader."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from tasks.lra import DataMissing, listops


def evaluate(expression: str) -> tuple[int, int, list[int]]:
    """An evaluator that shares nothing with the generator: a stack over the written tokens. Returns (value, depth,
    argument counts of every operator)."""
    stack: list[list] = []
    depth, counts, value = 0, [], None
    for token in expression.split():
        if token.startswith("["):
            stack.append([token])
            depth = max(depth, len(stack))
        elif token == "]":
            op, *args = stack.pop()
            counts.append(len(args))
            value = {"[MAX": max(args), "[MIN": min(args), "[SM": sum(args) % 10,
                     "[MED": int(np.median(args))}[op]
            if stack:
                stack[-1].append(value)
        else:  # a digit: an argument of the innermost open operator (kept trees never are a lone digit)
            stack[-1].append(int(token))
    assert not stack
    return value, depth, counts


def expression(ex, row: int) -> str:
    return " ".join(listops.VOCAB[t] for t in ex.inputs[row, :ex.lengths[row]])


def test_generated_labels_lengths_depth_and_arity_follow_the_lra_rules():
    ex = listops.generate(data_seed=3, split="train", n=150)
    assert ex.inputs.dtype == np.int16 and ex.inputs.shape[1] < 2000
    for row in range(len(ex)):
        value, depth, counts = evaluate(expression(ex, row))
        assert value == ex.labels[row]
        assert 500 < ex.lengths[row] < 2000
        assert depth <= 10 and all(2 <= c <= 10 for c in counts)
    assert (ex.inputs[np.arange(len(ex)), ex.lengths - 1] == listops.TOKEN_ID["]"]).all()  # a tree, not a digit
    assert len(set(ex.labels.tolist())) >= 8  # all ten values occur, MAX and SM most (not uniform)


def test_samples_are_pure_functions_of_seed_split_index_and_splits_are_disjoint():
    a = listops.sample(5, "val", 7)
    assert listops.sample(5, "val", 7) == a
    assert listops.sample(5, "test", 7) != a and listops.sample(6, "val", 7) != a
    sets = {split: listops.generate(1, split, 60, min_length=20, max_length=120, max_depth=6) for split in
            ("train", "val", "test")}
    seen = [{tuple(ex.inputs[i, :ex.lengths[i]]) for i in range(len(ex))} for ex in sets.values()]
    assert seen[0].isdisjoint(seen[1]) and seen[0].isdisjoint(seen[2]) and seen[1].isdisjoint(seen[2])


@pytest.mark.parametrize("args", [[3, 8], [1, 2, 9, 4], [7], [0, 0, 5], [9, 8, 7, 6, 5, 4]])
def test_median_truncates_like_the_lra_generator(args):
    assert listops.apply("[MED", args) == int(np.median(args))
    assert listops.apply("[SM", args) == np.sum(args) % 10


def lra_source(tokens: list[str]) -> str:
    """The release's left-nested pair form of a prefix expression: ``( ( ( [MAX 2 ) 9 ) ] )``."""
    def node(position: int) -> tuple[str, int]:
        token = tokens[position]
        if not token.startswith("["):
            return token, position + 1
        text, position = token, position + 1
        while tokens[position] != "]":
            child, position = node(position)
            text = f"( {text} {child} )"
        return f"( {text} ] )", position + 1
    return node(0)[0]


def test_released_tsv_loads_to_the_generator_token_ids(tmp_path):
    assert lra_source(["[MAX", "2", "9", "]"]) == "( ( ( [MAX 2 ) 9 ) ] )"
    ex = listops.generate(2, "test", 5, min_length=10, max_length=80, max_depth=5)
    for split, name in listops.TSV_FILES.items():
        with open(tmp_path / name, "w", newline="") as f:
            writer = csv.writer(f, delimiter="\t")
            writer.writerow(["Source", "Target"])
            for row in range(len(ex)):
                writer.writerow([lra_source(expression(ex, row).split()), int(ex.labels[row])])
    loaded = listops.load_tsv(tmp_path, "val")
    assert (loaded.lengths == ex.lengths).all() and (loaded.labels == ex.labels).all()
    assert (loaded.inputs == ex.inputs[:, :loaded.inputs.shape[1]]).all()
    short = listops.load_tsv(tmp_path, "train", max_length=12)
    assert short.lengths.max() <= 12 and (short.inputs[:, :12] == ex.inputs[:, :12]).all()


def test_missing_or_corrupt_tsv_is_one_line(tmp_path):
    with pytest.raises(DataMissing, match="lra_release") as err:
        listops.load_tsv(tmp_path, "train")
    assert "\n" not in str(err.value)
    (tmp_path / "basic_train.tsv").write_text("Source\tTarget\n( [MAX 2 ) 9 ] )\tseven\n")
    with pytest.raises(DataMissing, match="line 2") as err:
        listops.load_tsv(tmp_path, "train")
    assert "\n" not in str(err.value)
