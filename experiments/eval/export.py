"""``python -m experiments.eval.export --out data/eval [--tasks piqa arc_easy ...]``: the six downstream tasks' rows
from the Hugging Face hub to ``OUT/<task>.jsonl`` (the upstream split, rows unchanged), once, where the hub is
reachable; ``python -m experiments.eval eval_data_dir=OUT`` then runs offline.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from ..config import SuiteError
from .downstream import TASKS, check_rows, data_file


def export(names: list[str], out: Path, load: Callable | None = None) -> dict[str, int]:
    """Write each task's upstream split; ``load`` is ``datasets.load_dataset`` (replaceable for tests)."""
    if load is None:
        from datasets import load_dataset as load
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise SuiteError(f"unknown downstream task {', '.join(unknown)}; valid: {', '.join(TASKS)}")
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in names:
        path, config, split = TASKS[name].hub
        try:
            rows = load(path, config, split=split)
        except Exception as err:  # offline, renamed dataset, gated
            reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            raise SuiteError(f"cannot load {path} ({config or 'default'}, {split}) from the hub ({reason}); run "
                             "this where the hub is reachable and copy the files") from None
        target = data_file(out, name)
        tmp = target.with_suffix(".jsonl.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(dict(row), ensure_ascii=False) + "\n")
        counts[name] = check_rows(tmp, TASKS[name].fields)
        tmp.replace(target)  # whole files only: an interrupted export leaves the previous file
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.eval.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/eval"))
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = parser.parse_args(argv)
    try:
        for name, rows in export(args.tasks, args.out).items():
            print(f"{data_file(args.out, name)}: {rows} rows")
    except SuiteError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
