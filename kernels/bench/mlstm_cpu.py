"""``python -m kernels.bench.mlstm_cpu [--threads 1 2] [--chunk 32 64 128]``: the chunkwise mLSTM on a CPU.

Forward and forward+backward median seconds of "chunkwise--torch_autograd" (autograd records every op),
"chunkwise--torch" (one autograd node, hand-written backward) and "chunkwise--cpp" (the C++ chains) at the small
LM scale's cell shapes (4 heads of 64, float32, the same 4096 tokens as B 16 x S 256 and B 2 x S 2048), with the
heads as the mLSTM layer hands them over (views of (B, S, NH, DH)), and each one's fwd+bwd speed-up over
"chunkwise--torch". One row per shape and backend; writes results/kernels/mlstm_cpu.csv.
"""
from __future__ import annotations

import argparse

import torch

from experiments.bench.timing import median_seconds

from .common import ROOT, cpu_label, cpu_malloc, write_csv

BACKENDS = ("chunkwise--torch_autograd", "chunkwise--torch", "chunkwise--cpp")


def time_backend(backend: str, B: int, S: int, NH: int, DH: int, chunk: int, reps: int) -> tuple[float, float]:
    from kernels.mlstm import mlstm

    g = torch.Generator().manual_seed(0)
    qkv = [torch.randn(B, S, NH, DH, generator=g).transpose(1, 2).requires_grad_() for _ in range(3)]
    # gates as at the model's init: input gates near 0, forget gates of bias 3..6 (a slow decay)
    igate = (torch.randn(B, NH, S, generator=g) * 0.1).requires_grad_()
    fgate = (torch.linspace(3.0, 6.0, NH)[:, None] + torch.randn(B, NH, S, generator=g) * 0.1).requires_grad_()
    leaves = [*qkv, igate, fgate]

    def fwd():
        with torch.no_grad():
            mlstm(*leaves, backend=backend, chunk_size=chunk)

    def fwd_bwd():
        for t in leaves:
            t.grad = None
        mlstm(*leaves, backend=backend, chunk_size=chunk).sum().backward()

    return median_seconds(fwd, reps), median_seconds(fwd_bwd, reps)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kernels.bench.mlstm_cpu")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--shapes", nargs="+", default=["16x256", "2x2048"], help="B x S")
    p.add_argument("--chunk", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--reps", type=int, default=7)
    a = p.parse_args(argv)
    malloc = cpu_malloc()
    rows = []
    for threads in a.threads:
        torch.set_num_threads(threads)
        for shape in a.shapes:
            B, S = (int(x) for x in shape.split("x"))
            for chunk in a.chunk:
                times = {be: time_backend(be, B, S, 4, 64, chunk, a.reps) for be in BACKENDS}
                for backend, (fwd, fwd_bwd) in times.items():
                    rows.append({"B": B, "S": S, "NH": 4, "DH": 64, "chunk": chunk, "threads": threads,
                                 "backend": backend, "fwd_ms": round(fwd * 1e3, 2), "fwd_bwd_ms": round(fwd_bwd * 1e3, 2),
                                 "speedup_fwd_bwd_vs_torch": round(times["chunkwise--torch"][1] / fwd_bwd, 2),
                                 **cpu_label(malloc)})
                    print(rows[-1], flush=True)
    write_csv(rows, ROOT / "results" / "kernels" / "mlstm_cpu.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
