"""Keep freed memory in the process (glibc malloc) for CPU training and benchmarks.

A CPU training step frees and allocates the same large tensors every step (activations, their gradients, the
logits). By default glibc serves blocks above its mmap threshold (128 KiB to 32 MiB) with fresh mappings and returns
them to the system on free, so every step pays the page faults of mapping and zeroing them again: a quarter to a
third of a step at the small scale's widths (results/lm/train_throughput.csv, rows with and without). With
``retain_freed_memory()`` (mallopt: no mmap for large blocks, no trimming of the heap, growth in 256 MiB steps)
freed blocks are reused; the process's resident memory stays at its peak, which a training process returns to
every step anyway.

glibc only (Linux); elsewhere, or with ``SUITE_MALLOC=default`` in the environment, malloc is left as it is.
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4  # glibc's mallopt parameters (malloc.h)
_applied = False


def retain_freed_memory() -> bool:
    """Apply the setting once per process; True when it is in effect."""
    global _applied
    if _applied:
        return True
    if os.environ.get("SUITE_MALLOC") == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    # no mmap for large blocks; trim the heap only above 1 GiB free; grow it 256 MiB at a time
    _applied = all(mallopt(param, value) for param, value in ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 2**30),
                                                                  (M_TOP_PAD, 2**28)))
    return _applied
