"""Build a small C++ source of this package into a shared library once per machine, and load it with ctypes.

The libraries use no torch headers (plain pointers and sizes), so a build takes a second or two with the system's
C++ compiler (``$CXX``, else ``g++``, with OpenMP). They are compiled with ``-march=native``, so the cache key holds
the source, the flags, the compiler's version and the CPU's feature flags: a cache in a home directory shared by
different cluster nodes never hands one node another's instructions. Cache folder: ``$XLSTM_SUITE_CACHE`` or
``~/.cache/xlstm-suite``; each library is written to a temporary name and renamed into place, so processes that build
at once (DDP ranks) never load a half-written file.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

FLAGS = ["-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c++17"]
DTYPE_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}  # the sources' entry points: name_f32, name_f64


class NativeBuildError(RuntimeError):
    pass


def _compiler() -> str:
    name = os.environ.get("CXX", "g++")
    path = shutil.which(name)
    if path is None:
        raise NativeBuildError(f"no C++ compiler: {name!r} is not on PATH (install g++ or set CXX)")
    return path


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cache_dir() -> Path:
    return Path(os.environ.get("XLSTM_SUITE_CACHE", Path.home() / ".cache" / "xlstm-suite")) / "native"


@functools.cache
def load_library(source: Path) -> ctypes.CDLL:
    """The compiled ``source`` (built on first use); raises NativeBuildError with the compiler's message."""
    compiler = _compiler()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([source.read_text(), *FLAGS, version, _cpu_flags()]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"{source.stem}-{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".so", delete=False) as tmp:
            pass
        built = subprocess.run([compiler, *FLAGS, str(source), "-o", tmp.name], capture_output=True, text=True)
        if built.returncode != 0:
            os.unlink(tmp.name)
            raise NativeBuildError(f"building {source.name} failed: {built.stderr.strip()[-2000:]}")
        os.replace(tmp.name, target)
    return ctypes.CDLL(str(target))


@functools.cache
def available(source: Path) -> bool:
    """Whether ``source`` builds and loads here (asked once per process)."""
    try:
        load_library(source)
    except (NativeBuildError, OSError):
        return False
    return True


def entry(source: Path, name: str, dtype: torch.dtype, what: str, instead: str):
    """The entry point ``{name}_{f32|f64}`` of the compiled ``source``; a failed build raises one line saying which
    backend (``what``) cannot run and what to use ``instead``."""
    try:
        library = load_library(source)
    except NativeBuildError as error:
        raise RuntimeError(f"{what} cannot be built here ({error}); use {instead}") from None
    return getattr(library, f"{name}_{DTYPE_SUFFIX[dtype]}")


def pointer(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())
