"""``python -m tasks.lm.embedded [--out data/lm_local] [--vocab-size 4096]``: the offline corpus, ready to train on.

Trains a byte-level BPE of ``--vocab-size`` tokens on the training articles of the embedded Wikipedia sample
(``tasks.lm.sources``) and prepares ``OUT/train`` and ``OUT/validation`` with it (``OUT/tokenizer.json``). This is the
data of the language-modelling experiments' small scale (``task=lm_local``, ``paths.data_dir`` = OUT's parent).
Running it again reuses what is there.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .prepare import prepare, report_errors
from .sources import documents
from .tokenizers import train_bpe


def build(out: Path, vocab_size: int = 4096) -> Path:
    tokenizer = out / "tokenizer.json"
    if not tokenizer.exists():
        train_bpe((d.text for d in documents("embedded:wikipedia/train")), vocab_size, tokenizer)
    for split in ("train", "validation"):
        prepare(f"embedded:wikipedia/{split}", str(tokenizer), out / split, shard_tokens=2**22)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks.lm.embedded", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/lm_local"))
    parser.add_argument("--vocab-size", type=int, default=4096)
    args = parser.parse_args(argv)
    return report_errors(lambda: build(args.out, args.vocab_size))


if __name__ == "__main__":
    sys.exit(main())
