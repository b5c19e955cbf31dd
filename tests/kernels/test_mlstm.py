"""Every mLSTM form against the float64 parallel reference: outputs, final states, every gradient."""
from __future__ import annotations

import pytest
import torch

from kernels.mlstm import BACKENDS, mlstm, mlstm_step, zero_state
from kernels.testing import assert_close, mlstm_inputs

TORCH_FORMS = ["parallel--torch", "chunkwise--torch", "chunkwise--torch_autograd", "chunkwise--cpp", "recurrent--torch"]
# (B, NH, S, DK, DV, chunk): odd S, S below / not a multiple of the chunk, DK != DV
SHAPES = [(1, 1, 1, 4, 4, 4), (2, 3, 7, 8, 5, 4), (2, 2, 37, 16, 8, 8), (1, 2, 64, 8, 16, 16), (1, 1, 50, 4, 6, 64)]
SHAPE_IDS = [f"B{b}-NH{h}-S{s}-DK{k}-DV{v}-L{c}" for b, h, s, k, v, c in SHAPES]
# fp64 forms differ only by summation order: 1e-10 is ~1e5 ulps of headroom; fp32 vs the fp64 reference: sums of
# ~S terms with unit-scale inputs lose ~sqrt(S) * 6e-8 relative, so 1e-4 is ample and still catches any real bug.
RATIO = {torch.float64: 1e-10, torch.float32: 1e-4}


def _run(backend, inputs, state, chunk, requires_grad=True):
    leaves = [t.clone().requires_grad_(requires_grad) for t in inputs]
    state_leaves = None if state is None else tuple(t.clone().requires_grad_(requires_grad) for t in state)
    h, (c, n, m) = mlstm(*leaves, backend=backend, chunk_size=chunk, initial_state=state_leaves,
                         return_last_state=True)
    if requires_grad:
        g = torch.Generator().manual_seed(1)
        # a loss on h and on the final states, with random weights, so every output is checked by the gradients
        weights = [torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.dtype) for t in (h, c, n)]
        loss = sum((t * w).sum() for t, w in zip((h, c, n), weights))
        loss.backward()
    grads = [t.grad for t in leaves] + ([] if state is None else [t.grad for t in state_leaves[:2]])
    return (h, c, n, m), grads


@pytest.mark.parametrize("with_state", [False, True], ids=["fresh", "carried"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("backend", TORCH_FORMS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["fp64", "fp32"])
def test_form_matches_float64_parallel_reference(backend, shape, with_state, dtype):
    B, NH, S, DK, DV, chunk = shape
    inputs, state = mlstm_inputs(B, NH, S, DK, DV, with_state=with_state)
    (ref_out, ref_grads) = _run("parallel--torch", inputs, state, chunk)
    cast = [t.to(dtype) for t in inputs]
    cast_state = None if state is None else tuple(t.to(dtype) for t in state)
    out, grads = _run(backend, cast, cast_state, chunk)
    for name, r, o in zip(["h", "C", "n"], ref_out, out):
        assert o.dtype == dtype
        assert_close(f"{backend} {name}", r, o, RATIO[dtype])
    assert torch.equal(ref_out[3].to(dtype), out[3]) or (ref_out[3] - out[3]).abs().max() < 1e-5  # m
    names = ["dq", "dk", "dv", "digate", "dfgate", "dC0", "dn0"]
    for name, r, o in zip(names, ref_grads, grads):
        assert_close(f"{backend} {name}", r, o, RATIO[dtype])


def test_parallel_reference_gradients_equal_an_independent_unstabilized_form():
    """The op's gradient convention (m detached, normalizer differentiated) is the true gradient of the
    unstabilized mLSTM with the max(|n.q|, 1) lower bound, up to eps: checked with eps = 0 in float64."""
    B, NH, S, DK, DV = 2, 2, 9, 4, 3
    inputs, _ = mlstm_inputs(B, NH, S, DK, DV, gate_scale=0.5)
    a = [t.clone().requires_grad_() for t in inputs]
    b = [t.clone().requires_grad_() for t in inputs]
    h_ref = mlstm(*a, backend="parallel--torch", eps=0.0)
    q, k, v, i, f = b
    q = q * DK ** -0.5
    c = torch.zeros(B, NH, DK, DV, dtype=q.dtype)
    n = torch.zeros(B, NH, DK, dtype=q.dtype)
    hs = []
    for t in range(S):
        fw, iw = torch.sigmoid(f[:, :, t]), torch.exp(i[:, :, t])
        c = fw[..., None, None] * c + iw[..., None, None] * k[:, :, t, :, None] * v[:, :, t, None, :]
        n = fw[..., None] * n + iw[..., None] * k[:, :, t]
        num = (q[:, :, t, None, :] @ c)[:, :, 0]
        den = torch.maximum((q[:, :, t] * n).sum(-1).abs(), torch.ones(()))
        hs.append(num / den[..., None])
    h_naive = torch.stack(hs, 2)
    w = torch.randn(h_ref.shape, dtype=h_ref.dtype)
    (h_ref * w).sum().backward()
    (h_naive * w).sum().backward()
    assert_close("h", h_naive, h_ref, 1e-12)
    for name, x, y in zip(["dq", "dk", "dv", "di", "df"], b, a):
        assert_close(name, x.grad, y.grad, 1e-10)


@pytest.mark.parametrize("backend", TORCH_FORMS)
def test_two_calls_with_carried_state_equal_one_call(backend):
    inputs, _ = mlstm_inputs(2, 2, 41, 8, 8)
    full, last = mlstm(*inputs, backend=backend, chunk_size=8, return_last_state=True)
    first, mid = mlstm(*(t[:, :, :17] for t in inputs), backend=backend, chunk_size=8, return_last_state=True)
    second, end = mlstm(*(t[:, :, 17:] for t in inputs), backend=backend, chunk_size=8, initial_state=mid,
                        return_last_state=True)
    assert_close("h", full, torch.cat([first, second], dim=2), 1e-12)
    for name, a, b in zip("Cnm", last, end):
        assert_close(name, a, b, 1e-12)


def test_single_step_matches_the_op():
    inputs, state = mlstm_inputs(2, 3, 1, 8, 4, with_state=True)
    h, new_state = mlstm(*inputs, backend="parallel--torch", initial_state=state, return_last_state=True)
    q, k, v, i, f = (t[:, :, 0] for t in inputs)
    h_step, step_state = mlstm_step(q, k, v, i, f, state)
    assert_close("h", h[:, :, 0], h_step, 1e-12)
    for name, a, b in zip("Cnm", new_state, step_state):
        assert_close(name, a, b, 1e-12)
    assert torch.isinf(zero_state(1, 1, 2, 2, torch.float32, "cpu")[2]).all()


def _extreme_inputs(S: int, dtype: torch.dtype, positive_qk: bool):
    """Gate pre-activations drawn from {-1e4, -30, 0, 30, 1e4}; q, k >= 0 when ``positive_qk`` (then n.q cannot
    cancel and the output is well conditioned; with signed q, k the normalizer can pass near 0, where h is
    ill-conditioned in any precision)."""
    g = torch.Generator().manual_seed(0)
    B, NH, D = 1, 2, 8
    q, k, v = (torch.randn(B, NH, S, D, generator=g) for _ in range(3))
    if positive_qk:
        q, k = q.abs(), k.abs()
    extreme = torch.tensor([-1e4, -30.0, 0.0, 30.0, 1e4])
    igate, fgate = (extreme[torch.randint(0, 5, (B, NH, S), generator=g)] for _ in range(2))
    return [t.to(dtype) for t in (q, k, v, igate, fgate)]


@pytest.mark.parametrize("backend", ["chunkwise--torch", "chunkwise--cpp"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_extreme_gates_long_sequence_stay_finite(dtype, backend):
    with torch.no_grad():
        h, state = mlstm(*_extreme_inputs(16384, dtype, positive_qk=False), backend=backend,
                         return_last_state=True)
    assert h.dtype == dtype and state[0].dtype == torch.float32
    assert torch.isfinite(h.float()).all() and all(torch.isfinite(t).all() for t in state)


@pytest.mark.parametrize("backend", ["chunkwise--torch", "chunkwise--cpp"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_extreme_gates_long_sequence_chunkwise_equals_recurrent(dtype, backend):
    """S = 16384 with gates up to +-1e4: chunkwise == recurrent. Both run in float32 on the same inputs; their
    summation orders differ, and float32 rounding over 16384 steps accumulates to ~1e-5 relative (both are within
    3e-5 of a float64 run), so 1e-4 (bf16 outputs: their 2^-8 rounding, 1e-2) holds with margin."""
    inputs = _extreme_inputs(16384, dtype, positive_qk=True)
    with torch.no_grad():
        h_c, state_c = mlstm(*inputs, backend=backend, return_last_state=True)
        h_r, state_r = mlstm(*inputs, backend="recurrent--torch", return_last_state=True)
    assert torch.isfinite(h_c.float()).all() and torch.isfinite(h_r.float()).all()
    assert_close("h", h_r.float(), h_c.float(), 1e-4 if dtype == torch.float32 else 1e-2)
    for name, a, b in zip("Cnm", state_r, state_c):
        assert_close(name, a, b, 1e-4)


@pytest.mark.parametrize("backend", ["chunkwise--torch", "chunkwise--torch_autograd", "chunkwise--cpp"])
def test_extreme_gates_gradients_are_finite_and_exact(backend):
    """Gates up to +-1e4 over 300 steps (5 chunks): finite float32 gradients, and in float64 every gradient equals
    the parallel reference's (1e-10 as above; the hand-written backward and the recorded one both land near 1e-11).
    Not compared in float32: there the gate gradients of every form, the reference's own included, are ~1e-2 from
    float64 (exp of differences of 1e4-sized sums)."""
    inputs, _ = mlstm_inputs(1, 2, 300, 8, 8, dtype=torch.float64, gate_scale=1e4)
    leaves = [t.float().requires_grad_() for t in inputs]
    mlstm(*leaves, backend=backend).sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in leaves)
    grads = {}
    for form in (backend, "parallel--torch"):
        leaves = [t.clone().requires_grad_() for t in inputs]
        mlstm(*leaves, backend=form).sum().backward()
        grads[form] = [t.grad for t in leaves]
    for name, ref, out in zip(["q", "k", "v", "igate", "fgate"], grads["parallel--torch"], grads[backend]):
        assert_close(f"d{name}", ref, out, RATIO[torch.float64])


def test_unknown_backend_lists_the_valid_ones():
    inputs, _ = mlstm_inputs(1, 1, 4, 4, 4)
    with pytest.raises(ValueError, match="chunkwise--torch"):
        mlstm(*inputs, backend="nope")
    assert set(TORCH_FORMS) <= set(BACKENDS)


def test_shape_mismatch_is_a_clear_error():
    inputs, _ = mlstm_inputs(1, 1, 4, 4, 4)
    with pytest.raises(ValueError, match="do not fit"):
        mlstm(inputs[0], inputs[1][:, :, :3], *inputs[2:])


@pytest.mark.parametrize("backend", ["chunkwise--torch", "chunkwise--cpp"])
def test_chunkwise_under_autocast_computes_in_float32(backend):
    """bfloat16 inputs under CPU autocast: the same outputs and gradients as without autocast (the op computes in
    float32 either way; autocast would otherwise round its forward products, and only those, to bfloat16)."""
    inputs, _ = mlstm_inputs(2, 2, 50, 8, 8, dtype=torch.float32)
    runs = []
    for autocast in (False, True):
        leaves = [t.clone().requires_grad_() for t in inputs]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            h = mlstm(*[t.bfloat16() for t in leaves], backend=backend, chunk_size=16)
        h.float().square().sum().backward()
        runs.append([h, *(t.grad for t in leaves)])
    for a, b in zip(*runs):
        assert torch.equal(a, b)
