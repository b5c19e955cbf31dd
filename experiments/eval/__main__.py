"""``python -m experiments.eval run=<run id> [key=value ...]`` (see ``experiments.eval.run``)."""
import logging
import os
import sys

os.environ.setdefault("TQDM_DISABLE", "1")  # the harness's per-request progress bars; before tqdm is imported

from ..config import SuiteError  # noqa: E402
from .run import evaluate, parse  # noqa: E402


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        cfg = parse(argv)
        written = evaluate(cfg)
        from ..results import load_record
        from ..tables import rebuild

        for experiment, scale in sorted({(r["experiment"], r["scale"]) for r in map(load_record, written)}):
            out = rebuild(experiment, scale, cfg.results_dir)
            print((out / "table.md").read_text())
    except (SuiteError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
