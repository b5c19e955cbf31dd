"""The fused sLSTM loops (one autograd node, hand-written backward: torch_fused in torch ops, cpp in C++) against the
reference loop in float64: outputs, final states, every gradient (x, R, b, initial h, c, n, and through the final
states), the recurrent-gradient clip, the sigmoid input gate, float32 against float64."""
from __future__ import annotations

import pytest
import torch

from kernels.slstm import slstm_forward
from kernels.testing import assert_close

from .test_slstm_triton import _inputs, _run

CASES = [(1, 1, 1, 4, False), (2, 9, 3, 4, True), (3, 17, 2, 8, False), (2, 33, 1, 5, True)]
FUSED = ["torch_fused", "cpp"]


@pytest.mark.parametrize("B, S, NH, DH, carried", CASES, ids=["B{}-S{}-NH{}-DH{}-{}".format(
    *c[:4], "carried" if c[4] else "fresh") for c in CASES])
@pytest.mark.parametrize("clip", [None, 0.05], ids=["noclip", "clip"])
@pytest.mark.parametrize("backend", FUSED)
def test_matches_the_reference_loop_in_float64(backend, B, S, NH, DH, carried, clip):
    inputs, state = _inputs(B, S, NH, DH, with_state=carried, scale=2.0)
    ref, g_ref = _run("torch", inputs, state, torch.float64, clip=clip)
    out, g_out = _run(backend, inputs, state, torch.float64, clip=clip)
    for name, r, o in zip(["h", "h_last", "c", "n", "m"], ref, out):
        assert_close(name, r, o, 1e-13)
    for name, r, o in zip(["dx", "dR", "db", "dh0", "dc0", "dn0"], g_ref, g_out):
        assert_close(name, r, o, 1e-12)  # float64 sums in another order: ~1e-15 per op


@pytest.mark.parametrize("backend", FUSED)
def test_sigmoid_input_gate_matches_the_reference_loop(backend):
    inputs, state = _inputs(2, 11, 2, 4, with_state=True, scale=3.0)

    def run(name):
        leaves = [t.clone().requires_grad_() for t in inputs]
        h = slstm_forward(*leaves, backend=name, initial_state=state, igate_activation="sigmoid")
        (h * torch.linspace(-1, 1, h.numel(), dtype=h.dtype).view_as(h)).sum().backward()
        return h, [t.grad for t in leaves]

    (h_ref, g_ref), (h, g) = run("torch"), run(backend)
    assert_close("h", h_ref, h, 1e-13)
    for name, r, o in zip(["dx", "dR", "db"], g_ref, g):
        assert_close(name, r, o, 1e-12)


@pytest.mark.parametrize("backend", FUSED)
def test_float32_stays_within_rounding_of_float64(backend):
    inputs, state = _inputs(3, 64, 2, 16, with_state=True)
    ref, g_ref = _run("torch", inputs, state, torch.float64)
    out, g_out = _run(backend, inputs, state, torch.float32)
    # float32 per-step rounding (~1e-7) through 64 steps; 2e-5 leaves two orders of margin (as the Triton tests)
    for name, r, o in zip(["h", "h_last", "c", "n"], ref, out):
        assert_close(name, r, o, 2e-5)
    for name, r, o in zip(["dx", "dR", "db", "dh0", "dc0", "dn0"], g_ref, g_out):
        assert_close(name, r, o, 2e-5)
