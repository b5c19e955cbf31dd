"""``python -m kernels.bench.blockdiag_cpu [--threads 1 2]``: the block-diagonal q/k/v products on a CPU.

Forward and forward+backward median milliseconds of ``kernels.blockdiag.block_diagonal``'s backends "torch" (the
einsum) and "cpp" at the mLSTM's shapes of the CPU speed comparison (256 channels in blocks of 4; q and k as one map
of 8 outputs per block in 2 parts, v as one of 4 outputs; B 16 x S 256 and B 2 x S 2048, float32), the input a column
slice of the up-projection as in the layer. One row per shape and backend; writes results/kernels/blockdiag_cpu.csv.
"""
from __future__ import annotations

import argparse

import torch

from experiments.bench.timing import median_seconds

from .common import ROOT, cpu_label, cpu_malloc, write_csv


def time_backend(backend: str, B: int, S: int, channels: int, outputs: int, parts: int, reps: int):
    from kernels.blockdiag import block_diagonal

    g = torch.Generator().manual_seed(0)
    up = torch.randn(B, S, 2 * channels, generator=g, requires_grad=True)
    x = up[..., :channels]  # a view with row stride 2 x channels, as the layer's x_m
    weight = torch.randn(channels // 4, outputs, 4, generator=g, requires_grad=True)
    grads = [torch.randn(B, S, channels // 4 * outputs // parts, generator=g) for _ in range(parts)]

    def fwd():
        with torch.no_grad():
            block_diagonal(x, weight, parts=parts, backend=backend)

    def fwd_bwd():
        ys = block_diagonal(x, weight, parts=parts, backend=backend)
        torch.autograd.backward(ys, grads, inputs=[up, weight])

    return median_seconds(fwd, reps), median_seconds(fwd_bwd, reps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kernels.bench.blockdiag_cpu")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--reps", type=int, default=20)
    a = p.parse_args(argv)
    malloc = cpu_malloc()
    rows = []
    for threads in a.threads:
        torch.set_num_threads(threads)
        for B, S in [(16, 256), (2, 2048)]:
            for what, outputs, parts in [("q+k", 8, 2), ("v", 4, 1)]:
                times = {be: time_backend(be, B, S, 256, outputs, parts, a.reps) for be in ("torch", "cpp")}
                for backend, (fwd, fwd_bwd) in times.items():
                    rows.append({"B": B, "S": S, "channels": 256, "block": 4, "map": what, "backend": backend,
                                 "fwd_ms": round(fwd * 1e3, 3), "fwd_bwd_ms": round(fwd_bwd * 1e3, 3),
                                 "speedup_fwd_bwd": round(times["torch"][1] / fwd_bwd, 2), "threads": threads,
                                 **cpu_label(malloc)})
                    print(rows[-1], flush=True)
    write_csv(rows, ROOT / "results" / "kernels" / "blockdiag_cpu.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
