"""ListOps (Nangia & Bowman 2018, as Long Range Arena generates it): nested list operations over the digits 0-9.

Grammar (the LRA generator's): a node at depth d < max_depth is an operator with probability VALUE_P = 0.25, else a
digit 0-9 drawn uniformly; at max_depth it is a digit. An operator node has k ~ U{2 .. max_args} children (each at
depth d + 1) and an operator drawn uniformly from MAX, MIN, MED (median of the arguments; for an even count the mean
of the two middle values, truncated to an integer) and SM (sum mod 10). Written in prefix form with a closing
bracket, ``[MAX 2 9 [MIN 4 7 ] 0 ]``; a tree's length counts operator, digit and ``]`` tokens. A tree is kept when
min_length < length < max_length (LRA: 500 and 2000, strict), else a new tree is drawn. The label is the value.

Sample ``index`` of a split is a pure function of (data seed, split, index); the LRA release draws one de-duplicated
set instead (collisions among trees this long are vanishingly rare; the tests check the generated splits are
disjoint). The released TSV files (``basic_{train,val,test}.tsv``: a header ``Source  Target``, the expression with
the generator's "(" ")" pair wrapping, the value) load into the same token ids: the brackets are dropped as the LRA
and S4 pipelines drop them.
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np

from ..base import SPLITS
from .examples import DataMissing, Examples, pad

OPERATORS = ("[MAX", "[MIN", "[MED", "[SM")
END = "]"
VALUE_P = 0.25
# token ids: 0 padding, 1-4 the operators, 5 the closing bracket, 6-15 the digits 0-9
VOCAB = ("<pad>", *OPERATORS, END, *map(str, range(10)))
TOKEN_ID = {token: i for i, token in enumerate(VOCAB)}
TSV_FILES = {"train": "basic_train.tsv", "val": "basic_val.tsv", "test": "basic_test.tsv"}


def apply(operator: str, args: list[int]) -> int:
    if operator == "[MAX":
        return max(args)
    if operator == "[MIN":
        return min(args)
    if operator == "[MED":
        ordered, middle = sorted(args), len(args) // 2
        return ordered[middle] if len(args) % 2 else (ordered[middle - 1] + ordered[middle]) // 2
    return sum(args) % 10  # [SM


def _tree(rng: random.Random, depth: int, max_depth: int, max_args: int, out: list[str]) -> int:
    """Append one subtree's tokens to ``out``; return its value."""
    if depth >= max_depth or rng.random() > VALUE_P:
        digit = rng.randrange(10)
        out.append(str(digit))
        return digit
    count = rng.randint(2, max_args)  # the children are drawn before the operator, as in the LRA generator
    at = len(out)
    out.append("")  # the operator's slot
    args = [_tree(rng, depth + 1, max_depth, max_args, out) for _ in range(count)]
    operator = OPERATORS[rng.randrange(len(OPERATORS))]
    out[at] = operator
    out.append(END)
    return apply(operator, args)


def sample(data_seed: int, split: str, index: int, min_length: int = 500, max_length: int = 2000,
           max_depth: int = 10, max_args: int = 10) -> tuple[list[str], int]:
    """One expression (its tokens) and its value: trees are drawn until one has min_length < length < max_length."""
    state = np.random.SeedSequence([data_seed, SPLITS[split], index]).generate_state(2)
    rng = random.Random(int(state[0]) << 32 | int(state[1]))  # Python's generator: fast scalar draws
    while True:
        tokens: list[str] = []
        value = _tree(rng, 1, max_depth, max_args, tokens)
        if min_length < len(tokens) < max_length:
            return tokens, value


def encode(tokens: list[str]) -> np.ndarray:
    return np.array([TOKEN_ID[t] for t in tokens], dtype=np.int16)


def generate(data_seed: int, split: str, n: int, min_length: int = 500, max_length: int = 2000, max_depth: int = 10,
             max_args: int = 10) -> Examples:
    samples = [sample(data_seed, split, i, min_length, max_length, max_depth, max_args) for i in range(n)]
    inputs, lengths = pad([encode(tokens) for tokens, _ in samples], max_length)
    return Examples(inputs, lengths, np.array([value for _, value in samples], dtype=np.int64))


def tokens_of_source(source: str) -> list[str]:
    """A released ``Source`` field -> tokens: the pair-wrapping parentheses dropped, split on whitespace."""
    return source.replace("(", " ").replace(")", " ").split()


def load_tsv(folder: str | Path, split: str, max_length: int = 2000) -> Examples:
    """``basic_<split>.tsv`` of the LRA release (split val = ``basic_val.tsv``), truncated to ``max_length``."""
    path = Path(folder) / TSV_FILES[split]
    if not path.is_file():
        raise DataMissing(f"ListOps file {path} is missing: extract lra_release.gz so that {Path(folder)} holds "
                          f"{', '.join(TSV_FILES.values())} (or set task.source=generate)")
    sequences, labels = [], []
    with open(path, newline="", encoding="utf-8") as f:
        for line_no, row in enumerate(csv.reader(f, delimiter="\t"), start=1):
            if line_no == 1 and row[:2] == ["Source", "Target"]:
                continue
            try:
                source, target = row
                sequences.append(encode(tokens_of_source(source)))
                labels.append(int(target))
            except (ValueError, KeyError) as err:
                raise DataMissing(f"{path} line {line_no} is not a ListOps row (Source<TAB>Target with tokens "
                                  f"{' '.join(VOCAB[1:])}): {err}") from None
    if not labels:
        raise DataMissing(f"{path} has no rows; extract lra_release.gz again")
    inputs, lengths = pad(sequences, max_length)
    return Examples(inputs, lengths, np.array(labels, dtype=np.int64))
