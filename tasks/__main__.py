"""``python -m tasks preview NAME [--n N] [--length L] [--seed S]``: one JSON object per sample."""
from __future__ import annotations

import argparse
import json
import sys

from . import TASKS, build_task, task_class


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tasks")
    sub = parser.add_subparsers(dest="command", required=True)
    preview = sub.add_parser("preview", help="print generated samples as JSON lines")
    preview.add_argument("name", help=f"one of: {', '.join(TASKS)}")
    preview.add_argument("--n", type=int, default=3)
    preview.add_argument("--length", type=int, default=None)
    preview.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        task = build_task(task_class(args.name).config_class(name=args.name))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for sample in task.preview(args.n, args.length, args.seed):
        print(json.dumps(sample))
    return 0


if __name__ == "__main__":
    sys.exit(main())
