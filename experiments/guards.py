"""Checks against the machine before a run trains: will the model fit in memory, can the results and checkpoint
folders be written, is the checkpoint to resume from readable. Each failure is one line that says what to do."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .config import SuiteError

# fp32 weights, their gradients and AdamW's two moments: 16 bytes per parameter before any activation
BYTES_PER_PARAMETER = 16


def available_memory(accelerator: str) -> tuple[int, str]:
    """(bytes, where) of the memory a run on ``accelerator`` can use: free GPU memory, or the host's available RAM."""
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.cuda.mem_get_info()[0], f"free on {torch.cuda.get_device_name(0)}"
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
        return info["MemAvailable"], "available RAM"
    except (OSError, KeyError, ValueError, IndexError):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"), "available RAM"


def check_fits(network: nn.Module, accelerator: str, what: str) -> int:
    """``network`` built on the meta device (no memory); returns its parameter count, or refuses a model whose
    weights, gradients and optimizer states alone exceed the memory there is."""
    params = sum(p.numel() for p in network.parameters())
    need = params * BYTES_PER_PARAMETER
    have, where = available_memory(accelerator)
    if need > have:
        raise SuiteError(f"{what}: {params / 1e6:,.1f}M parameters need ~{need / 2**30:,.1f} GiB for weights, gradients "
                         f"and AdamW states, but this machine has {have / 2**30:,.1f} GiB {where}; lower "
                         "model.embedding_dim or model.num_blocks")
    return params


def check_writable(folder: Path, key: str) -> None:
    """Create ``folder`` and write a probe file into it, so an unwritable results or checkpoint folder is found
    before training, not after."""
    probe = folder / f".write_probe{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise SuiteError(f"{key}: cannot write to {folder} ({err.strerror or err}); point {key} at a writable "
                         "folder") from None


def check_checkpoint(path: Path) -> None:
    """A checkpoint to resume from must open as one (torch's zip format, read lazily: a truncated or empty file
    fails here in milliseconds, not in a traceback from deep inside the restore)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        if not isinstance(state, dict) or "state_dict" not in state or "global_step" not in state:
            raise ValueError("not a Lightning checkpoint")
    except Exception as err:  # zip, pickle and value errors: all mean the file is unusable
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise SuiteError(f"cannot resume from {path}: {reason}; delete it (and its folder) to start that point over")
