"""The sLSTM op against an independent, unstabilized float64 formulation: outputs, states, every gradient."""
from __future__ import annotations

import pytest
import torch

from kernels.slstm import slstm, slstm_forward
from kernels.testing import assert_close


def _inputs(B=2, S=9, NH=3, DH=4, dtype=torch.float64, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, S, 4, NH, DH, generator=g) * scale
    R = torch.randn(4, NH, DH, DH, generator=g) / DH ** 0.5
    b = torch.randn(4, NH, DH, generator=g)
    return [t.to(dtype) for t in (x, R, b)]


def _naive(x, R, b, state=None):
    """c = sigma(f) c + exp(i) z, n = sigma(f) n + exp(i), h = sigma(o) c / n, with no stabilizer (fine for
    moderate pre-activations). ``state`` = (h, c, n) in true units."""
    B, S, _, NH, DH = x.shape
    h, c, n = state if state is not None else (torch.zeros(B, NH, DH, dtype=x.dtype),) * 3
    out = []
    for t in range(S):
        raw = x[:, t] + torch.einsum("ghed,bhd->bghe", R, h) + b
        i, f, z, o = raw.unbind(1)
        c = torch.sigmoid(f) * c + torch.exp(i) * torch.tanh(z)
        n = torch.sigmoid(f) * n + torch.exp(i)
        h = torch.sigmoid(o) * c / n
        out.append(h)
    return torch.stack(out, 1), (h, c, n)


@pytest.mark.parametrize("backend", ["torch", "torch_fused", "cpp"])  # the Triton kernel: test_slstm_triton.py
@pytest.mark.parametrize("shape", [(1, 1, 1, 4), (2, 9, 3, 4), (3, 17, 2, 8)], ids=lambda s: "B{}-S{}-NH{}-DH{}".format(*s))
def test_matches_unstabilized_float64_form(backend, shape):
    B, S, NH, DH = shape
    a = [t.requires_grad_() for t in _inputs(B, S, NH, DH)]
    ref = [t.detach().clone().requires_grad_() for t in a]
    h, (h_last, c, n, m) = slstm(*a, backend=backend, return_last_state=True)
    h_ref, (_, c_ref, n_ref) = _naive(*ref)
    assert_close("h", h_ref, h, 1e-12)
    assert_close("h_last", h_ref[:, -1], h_last, 1e-12)
    assert_close("c", c_ref, c * torch.exp(m), 1e-12)  # states are in stabilized units
    assert_close("n", n_ref, n * torch.exp(m), 1e-12)
    w = torch.randn(h.shape, dtype=h.dtype, generator=torch.Generator().manual_seed(3))
    (h * w).sum().backward()
    (h_ref * w).sum().backward()
    for name, x, y in zip(["dx", "dR", "db"], ref, a):
        assert_close(name, x.grad, y.grad, 1e-10)


@pytest.mark.parametrize("backend", ["torch", "torch_fused", "cpp"])  # the Triton kernel: test_slstm_triton.py
def test_initial_state_and_its_gradient(backend):
    x, R, b = _inputs(2, 6, 2, 4)
    g = torch.Generator().manual_seed(5)
    h0, c0 = torch.randn(2, 2, 4, generator=g, dtype=x.dtype), torch.randn(2, 2, 4, generator=g, dtype=x.dtype)
    n0, m0 = torch.rand(2, 2, 4, generator=g, dtype=x.dtype) + 1, torch.randn(2, 2, 4, generator=g, dtype=x.dtype)
    leaves = [t.clone().requires_grad_() for t in (x, R, b, h0, c0, n0)]
    h = slstm(*leaves[:3], backend=backend, initial_state=(leaves[3], leaves[4], leaves[5], m0))
    naive_leaves = [t.clone().requires_grad_() for t in (x, R, b, h0, c0, n0)]
    scale = torch.exp(m0)
    h_ref, _ = _naive(*naive_leaves[:3], state=(naive_leaves[3], naive_leaves[4] * scale, naive_leaves[5] * scale))
    assert_close("h", h_ref, h, 1e-12)
    h.sum().backward()
    h_ref.sum().backward()
    for name, x_ref, x_out in zip(["dx", "dR", "db", "dh0", "dc0", "dn0"], naive_leaves, leaves):
        assert_close(name, x_ref.grad, x_out.grad, 1e-10)


@pytest.mark.parametrize("backend", ["torch", "torch_fused", "cpp"])  # the Triton kernel: test_slstm_triton.py
def test_two_calls_with_carried_state_equal_one_call(backend):
    x, R, b = _inputs(2, 23, 2, 8)
    full, last = slstm(x, R, b, backend=backend, return_last_state=True)
    first, mid = slstm(x[:, :10], R, b, backend=backend, return_last_state=True)
    second, end = slstm(x[:, 10:], R, b, backend=backend, initial_state=mid, return_last_state=True)
    assert_close("h", full, torch.cat([first, second], 1), 1e-13)
    for name, u, w in zip("hcnm", last, end):
        assert_close(name, u, w, 1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_extreme_gates_stay_finite(dtype):
    x, R, b = _inputs(2, 200, 2, 8, dtype=dtype, scale=1e4)
    leaves = [t.requires_grad_() for t in (x, R, b)]
    h, state = slstm(*leaves, return_last_state=True)
    assert h.dtype == dtype and state[1].dtype == torch.float32
    assert torch.isfinite(h.float()).all() and all(torch.isfinite(t).all() for t in state)
    assert (state[2] >= 1 - 1e-6).all()  # the normalizer never drops below 1
    h.float().sum().backward()
    assert all(torch.isfinite(t.grad.float()).all() for t in leaves)


def test_recurrent_gradient_clip():
    """clip -> infinity is no clip; clip = 0 cuts the gradient through R h_{t-1} and nothing else."""
    x, R, b = _inputs(2, 7, 2, 4)

    def grads(clip, cut=False):
        leaves = [t.clone().requires_grad_() for t in (x, R, b)]
        if cut:  # the same recurrence with R @ h_prev fed a detached h_prev
            from kernels.slstm.reference import slstm_step, zero_state

            state, hs = zero_state(2, 2, 4, x.dtype, "cpu"), []
            for t in range(7):
                h, state = slstm_step(leaves[0][:, t], leaves[1], leaves[2], (state[0].detach(), *state[1:]))
                hs.append(h)
            out = torch.stack(hs, 1)
        else:
            out = slstm_forward(*leaves, recurrent_grad_clip=clip)
        (out ** 2).sum().backward()
        return [t.grad for t in leaves]

    for a, c in zip(grads(None), grads(1e30)):
        assert torch.equal(a, c)
    for a, c in zip(grads(0.0), grads(None, cut=True)):
        assert_close("cut", c, a, 1e-14)
    assert not torch.allclose(grads(0.0)[0], grads(None)[0])


def test_unknown_backend_and_bad_shapes_are_clear_errors():
    x, R, b = _inputs()
    with pytest.raises(ValueError, match="torch"):
        slstm(x, R, b, backend="nope")
    with pytest.raises(ValueError, match="do not fit"):
        slstm(x, R[:3], b)
