"""The fused Triton sLSTM against the float64 torch loop: outputs, final states, every gradient (x, R, b, initial
h, c, n), carried states, extreme gates, the recurrent-gradient clip. CPU: TRITON_INTERPRET=1 at tiny shapes; the
``gpu`` tests use realistic ones."""
from __future__ import annotations

import pytest
import torch

from kernels.slstm import BACKENDS, slstm, slstm_forward
from kernels.testing import assert_close

pytestmark = pytest.mark.skipif("triton" not in BACKENDS, reason="triton is not installed")
# float32 kernel vs the float64 loop: per-step rounding (~1e-7) through S steps; 2e-5 keeps two orders of margin
RATIO = 2e-5


def _inputs(B, S, NH, DH, scale=1.0, seed=0, with_state=False, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, S, 4, NH, DH, generator=g, dtype=torch.float64) * scale
    R = torch.randn(4, NH, DH, DH, generator=g, dtype=torch.float64) / DH ** 0.5
    b = torch.randn(4, NH, DH, generator=g, dtype=torch.float64)
    state = None
    if with_state:
        state = (torch.randn(B, NH, DH, generator=g, dtype=torch.float64),
                 torch.randn(B, NH, DH, generator=g, dtype=torch.float64),
                 torch.rand(B, NH, DH, generator=g, dtype=torch.float64) + 1,
                 torch.randn(B, NH, DH, generator=g, dtype=torch.float64))
    move = (lambda t: t.to(device))
    return [move(t) for t in (x, R, b)], None if state is None else tuple(move(t) for t in state)


def _run(backend, inputs, state, dtype, clip=None):
    leaves = [t.to(dtype).clone().requires_grad_() for t in inputs]
    state_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    state_leaves = None if state is None else (*(t.to(state_dtype).clone().requires_grad_() for t in state[:3]),
                                               state[3].to(state_dtype))
    h, last = slstm_forward(*leaves, backend=backend, initial_state=state_leaves, return_last_state=True,
                            recurrent_grad_clip=clip)
    g = torch.Generator().manual_seed(5)
    weights = [torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.device) for t in (h, *last[:3])]
    sum((t.double() * w).sum() for t, w in zip((h, *last[:3]), weights)).backward()
    grads = [t.grad for t in leaves] + ([] if state is None else [t.grad for t in state_leaves[:3]])
    return (h, *last), grads


# DH 72, 192 and 300 take several 64-unit tiles of R per step in both directions (the last one partly masked); 192 is
# the paper's 125M head
CASES = [(2, 7, 2, 16, False), (3, 5, 1, 20, True), (1, 9, 1, 32, True), (17, 3, 1, 16, False), (2, 4, 1, 72, True),
         (1, 3, 1, 192, False), (1, 2, 1, 300, True)]


@pytest.mark.parametrize("B, S, NH, DH, carried", CASES,
                         ids=["B{}-S{}-NH{}-DH{}-{}".format(*c[:4], "carried" if c[4] else "fresh") for c in CASES])
def test_matches_the_float64_loop(B, S, NH, DH, carried):
    inputs, state = _inputs(B, S, NH, DH, with_state=carried)
    ref, g_ref = _run("torch", inputs, state, torch.float64)
    out, g_out = _run("triton", inputs, state, torch.float32)
    for name, r, o in zip(["h", "h_last", "c", "n", "m"], ref, out):
        assert_close(name, r, o, RATIO)
    for name, r, o in zip(["dx", "dR", "db", "dh0", "dc0", "dn0"], g_ref, g_out):
        assert_close(name, r, o, RATIO)


def test_recurrent_gradient_clip_matches_the_loop():
    inputs, _ = _inputs(2, 6, 2, 16, scale=2.0)
    _, g_ref = _run("torch", inputs, None, torch.float64, clip=0.05)
    _, g_out = _run("triton", inputs, None, torch.float32, clip=0.05)
    _, g_free = _run("torch", inputs, None, torch.float64)
    assert not torch.allclose(g_ref[0], g_free[0])  # the clip is active here
    for name, r, o in zip(["dx", "dR", "db"], g_ref, g_out):
        assert_close(name, r, o, RATIO)


def test_two_calls_with_carried_state_equal_one_call():
    (x, R, b), _ = _inputs(2, 10, 2, 16)
    x, R, b = x.float(), R.float(), b.float()
    full, last = slstm(x, R, b, backend="triton", return_last_state=True)
    first, mid = slstm(x[:, :4], R, b, backend="triton", return_last_state=True)
    second, end = slstm(x[:, 4:], R, b, backend="triton", initial_state=mid, return_last_state=True)
    assert_close("h", full, torch.cat([first, second], 1), 1e-6)
    for name, u, w in zip("hcnm", last, end):
        assert_close(name, u, w, 1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_extreme_gates(dtype):
    """Pre-activations of order 1e4: finite outputs and gradients; float32 states; equal to the torch loop."""
    inputs, _ = _inputs(2, 12, 1, 16, scale=1e4)
    ref, g_ref = _run("torch", [t.to(dtype).double() for t in inputs], None, torch.float64)
    out, g_out = _run("triton", inputs, None, dtype)
    assert out[0].dtype == dtype and out[2].dtype == torch.float32
    assert torch.isfinite(out[0].float()).all() and all(torch.isfinite(g.float()).all() for g in g_out)
    ratio = RATIO if dtype == torch.float32 else 1e-2  # bf16 outputs and gradients: 2^-8 rounding
    assert_close("h", ref[0], out[0], ratio)
    for name, r, o in zip(["dx", "dR", "db"], g_ref, g_out):
        assert_close(name, r, o, ratio)


def test_unsupported_head_dims_and_devices_are_refused(monkeypatch):
    (x, R, b), _ = _inputs(1, 2, 1, 8)
    with pytest.raises(ValueError, match="head dims of at least 16"):
        slstm(x.float(), R.float(), b.float(), backend="triton")
    (x, R, b), _ = _inputs(1, 2, 1, 16)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="backend='torch'"):
        slstm(x.float(), R.float(), b.float(), backend="triton")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("B, S, NH, DH", [(16, 256, 4, 64), (8, 128, 4, 192), (33, 100, 2, 256), (4, 64, 2, 512)])
def test_gpu_matches_the_loop(B, S, NH, DH, dtype):
    """The float64 loop runs on the inputs rounded to ``dtype`` (what the kernel sees)."""
    inputs, state = _inputs(B, S, NH, DH, with_state=True, device="cuda")
    ref, g_ref = _run("torch", [t.to(dtype).double() for t in inputs], state, torch.float64)
    out, g_out = _run("triton", inputs, state, dtype)
    ratio = 1e-4 if dtype == torch.float32 else 3e-2
    for name, r, o in zip(["h", "h_last", "c", "n", "m"], ref, out):
        assert_close(name, r, o, ratio)
    for name, r, o in zip(["dx", "dR", "db", "dh0", "dc0", "dn0"], g_ref, g_out):
        assert_close(name, r, o, ratio)


def test_auto_picks_triton_only_on_cuda_for_tileable_heads():
    from kernels.slstm import resolve_backend

    assert resolve_backend("auto", torch.device("cpu"), 64) == "torch_fused"
    assert resolve_backend("auto", torch.device("cuda"), 192) == "triton"
    assert resolve_backend("auto", torch.device("cuda"), 512) == "triton"  # the 1.3B heads
    assert resolve_backend("auto", torch.device("cuda"), 4) == "torch_fused"
