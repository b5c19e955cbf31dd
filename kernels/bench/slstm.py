"""sLSTM kernel benchmark: B 16 ... 256, S 1024, NH 4, DH 64 / 128 / 192, bf16. Forward and forward+backward median
ms of: our fused triton kernel, the torch loop, the torch loop as one autograd node (torch_fused), the torch loop around a torch.compile'd step, and FlashRNN's
triton_fused and cuda_fused backends when the flashrnn package is installed."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from kernels.slstm import slstm
from kernels.slstm.reference import slstm_step, zero_state

from .common import ROOT, gpu_slug, measure, provenance, require_cuda, write_csv


def _compiled_loop():
    step = torch.compile(slstm_step)

    def run(x, R, b):
        B, S, _, NH, DH = x.shape
        state, hs = zero_state(B, NH, DH, torch.float32, x.device), []
        for x_t in x.float().unbind(1):
            h, state = step(x_t, R.float(), b.float(), state)
            hs.append(h)
        return torch.stack(hs, 1).to(x.dtype)

    return run


def _competitors(B, S, NH, DH, dtype):
    x = torch.randn(B, S, 4, NH, DH, device="cuda", dtype=dtype, requires_grad=True)
    R = (torch.randn(4, NH, DH, DH, device="cuda", dtype=dtype) / DH ** 0.5).requires_grad_()
    b = torch.randn(4, NH, DH, device="cuda", dtype=dtype, requires_grad=True)
    leaves = [x, R, b]
    yield "ours triton", (lambda: slstm(x, R, b, backend="triton")), leaves
    yield "torch loop", (lambda: slstm(x, R, b, backend="torch")), leaves
    yield "torch loop, fused backward", (lambda: slstm(x, R, b, backend="torch_fused")), leaves
    compiled = _compiled_loop()
    yield "torch loop, compiled step", (lambda: compiled(x, R, b)), leaves
    try:
        from flashrnn import flashrnn
    except ImportError:
        return
    for backend in ("triton_fused", "cuda_fused"):
        yield f"FlashRNN {backend}", (lambda be=backend: flashrnn(x, R, b, function="slstm", backend=be,
                                                                  dtype="bfloat16")[0][0]), leaves


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kernels.bench slstm")
    p.add_argument("--batch", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    p.add_argument("--head-dim", type=int, nargs="+", default=[64, 128, 192])
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    gpu = require_cuda()
    rows, start = [], time.time()
    for DH in a.head_dim:
        for B in a.batch:
            for name, run, leaves in _competitors(B, a.seq, 4, DH, torch.bfloat16):
                rows.append({"kernel": name, "B": B, "S": a.seq, "NH": 4, "DH": DH, "dtype": "bf16",
                             **measure(run, leaves), **provenance(gpu)})
                print(rows[-1], flush=True)
    write_csv(rows, Path(a.out) if a.out else ROOT / "results" / "kernels" / f"slstm_{gpu_slug(gpu)}.csv")
    print(f"{time.time() - start:.0f} s")
    return 0
