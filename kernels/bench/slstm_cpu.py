"""``python -m kernels.bench.slstm_cpu [--threads 1 2] [--batch 1 4 16]``: the sLSTM loops on a CPU.

Forward and forward+backward median seconds of backend "torch" (the reference: autograd records every op of every
step), "torch_fused" (one autograd node, hand-written backward) and "cpp" (that node's loops compiled) at the small
scale's shapes (NH 4, DH 16 and 32, S 64 ... 1024, float32) and batch 1 to 16 (batch 1: a long sequence at the speed
experiment's largest context), with each one's fwd+bwd speed-up over the reference and the backend "auto" takes.
One row per shape and backend; writes results/kernels/slstm_cpu.csv.
"""
from __future__ import annotations

import argparse

import torch

from experiments.bench.timing import median_seconds

from .common import ROOT, cpu_label, cpu_malloc, write_csv


def time_backend(backend: str, B: int, S: int, NH: int, DH: int, reps: int) -> tuple[float, float]:
    from kernels.slstm import slstm

    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, S, 4, NH, DH, generator=g, requires_grad=True)
    R = (torch.randn(4, NH, DH, DH, generator=g) / DH ** 0.5).requires_grad_()
    b = torch.randn(4, NH, DH, generator=g, requires_grad=True)

    def fwd():
        with torch.no_grad():
            slstm(x, R, b, backend=backend)

    def fwd_bwd():
        for t in (x, R, b):
            t.grad = None
        slstm(x, R, b, backend=backend).sum().backward()

    return median_seconds(fwd, reps), median_seconds(fwd_bwd, reps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kernels.bench.slstm_cpu")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seq", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--head-dim", type=int, nargs="+", default=[16, 32])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args(argv)
    from kernels.slstm import resolve_backend

    malloc = cpu_malloc()
    rows = []
    for threads in a.threads:
        torch.set_num_threads(threads)
        for B in a.batch:
            for DH in a.head_dim:
                for S in a.seq:
                    times = {be: time_backend(be, B, S, 4, DH, a.reps) for be in ("torch", "torch_fused", "cpp")}
                    auto = resolve_backend("auto", torch.device("cpu"), DH, step_elements=B * 4 * DH)
                    for backend, (fwd, fwd_bwd) in times.items():
                        rows.append({"B": B, "S": S, "NH": 4, "DH": DH, "threads": threads, "backend": backend,
                                     "fwd_s": round(fwd, 5), "fwd_bwd_s": round(fwd_bwd, 5),
                                     "us_per_step_fwd_bwd": round(fwd_bwd / S * 1e6, 1),
                                     "speedup_fwd_bwd": round(times["torch"][1] / fwd_bwd, 2),
                                     "auto": backend == auto, **cpu_label(malloc)})
                        print(rows[-1], flush=True)
    write_csv(rows, ROOT / "results" / "kernels" / "slstm_cpu.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
