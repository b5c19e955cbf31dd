"""``python -m tasks preview NAME [--n N] [--length L] [--seed S]``: one JSON object per sample, printed as it is
generated. Bad arguments end in one line on stderr and exit status 2."""
from __future__ import annotations

import argparse
import json
import sys

from . import TASKS, build_task, task_class


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints the usage block first; one line is enough
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    parser = _OneLineParser(prog="python -m tasks")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    preview = sub.add_parser("preview", help="print generated samples as JSON lines")
    preview.add_argument("name", help=f"one of: {', '.join(TASKS)}")
    preview.add_argument("--n", type=_at_least(1), default=3, help="number of samples (>= 1)")
    preview.add_argument("--length", type=_at_least(1), default=None, help="sample length (>= 1); default: the "
                         "task's training lengths")
    preview.add_argument("--seed", type=_at_least(0), default=0, help="seed (>= 0)")
    args = parser.parse_args(argv)
    try:
        task = build_task(task_class(args.name).config_class(name=args.name))
        for sample in task.preview(args.n, args.length, args.seed):
            print(json.dumps(sample), flush=True)
    except ValueError as err:  # unknown task, a length the task cannot generate
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
