"""Where the mLSTM's memory overflows without its stabilizer: ``python -m kernels.mlstm.overflow [--out CSV]``.

For each dtype (float32, bfloat16, float16), stabilizer (max, none) and normalizer, the smallest constant input-gate
pre-activation i~ at which the cell's output stops being finite, found by bisection to 0.01 (runs on CPU in seconds).
Inputs: q, k, v ~ N(0, 1), head dims 64, forget gate pre-activation +6 (a slow decay, as trained gates are), over
sequence lengths 1 and 256. The unstabilized memory holds sum_j exp(F_t - F_j + i~_j) k_j v_j^T, so it overflows
once i~ + log(sum of the decayed key-value products) passes the dtype's log-max (88.7 in float32 and bfloat16, 11.1
in float16). With the stabilizer the state never overflows (searched up to 1000), and neither does the output with a
normalizer (max or abs); without one (normalizer "one") the output is the memory's read-out in true units and
overflows exactly where the unstabilized memory does.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..bench.common import ROOT, commit, write_csv
from .variants import NORMALIZERS, STABILIZERS, mlstm_variant

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SEARCH_MAX = 1000.0


def finite_at(gate: float, inputs: list[torch.Tensor], dtype: torch.dtype, stabilizer: str, normalizer: str) -> bool:
    q, k, v, i, f = (t.to(dtype) for t in inputs)
    h = mlstm_variant(q, k, v, torch.full_like(i, gate), f, stabilizer=stabilizer, normalizer=normalizer)
    return bool(torch.isfinite(h).all())


def threshold(inputs, dtype, stabilizer, normalizer) -> float:
    """The smallest gate (to 0.01) with a non-finite output; inf when none up to SEARCH_MAX."""
    low, high = -20.0, SEARCH_MAX
    if not finite_at(low, inputs, dtype, stabilizer, normalizer):
        return low
    if finite_at(high, inputs, dtype, stabilizer, normalizer):
        return float("inf")
    while high - low > 0.01:
        mid = (low + high) / 2
        low, high = (mid, high) if finite_at(mid, inputs, dtype, stabilizer, normalizer) else (low, mid)
    return round(high, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels.mlstm.overflow")
    parser.add_argument("--out", default=str(ROOT / "results" / "memory_stabilizer" / "overflow.csv"))
    args = parser.parse_args(argv)
    label = commit()
    rows = []
    for length in (1, 256):
        g = torch.Generator().manual_seed(0)
        inputs = [torch.randn(1, 1, length, 64, generator=g) for _ in range(3)]
        inputs += [torch.zeros(1, 1, length), torch.full((1, 1, length), 6.0)]
        for (name, dtype) in DTYPES.items():
            for stabilizer in STABILIZERS:
                for normalizer in NORMALIZERS:
                    gate = threshold(inputs, dtype, stabilizer, normalizer)
                    rows.append({"dtype": name, "length": length, "stabilizer": stabilizer, "normalizer": normalizer,
                                 "overflow_at_igate": gate, "commit": label})
                    print(f"{name:9s} S={length:<4d} stabilizer={stabilizer:4s} normalizer={normalizer:3s} "
                          f"non-finite from i~ = {gate}")
    write_csv(rows, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
