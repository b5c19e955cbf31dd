"""``python -m experiments.eval.local_data [--out data/eval_local]``: offline evaluation data for the small scale.

* ``OUT/paloma/wikipedia_embedded/val/val_00000000.jsonl.gz``: the embedded corpus's 10 validation articles
  (``tasks.lm.sources``; never trained on) in PALOMA's file layout: one source, read like any PALOMA source.
* ``OUT/downstream/lambada_openai.jsonl``: a LAMBADA-style cloze set cut from the same articles: passages of whole
  sentences (one ending at each sentence) whose last word (letters only, 3+ of them) also occurs earlier in the passage, in LAMBADA's row format
  (``text`` ending with the target word). It tests the same thing as LAMBADA (the last word from the context) on
  text the small models' tokenizer knows; it is not LAMBADA.
* ``OUT/downstream/<task>.jsonl`` for the other five tasks: the hand-written fixtures in the upstream row formats
  (``experiments/eval/fixtures``, 4-5 items each): they exercise the tasks' prompts and metrics, nothing more.
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import shutil
import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
WORD = re.compile(r"^[A-Za-z]{3,}$")


def cloze_passages(text: str, sentences: int = 4, min_words: int = 30) -> list[str]:
    """Passages of ``sentences`` consecutive sentences of ``text`` (one line at a time, so headings never join a
    passage), one ending at each sentence (so every target is a different word of the text), whose last word,
    stripped of its final punctuation, recurs earlier in the passage."""
    out = []
    for paragraph in text.split("\n"):
        parts = [s.strip() for s in SENTENCE_END.split(paragraph) if s.strip()]
        for first in range(0, len(parts) - sentences + 1):
            passage = " ".join(parts[first:first + sentences]).rstrip(".!?\"') ")
            words = passage.split(" ")
            target = words[-1]
            if len(words) >= min_words and WORD.match(target) and target in " ".join(words[:-1]).split(" "):
                out.append(passage)
    return out


def build(out: Path) -> dict[str, int]:
    """Write the three kinds of data; returns rows per file."""
    from tasks.lm.sources import documents

    articles = [d.text for d in documents("embedded:wikipedia/validation")]
    counts = {}
    paloma = out / "paloma" / "wikipedia_embedded" / "val" / "val_00000000.jsonl.gz"
    paloma.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(paloma, "wb", mtime=0) as f:  # mtime 0: the same input gives the same bytes
        for i, text in enumerate(articles):
            f.write((json.dumps({"text": text, "id": f"wikipedia-val-{i}", "source": "wikipedia_embedded",
                                 "subdomain": "wikipedia"}) + "\n").encode())
    counts[str(paloma.relative_to(out))] = len(articles)
    downstream = out / "downstream"
    downstream.mkdir(parents=True, exist_ok=True)
    passages = [p for text in articles for p in cloze_passages(text)]
    (downstream / "lambada_openai.jsonl").write_text("".join(json.dumps({"text": p}) + "\n" for p in passages))
    counts["downstream/lambada_openai.jsonl"] = len(passages)
    for fixture in sorted(FIXTURES.glob("*.jsonl")):
        if fixture.stem != "lambada_openai":
            shutil.copyfile(fixture, downstream / fixture.name)
            counts[f"downstream/{fixture.name}"] = sum(1 for line in fixture.open() if line.strip())
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.eval.local_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/eval_local"))
    args = parser.parse_args(argv)
    try:
        for name, rows in build(args.out).items():
            print(f"{args.out / name}: {rows} rows")
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
