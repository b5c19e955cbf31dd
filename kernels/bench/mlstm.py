"""mLSTM kernel benchmark in TFLA's constant-token sweep: 65,536 tokens per batch, S = 512 ... 65,536, NH 16,
DK 128 (and 256), DV 256, bf16. Forward and forward+backward median ms of: our chunkwise--triton (chunk 64 and
128), chunkwise--torch (up to S 8192), torch SDPA causal attention (flash) with 16 heads of 128 at the same B*S,
and TFLA (mlstm-kernels' chunkwise--triton_xl_chunk) when installed."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from kernels.mlstm import mlstm

from .common import ROOT, gpu_slug, measure, provenance, require_cuda, write_csv

TOKENS = 65536


def _inputs(B, NH, S, DK, DV, dtype):
    q, k = (torch.randn(B, NH, S, DK, device="cuda", dtype=dtype, requires_grad=True) for _ in range(2))
    v = torch.randn(B, NH, S, DV, device="cuda", dtype=dtype, requires_grad=True)
    i = torch.randn(B, NH, S, device="cuda", dtype=dtype, requires_grad=True)
    f = (torch.randn(B, NH, S, device="cuda", dtype=dtype) + 3).requires_grad_()
    return [q, k, v, i, f]


def _competitors(B, NH, S, DK, DV, dtype):
    leaves = _inputs(B, NH, S, DK, DV, dtype)
    for chunk in (64, 128):
        yield f"ours chunkwise--triton L{chunk}", (lambda c=chunk: mlstm(*leaves, backend="chunkwise--triton",
                                                                          chunk_size=c)), leaves
    if S <= 8192:
        yield "chunkwise--torch L64", (lambda: mlstm(*leaves, backend="chunkwise--torch", chunk_size=64)), leaves
    att = [torch.randn(B, 16, S, 128, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3)]
    yield "torch sdpa causal (16 x 128)", (lambda: torch.nn.functional.scaled_dot_product_attention(
        *att, is_causal=True)), att
    try:
        from mlstm_kernels.torch import get_mlstm_kernel
    except ImportError:
        return
    tfla = get_mlstm_kernel("chunkwise--triton_xl_chunk")
    yield "TFLA xl_chunk (mlstm-kernels)", (lambda: tfla(*leaves, chunk_size=128)), leaves


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kernels.bench mlstm")
    p.add_argument("--seq", type=int, nargs="+", default=[2 ** e for e in range(9, 17)])
    p.add_argument("--dk", type=int, nargs="+", default=[128, 256])
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    gpu = require_cuda()
    rows, start = [], time.time()
    for DK in a.dk:
        for S in a.seq:
            B = max(1, TOKENS // S)
            for name, run, leaves in _competitors(B, 16, S, DK, 256, torch.bfloat16):
                rows.append({"kernel": name, "S": S, "B": B, "NH": 16, "DK": DK, "DV": 256, "dtype": "bf16",
                             **measure(run, leaves), **provenance(gpu)})
                print(rows[-1], flush=True)
    write_csv(rows, Path(a.out) if a.out else ROOT / "results" / "kernels" / f"mlstm_{gpu_slug(gpu)}.csv")
    print(f"{time.time() - start:.0f} s")
    return 0
