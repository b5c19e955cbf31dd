"""Timing and CSV helpers shared by the kernel benchmarks (CUDA, and the CPU loops' benchmarks)."""
from __future__ import annotations

import csv
import platform
import re
import subprocess
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[2]


def require_cuda() -> str:
    if not torch.cuda.is_available():
        raise SystemExit("error: the kernel benchmarks need a CUDA GPU; on CPU the kernels are checked by pytest "
                         "under TRITON_INTERPRET=1")
    return torch.cuda.get_device_name(0)


def cpu_malloc() -> str:
    """Keep freed memory in the process as CPU training does (experiments/allocator.py); the mode for cpu_label."""
    from experiments.allocator import retain_freed_memory

    return "retain" if retain_freed_memory() else "default"


def cpu_label(malloc: str) -> dict:
    """The columns of every CPU benchmark row: the machine with this process's thread count, torch, the allocator
    mode (experiments/allocator.py) and the commit."""
    from experiments.results import commit_label

    return {"hardware": f"cpu: {platform.machine()} ({torch.get_num_threads()} threads)", "torch": torch.__version__,
            "malloc": malloc, "commit": commit_label()}


def gpu_slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def bench_ms(fn: Callable[[], object]) -> float:
    """Median milliseconds over triton's do_bench (25 ms warm-up, 100 ms of repetitions, cache flushed)."""
    import triton

    return float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))


def fwd_and_fwd_bwd(run: Callable[[], torch.Tensor], leaves: list[torch.Tensor]) -> tuple[float, float]:
    """(forward ms, forward + backward ms) of ``run``; the backward seeds a gradient of ones."""
    with torch.no_grad():
        fwd = bench_ms(run)

    def both():
        for t in leaves:
            t.grad = None
        out = run()
        out.backward(torch.ones_like(out))

    return fwd, bench_ms(both)


def measure(run: Callable[[], torch.Tensor], leaves: list[torch.Tensor]) -> dict:
    """fwd_ms, fwd_bwd_ms and a status; a competitor that fails (out of memory, an unsupported size) is recorded as
    such and the sweep goes on."""
    import math

    try:
        fwd, both = fwd_and_fwd_bwd(run, leaves)
        return {"fwd_ms": round(fwd, 4), "fwd_bwd_ms": round(both, 4), "status": "ok"}
    except Exception as err:
        torch.cuda.empty_cache()
        message = str(err).splitlines()[0][:120] if str(err) else ""
        return {"fwd_ms": math.nan, "fwd_bwd_ms": math.nan, "status": f"failed: {type(err).__name__}: {message}"}


def provenance(gpu: str) -> dict:
    import triton

    return {"gpu": gpu, "torch": torch.__version__, "triton": triton.__version__, "commit": commit()}


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {path}")
