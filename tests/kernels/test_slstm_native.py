"""What is particular to the compiled sLSTM loops (backend "cpp"; their values and gradients against the reference
loop: test_slstm.py and test_slstm_fused.py): thread count, the choice of "auto" on a CPU, the build and its cache."""
from __future__ import annotations

import importlib

import pytest
import torch

from kernels import native
from kernels.slstm import resolve_backend, slstm_forward

from .test_slstm_triton import _inputs, _run

slstm_native = importlib.import_module("kernels.slstm.native")
slstm_package = importlib.import_module("kernels.slstm")


def test_results_do_not_depend_on_the_thread_count():
    """Each (head, batch row) chain runs on one thread from start to end, so 1 and 2 threads give the same bits."""
    inputs, state = _inputs(3, 13, 2, 8, with_state=True, scale=2.0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run("cpp", inputs, state, torch.float32, clip=0.1)
        torch.set_num_threads(2)
        two = _run("cpp", inputs, state, torch.float32, clip=0.1)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip([*one[0], *one[1]], [*two[0], *two[1]]):
        assert torch.equal(a, b)


def test_auto_takes_the_compiled_loop_for_small_steps_on_a_cpu(monkeypatch):
    cpu = torch.device("cpu")
    per_thread = slstm_package.CPP_MAX_STEP_ELEMENTS_PER_THREAD * torch.get_num_threads()
    assert resolve_backend("auto", cpu, 32, step_elements=128) == "cpp"  # batch 1, 4 heads of 32
    assert resolve_backend("auto", cpu, 32, step_elements=per_thread) == "cpp"
    assert resolve_backend("auto", cpu, 32, step_elements=per_thread + 1) == "torch_fused"
    assert resolve_backend("auto", cpu, 32, "sigmoid", step_elements=128) == "cpp"  # the ablation gate: cpp has it
    assert resolve_backend("auto", torch.device("cuda"), 32, step_elements=128) == "triton"
    monkeypatch.setattr(slstm_package, "cpp_available", lambda: False)  # no compiler on this machine
    assert resolve_backend("auto", cpu, 32, step_elements=128) == "torch_fused"


def test_auto_runs_the_compiled_loop_on_small_steps(monkeypatch):
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return slstm_native.slstm_cpp(*args, **kwargs)

    monkeypatch.setitem(slstm_package.BACKENDS, "cpp", counted)
    (x, R, b), _ = _inputs(1, 5, 2, 4)
    slstm_forward(x, R, b)
    assert calls == [1]


def test_an_explicit_cpp_without_a_build_says_what_to_use(monkeypatch):
    def fail(source):
        raise native.NativeBuildError("no C++ compiler: 'g++' is not on PATH (install g++ or set CXX)")

    monkeypatch.setattr(native, "load_library", fail)
    (x, R, b), _ = _inputs(1, 3, 1, 4)
    with pytest.raises(RuntimeError, match="use slstm_backend=torch_fused"):
        slstm_forward(x, R, b, backend="cpp")


def test_build_errors_and_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XLSTM_SUITE_CACHE", str(tmp_path / "cache"))
    good = tmp_path / "good.cpp"
    good.write_text('extern "C" int answer() { return 42; }\n')
    assert native.load_library(good).answer() == 42
    built = list((tmp_path / "cache" / "native").glob("good-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    native.load_library.cache_clear()
    assert native.load_library(good).answer() == 42  # loaded from the cache, not rebuilt
    assert built[0].stat().st_mtime_ns == stamp
    bad = tmp_path / "bad.cpp"
    bad.write_text("this is not C++\n")
    with pytest.raises(native.NativeBuildError, match="building bad.cpp failed"):
        native.load_library(bad)
    assert not list((tmp_path / "cache" / "native").glob("tmp*"))  # no half-written file left behind
    monkeypatch.setenv("CXX", "no-such-compiler")
    native.load_library.cache_clear()
    with pytest.raises(native.NativeBuildError, match="no C\\+\\+ compiler"):
        native.load_library(good)
    native.load_library.cache_clear()
