"""The switchable mLSTM (kernels/mlstm/variants.py) against its definition, a float64 loop over time in true units
(no stabilizer at all): values, last states and every gradient, for each stabilizer/normalizer pair; its paper
setting against the reference parallel form; its step against its parallel form; and the overflow it exists to show.

The forms agree exactly only for eps = 0: eps is added in stabilized units (as in every form of the suite), so it is
a different constant in true units for each stabilizer. Tolerances: float64 throughout, so 1e-9 relative leaves
the ~1e-14 rounding of O(S) sums a wide margin while any wrong factor exp(m) (>= 1e-3 relative here) fails.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from kernels.mlstm import NORMALIZERS, STABILIZERS, mlstm_parallel, mlstm_variant, mlstm_variant_step, zero_state
from kernels.testing import mlstm_inputs

B, NH, S, DK, DV = 2, 2, 9, 4, 3
PAIRS = list(itertools.product(STABILIZERS, NORMALIZERS))


def inputs(seed=0):
    tensors, _ = mlstm_inputs(B, NH, S, DK, DV, seed=seed, gate_scale=2.0)  # float64, forget bias +2
    return [t.requires_grad_() for t in tensors]


def definition(q, k, v, igate, fgate, normalizer):
    """The mLSTM in true units: C_t = f_t C_{t-1} + exp(i_t) k_t v_t^T, n_t likewise, h_t from C_t^T q_t."""
    C = q.new_zeros(B, NH, DK, DV)
    n = q.new_zeros(B, NH, DK)
    hs = []
    for t in range(S):
        f, i = torch.sigmoid(fgate[..., t]), torch.exp(igate[..., t])
        C = f[..., None, None] * C + i[..., None, None] * k[..., t, :, None] * v[..., t, None, :]
        n = f[..., None] * n + i[..., None] * k[..., t, :]
        qt = q[..., t, :] * DK ** -0.5
        num, den = (qt[..., None, :] @ C)[..., 0, :], (qt * n).sum(-1)
        if normalizer == "max":
            num = num / torch.maximum(den.abs(), torch.ones_like(den))[..., None]
        elif normalizer == "abs":
            num = num / den.abs()[..., None]
        hs.append(num)
    return torch.stack(hs, dim=2), C, n


def grads(out, tensors):
    return torch.autograd.grad(out, tensors)


@pytest.mark.parametrize("stabilizer, normalizer", PAIRS)
def test_every_switch_pair_matches_its_definition_with_gradients(stabilizer, normalizer):
    x = inputs()
    h, (c, n, m) = mlstm_variant(*x, stabilizer=stabilizer, normalizer=normalizer, eps=0.0, return_last_state=True)
    h_ref, c_ref, n_ref = definition(*x, normalizer)
    torch.testing.assert_close(h, h_ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(c * torch.exp(m)[..., None, None], c_ref, rtol=1e-9, atol=1e-12)  # state in units of exp(m)
    torch.testing.assert_close(n * torch.exp(m)[..., None], n_ref, rtol=1e-9, atol=1e-12)
    weight = torch.randn_like(h_ref)
    for g, g_ref in zip(grads((h * weight).sum(), x), grads((h_ref * weight).sum(), x)):
        torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-10)


def test_the_paper_setting_is_the_reference_parallel_form():
    x = [t.detach().float().requires_grad_() for t in inputs()]
    h, state = mlstm_variant(*x, eps=1e-6, return_last_state=True)
    h_ref, state_ref = mlstm_parallel(*x, eps=1e-6, return_last_state=True)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=0)
    for a, b in zip(state, state_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for g, g_ref in zip(grads(h.sum(), x), grads(h_ref.sum(), x)):
        torch.testing.assert_close(g, g_ref, rtol=0, atol=0)


@pytest.mark.parametrize("stabilizer, normalizer", PAIRS)
def test_steps_and_split_sequences_match_the_parallel_form(stabilizer, normalizer):
    q, k, v, i, f = (t.detach() for t in inputs())
    switches = dict(stabilizer=stabilizer, normalizer=normalizer)
    h_ref, last_ref = mlstm_variant(q, k, v, i, f, **switches, return_last_state=True)
    state, hs = zero_state(B, NH, DK, DV, q.dtype, q.device), []
    for t in range(S):
        h, state = mlstm_variant_step(q[:, :, t], k[:, :, t], v[:, :, t], i[:, :, t], f[:, :, t], state, **switches)
        hs.append(h)
    torch.testing.assert_close(torch.stack(hs, dim=2), h_ref, rtol=1e-9, atol=1e-12)
    half = S // 2
    _, mid = mlstm_variant(q[:, :, :half], k[:, :, :half], v[:, :, :half], i[..., :half], f[..., :half], **switches,
                           return_last_state=True)
    h2, last = mlstm_variant(q[:, :, half:], k[:, :, half:], v[:, :, half:], i[..., half:], f[..., half:], **switches,
                             initial_state=mid, return_last_state=True)
    torch.testing.assert_close(h2, h_ref[:, :, half:], rtol=1e-9, atol=1e-12)
    for a, b in zip(last, last_ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype, log_max", [(torch.float32, 88.7), (torch.bfloat16, 88.7), (torch.float16, 11.1)])
def test_without_the_stabilizer_the_memory_overflows_at_the_dtypes_log_max(dtype, log_max):
    """An input gate above the dtype's log-max overflows the unstabilized memory (inf / nan in h); the stabilized
    form stays finite (and in float32 gives the float64 value: in bfloat16 and float16 a gate near 90 or 15 keeps
    only 2-3 bits after the point, so their values are coarse, which is why the other forms compute gates in
    float32). Below the log-max (with margin for the key/value scale) both are finite."""
    q, k, v, i, f = (t.detach() for t in inputs(seed=1))
    for gate, overflows in ((log_max + 4.0, True), (log_max - 6.0, False)):
        igate = torch.full_like(i, gate)
        args = [t.to(dtype) for t in (q, k, v, igate, f)]
        unstabilized = mlstm_variant(*args, stabilizer="none", normalizer="max")
        stabilized = mlstm_variant(*args, stabilizer="max", normalizer="max")
        assert bool(torch.isfinite(unstabilized).all()) is not overflows, (dtype, gate)
        assert torch.isfinite(stabilized).all()
        if dtype == torch.float32:  # 24 mantissa bits: 1e-4 of an O(1) output is ~1000 ulps of margin
            torch.testing.assert_close(stabilized.double(), mlstm_variant(q, k, v, igate, f), rtol=1e-4, atol=1e-4)


def test_bad_switch_names_are_one_line_errors():
    x = [t.detach() for t in inputs()]
    with pytest.raises(ValueError, match="unknown mLSTM stabilizer 'clip'; valid: max, none"):
        mlstm_variant(*x, stabilizer="clip")
    with pytest.raises(ValueError, match="unknown mLSTM normalizer 'sum'; valid: max, abs, one"):
        mlstm_variant(*x, normalizer="sum")


def test_the_config_lists_the_kernels_switches():
    from xlstm import config

    assert (config.STABILIZERS, config.NORMALIZERS) == (STABILIZERS, NORMALIZERS)
