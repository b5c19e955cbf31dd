"""The Triton mLSTM kernels against the float64 parallel reference: outputs, final states, every gradient.

On CPU they run under TRITON_INTERPRET=1 (set by tests/conftest.py) at tiny shapes; the ``gpu`` tests repeat the
comparison at realistic shapes on CUDA. Outputs are allocated NaN-filled (tests/kernels/conftest.py), so an element
a kernel never writes fails the comparison.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kernels.mlstm import BACKENDS, mlstm
from kernels.testing import assert_close, mlstm_inputs

pytestmark = pytest.mark.skipif("chunkwise--triton" not in BACKENDS, reason="triton is not installed")
ROOT = Path(__file__).resolve().parents[2]

# (B, NH, S, DK, DV, chunk): odd S, S < chunk, S a multiple of the chunk, DK != DV, head dims that are not powers of 2,
# head dims above 64 (two tiles each, the second partly masked), head dims above 256 (five tiles; the paper's 125M and
# 1.3B heads are 384 and 1024 wide)
CASES = [(1, 2, 37, 16, 32, 16), (2, 1, 32, 16, 16, 16), (1, 1, 5, 24, 20, 16), (1, 1, 70, 32, 48, 32),
         (1, 1, 21, 80, 72, 16), (1, 1, 19, 272, 300, 16)]
# float32 kernels vs the float64 reference: the same sums in float32 (~1e-7 relative per operation, a few hundred
# terms): 2e-5 leaves two orders of magnitude and still fails on any wrong term.
RATIO = 2e-5


def _run(backend, inputs, state, chunk, dtype):
    leaves = [t.to(dtype).clone().requires_grad_() for t in inputs]
    state_dtype = torch.float64 if dtype == torch.float64 else torch.float32  # states are float32 for half inputs
    state_leaves = None if state is None else (*(t.to(state_dtype).clone().requires_grad_() for t in state[:2]),
                                               state[2].to(state_dtype))
    h, (c, n, m) = mlstm(*leaves, backend=backend, chunk_size=chunk, initial_state=state_leaves,
                         return_last_state=True)
    g = torch.Generator().manual_seed(1)
    weights = [torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.device) for t in (h, c, n)]
    sum((t.double() * w).sum() for t, w in zip((h, c, n), weights)).backward()
    grads = [t.grad for t in leaves] + ([] if state is None else [t.grad for t in state_leaves[:2]])
    return (h, c, n, m), grads


# the recurrent kernel loops over time, slow under the interpreter: the short cases it takes (DK up to 256)
BACKEND_CASES = [("chunkwise--triton", c) for c in CASES] + [("recurrent--triton", c) for c in CASES
                                                              if c[2] <= 40 and c[3] <= 256]


@pytest.mark.parametrize("carried", [False, True], ids=["fresh", "carried"])
@pytest.mark.parametrize("backend, case", BACKEND_CASES,
                         ids=[f"{b.split('--')[0]}-" + "B{}-NH{}-S{}-DK{}-DV{}-L{}".format(*c) for b, c in BACKEND_CASES])
def test_matches_the_float64_reference(backend, case, carried):
    B, NH, S, DK, DV, chunk = case
    inputs, state = mlstm_inputs(B, NH, S, DK, DV, with_state=carried)
    (h_ref, c_ref, n_ref, m_ref), g_ref = _run("parallel--torch", inputs, state, chunk, torch.float64)
    (h, c, n, m), g = _run(backend, inputs, state, chunk, torch.float32)
    assert h.dtype == torch.float32 and c.dtype == torch.float32
    for name, r, o in zip("hCn", (h_ref, c_ref, n_ref), (h, c, n)):
        assert_close(f"{backend} {name}", r, o, RATIO)
    assert (m_ref - m).abs().max() < 1e-5
    for name, r, o in zip(["dq", "dk", "dv", "di", "df", "dC0", "dn0"], g_ref, g):
        assert_close(f"{backend} {name}", r, o, RATIO)


def test_two_calls_with_carried_state_equal_one_call():
    inputs, _ = mlstm_inputs(1, 2, 40, 16, 16, dtype=torch.float32)
    full, last = mlstm(*inputs, backend="chunkwise--triton", chunk_size=16, return_last_state=True)
    first, mid = mlstm(*(t[:, :, :23] for t in inputs), backend="chunkwise--triton", chunk_size=16,
                       return_last_state=True)
    second, end = mlstm(*(t[:, :, 23:] for t in inputs), backend="chunkwise--triton", chunk_size=16,
                        initial_state=mid, return_last_state=True)
    assert_close("h", full, torch.cat([first, second], 2), 1e-5)
    for name, a, b in zip("Cnm", last, end):
        assert_close(name, a, b, 1e-5)


def test_extreme_gates_match_the_recurrent_form():
    """Gate pre-activations from {+-1e4, +-30, 0}: finite values and gradients, equal to the torch recurrence."""
    g = torch.Generator().manual_seed(0)
    B, NH, S, D = 1, 2, 48, 16
    q, k = (torch.randn(B, NH, S, D, generator=g).abs() for _ in range(2))
    v = torch.randn(B, NH, S, D, generator=g)
    extreme = torch.tensor([-1e4, -30.0, 0.0, 30.0, 1e4])
    igate, fgate = (extreme[torch.randint(0, 5, (B, NH, S), generator=g)] for _ in range(2))
    outs = {}
    for backend in ("recurrent--torch", "chunkwise--triton"):
        leaves = [t.clone().requires_grad_() for t in (q, k, v, igate, fgate)]
        h = mlstm(*leaves, backend=backend, chunk_size=16)
        (h * torch.linspace(-1, 1, D)).sum().backward()
        outs[backend] = (h, [t.grad for t in leaves])
    h_ref, g_ref = outs["recurrent--torch"]
    h, grads = outs["chunkwise--triton"]
    assert torch.isfinite(h).all() and all(torch.isfinite(t).all() for t in grads)
    assert_close("h", h_ref, h, 1e-5)
    for name, a, b in zip(["dq", "dk", "dv", "di", "df"], g_ref, grads):
        assert_close(name, a, b, 1e-4)


def test_bf16_inputs_with_float32_states():
    """bf16 inputs: the reference runs in float64 on the same (rounded) inputs; bf16 outputs carry their 2^-8
    rounding, gradients are returned in bf16 too: 1e-2."""
    inputs, _ = mlstm_inputs(1, 2, 33, 16, 16, dtype=torch.float32)
    rounded = [t.to(torch.bfloat16) for t in inputs]
    ref = [t.double().requires_grad_() for t in rounded]
    out = [t.clone().requires_grad_() for t in rounded]
    h_ref, (c_ref, _, _) = mlstm(*ref, backend="parallel--torch", return_last_state=True)
    h, (c, n, m) = mlstm(*out, backend="chunkwise--triton", chunk_size=16, return_last_state=True)
    assert h.dtype == torch.bfloat16 and c.dtype == torch.float32 and m.dtype == torch.float32
    assert_close("h", h_ref, h, 1e-2)
    assert_close("C", c_ref, c, 1e-5)
    w = torch.randn(h.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    (h_ref * w).sum().backward()
    (h.double() * w).sum().backward()
    for name, a, b in zip(["dq", "dk", "dv", "di", "df"], ref, out):
        assert b.grad.dtype == torch.bfloat16
        assert_close(name, a.grad, b.grad, 1e-2)


def test_unsupported_shapes_are_refused_with_a_message(monkeypatch):
    inputs, _ = mlstm_inputs(1, 1, 8, 8, 16, dtype=torch.float32)
    with pytest.raises(ValueError, match="head dims of at least 16"):
        mlstm(*inputs, backend="chunkwise--triton")
    inputs, _ = mlstm_inputs(1, 1, 4, 272, 16, dtype=torch.float32)
    with pytest.raises(ValueError, match="DK up to 256"):
        mlstm(*inputs, backend="recurrent--triton")
    inputs, _ = mlstm_inputs(1, 1, 8, 16, 16, dtype=torch.float32)
    with pytest.raises(ValueError, match="chunk_size"):
        mlstm(*inputs, backend="chunkwise--triton", chunk_size=48)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="chunkwise--torch"):
        mlstm(*inputs, backend="chunkwise--triton")


def test_auto_picks_triton_only_on_cuda():
    from kernels.mlstm import resolve_backend

    assert resolve_backend("auto", torch.device("cpu")) != "chunkwise--triton"  # chunkwise--cpp or --torch
    assert resolve_backend("auto", torch.device("cuda")) == "chunkwise--triton"
    assert resolve_backend("auto", torch.device("cuda"), (8, 8)) == "chunkwise--torch"  # too small to tile
    assert resolve_backend("auto", torch.device("cuda"), (1024, 1024)) == "chunkwise--triton"  # the 1.3B heads
    assert resolve_backend("auto", torch.device("cuda"), chunk_size=48) == "chunkwise--torch"


@pytest.mark.slow
def test_kernels_compile_for_hopper_without_a_gpu():
    """Lower every kernel to PTX and cubin for sm_90, as the GPU machines would (no interpreter); minutes on 2 cores."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "kernels.compile_check", "--arch", "90"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count(": ok") == 2 * 7  # bf16 and fp32 x 7 kernels (5 mLSTM, sLSTM forward and backward)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", [(2, 4, 1000, 128, 256, 64), (1, 2, 777, 64, 64, 128), (1, 1, 300, 256, 192, 32),
                                   (1, 2, 500, 384, 384, 64), (1, 1, 256, 1024, 1024, 64)])
def test_gpu_matches_the_reference(shape, dtype):
    """The reference runs in float64 on the inputs rounded to ``dtype`` (what the kernel sees): the tolerance is the
    kernel's own rounding (float32: 1e-4; bf16 outputs and gradients carry 2^-8: 2e-2), not the inputs'."""
    B, NH, S, DK, DV, chunk = shape
    inputs, state = mlstm_inputs(B, NH, S, DK, DV, dtype=torch.float64, with_state=True)
    cuda = [t.cuda().to(dtype).double() for t in inputs]
    cuda_state = tuple(t.cuda() for t in state)
    (h_ref, c_ref, n_ref, _), g_ref = _run("chunkwise--torch", cuda, cuda_state, 64, torch.float64)
    (h, c, n, _), g = _run("chunkwise--triton", cuda, cuda_state, chunk, dtype)
    ratio = 1e-4 if dtype == torch.float32 else 2e-2
    for name, r, o in zip("hCn", (h_ref, c_ref, n_ref), (h, c, n)):
        assert_close(name, r, o, ratio)
    for name, r, o in zip(["dq", "dk", "dv", "di", "df", "dC0", "dn0"], g_ref, g):
        assert_close(name, r, o, ratio)
