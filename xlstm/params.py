"""``python -m xlstm.params NAME SIZE``: the parameter count of a registered model at a paper size (built on the
meta device, so even 2.7B models cost no memory)."""
from __future__ import annotations

import sys

import torch

from .registry import MODELS, build, canonical_name, paper_label


def count(name: str, size: str | None = None, **overrides) -> int:
    with torch.device("meta"):
        model = build(name, size, **overrides)
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(f"usage: python -m xlstm.params NAME SIZE   (NAME: {', '.join(MODELS)}; xlstm[7:1] works too)", file=sys.stderr)
        return 2
    try:
        name = canonical_name(argv[0])
        n = count(name, argv[1])
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{name} ({paper_label(name)}) {argv[1]}: {n:,} parameters ({n / 1e6:.1f}M)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
