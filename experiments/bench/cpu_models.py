"""CPU speed of small xLSTM language models: our chunkwise and parallel mLSTM forms, and the official package.

    python -m experiments.bench.cpu_models [--official-python /path/to/venv/bin/python] [--ctx 512 2048 8192]

Writes results/kernels/cpu_models.csv (one row per arch x implementation x context; batch 1, fwd and fwd+bwd
median seconds). The official ``xlstm`` package shares our package's import name, so it runs in its own
environment: create one with ``python3 -m venv V && V/bin/pip install "torch<2.14" xlstm`` and pass V/bin/python.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

import xlstm
from experiments.results import ROOT, commit_label, hardware
from kernels.bench.common import write_csv

from .timing import time_lm

# (arch, blocks): xLSTM[1:0] with 4 blocks and xLSTM[7:1] with 8 (one sLSTM block), width 128, 4 heads.
MODELS = [("xlstm[1:0]", 4), ("xlstm[7:1]", 8)]
DIM, VOCAB = 128, 1000
PARALLEL_MAX_CTX = 2048  # the quadratic forms need O(ctx^2) memory per head; above this they take minutes


def ours(arch: str, blocks: int, ctx: int, backend: str, reps: int) -> dict:
    torch.manual_seed(0)
    model = xlstm.build(arch, embedding_dim=DIM, num_blocks=blocks, vocab_size=VOCAB, mlstm_backend=backend)
    result = time_lm(model, torch.randint(0, VOCAB, (1, ctx)), reps=reps)
    return {**result, "params": sum(p.numel() for p in model.parameters())}


def official(python: str, arch: str, blocks: int, ctx: int, reps: int, threads: int) -> dict:
    slstm_at = xlstm.stack.slstm_positions(arch, blocks)
    script = Path(__file__).with_name("official_xlstm.py")
    cmd = [python, str(script), "--blocks", str(blocks), "--dim", str(DIM), "--ctx", str(ctx), "--vocab", str(VOCAB),
           "--reps", str(reps), "--threads", str(threads), "--slstm-at", *map(str, slstm_at)]
    out = subprocess.run(cmd, cwd="/", capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments.bench.cpu_models")
    p.add_argument("--official-python", default=None, help="python of an environment with the official xlstm")
    p.add_argument("--ctx", type=int, nargs="+", default=[512, 2048, 8192])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "results" / "kernels" / "cpu_models.csv"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    commit = commit_label()
    rows = []
    for arch, blocks in MODELS:
        for ctx in a.ctx:
            impls = ["chunkwise--torch"] + (["parallel--torch"] if ctx <= PARALLEL_MAX_CTX else [])
            runs = {f"ours {b}": ours(arch, blocks, ctx, b, a.reps) for b in impls}
            if a.official_python and ctx <= PARALLEL_MAX_CTX:
                runs["official xlstm (parallel)"] = official(a.official_python, arch, blocks, ctx, a.reps, a.threads)
            for impl, r in runs.items():
                row = {"arch": arch, "blocks": blocks, "dim": DIM, "ctx": ctx, "batch": 1, "impl": impl,
                       "fwd_s": round(r["fwd_s"], 4), "fwd_bwd_s": round(r["fwd_bwd_s"], 4),
                       "tokens_per_s_fwd_bwd": round(ctx / r["fwd_bwd_s"], 1), "params": r["params"],
                       "threads": a.threads, "hardware": hardware(), "commit": commit}
                rows.append(row)
                print(json.dumps(row), flush=True)
    write_csv(rows, Path(a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
