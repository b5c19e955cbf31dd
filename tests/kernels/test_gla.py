"""Gated linear attention: the chunkwise form against the float64 step loop (outputs, last state, every gradient),
strong decays, carried states, the single step, a hand-computed case, HGRN as a special case, errors."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

from kernels.gla import BACKENDS, gla, gla_step, resolve_backend
from kernels.testing import assert_close, gla_inputs, gla_run


KINDS = ["vector", "fixed_vector", "scalar"]  # log_decay (B, H, S, DK), (H, DK), (H,)
FORMS = [("chunkwise--torch", torch.float64), ("chunkwise--torch", torch.float32), ("recurrent--torch", torch.float32)]
FORM_IDS = ["chunkwise-fp64", "chunkwise-fp32", "recurrent-fp32"]
# float64 forms differ only in summation order (and exp of a sum vs a product of exps): measured <= 2e-14 on every
# output and gradient, so 1e-12 leaves ~50x. float32 vs the float64 reference: each entry is a sum of at most
# S * DK * DV products with unit-scale inputs and decays exp(sums of <= L logs); measured <= 2.2e-6 over all decay
# shapes, bonus / state, S in {1, 7, 37, 100}, chunks 16 / 64 and decays down to exp(-20) (worst: d log_decay of a
# fixed scalar decay, a reduction over B * S * DK * DV terms of both signs; outputs and states stay <= 2e-7).
# 1e-5 keeps ~5x headroom and still catches any real bug (a wrong decay power or a missed term is O(1e-2) or more).
RATIO = {torch.float64: 1e-12, torch.float32: 1e-5}
NAMES = ["q", "k", "v", "log_decay", "bonus", "initial_state"]


def _compare(ref: dict, out: dict, ratio: float, label: str = ""):
    assert ref.keys() == out.keys()
    for name in ref:
        assert_close(f"{label} {name}", ref[name], out[name], ratio)


@pytest.mark.parametrize("S", [1, 7, 37])
@pytest.mark.parametrize("with_state", [False, True], ids=["fresh", "carried"])
@pytest.mark.parametrize("bonus", [False, True], ids=["nobonus", "bonus"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("form", FORMS, ids=FORM_IDS)
def test_form_matches_float64_recurrent_reference(form, kind, bonus, with_state, S):
    """B 2, H 3, DK 6 != DV 5, chunk 16: S below, at a partial and across several chunks."""
    backend, dtype = form
    inputs = gla_inputs(2, 3, S, 6, 5, kind, bonus, with_state)
    ref = gla_run("recurrent--torch", inputs, torch.float64)
    out = gla_run(backend, inputs, dtype)
    assert out["o"].dtype == dtype and out["S_T"].dtype == dtype
    assert len(out) == 6 + bonus + with_state  # o, S_T, dq, dk, dv, dlog_decay (+ dbonus, dinitial_state)
    _compare(ref, out, RATIO[dtype], f"{backend} {dtype}")


@pytest.mark.parametrize("chunk", [16, 64])
@pytest.mark.parametrize("bonus", [False, True], ids=["nobonus", "bonus"])
@pytest.mark.parametrize("kind", KINDS)
def test_strong_decays_stay_finite_and_accurate(kind, bonus, chunk):
    """log a_t uniform in [-20, 0] plus exact -20 and 0 entries: a chunk's cumulative decay reaches exp(-1280),
    which a k / cumprod(a) form would overflow on; float32 chunkwise stays within RATIO of float64."""
    inputs = gla_inputs(1, 2, 100, 8, 4, kind, bonus, with_state=True, seed=3, min_log_decay=-20.0)
    flat = inputs["log_decay"].view(-1)
    flat[::3], flat[1::5] = -20.0, 0.0
    ref = gla_run("recurrent--torch", inputs, torch.float64, chunk)
    out = gla_run("chunkwise--torch", inputs, torch.float32, chunk)
    assert all(torch.isfinite(t).all() for t in out.values())
    _compare(ref, out, RATIO[torch.float32], f"{kind} strong")


def test_weak_decays_after_strong_ones_in_a_chunk_keep_float32_precision():
    """48 steps of log a = -20, then 16 of -0.01, in every chunk of 64 (data-dependent decay: a fixed one cannot
    vary in time): the last positions' prefix sums are ~-960, where float32 keeps ~6e-5 absolute, so
    exp(G_i - G_j) near the diagonal would be off by ~2e-5 relative (measured 2.3e-5 on the outputs); interval sums
    built as their own cumulative sums keep ~1e-7, within RATIO."""
    inputs = gla_inputs(1, 2, 128, 8, 4, "vector", with_state=True)
    pattern = torch.where(torch.arange(128) % 64 < 48, -20.0, -0.01).to(torch.float64)
    inputs["log_decay"] = pattern.view(1, 1, 128, 1).expand(1, 2, 128, 8).clone()
    ref = gla_run("recurrent--torch", inputs, torch.float64, 64)
    out = gla_run("chunkwise--torch", inputs, torch.float32, 64)
    _compare(ref, out, RATIO[torch.float32], "strong-then-weak")


def test_decay_of_exp_minus_20_every_step_leaves_only_the_current_token():
    """With a_t = exp(-20) everywhere (and no bonus) o_t = scale q_t k_t^T v_t up to a relative exp(-20)."""
    inputs = gla_inputs(1, 2, 300, 8, 4, "vector")
    q, k, v = (inputs[n].float() for n in "qkv")
    o = gla(q, k, v, torch.full_like(q, -20.0), chunk_size=64)
    assert torch.isfinite(o).all()
    assert_close("o", ((q * k).sum(-1, keepdim=True) * v) * 8 ** -0.5, o, 1e-6)


@pytest.mark.parametrize("bonus", [False, True], ids=["nobonus", "bonus"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_two_calls_with_carried_state_equal_one_call(backend, kind, bonus):
    inputs = gla_inputs(2, 2, 41, 8, 6, kind, bonus, with_state=True)
    rest = {"bonus": inputs["bonus"], "backend": backend, "chunk_size": 8, "return_last_state": True}
    q, k, v, d = (inputs[n] for n in ("q", "k", "v", "log_decay"))
    half = (lambda t, sl: t[:, :, sl]) if kind == "vector" else (lambda t, sl: t)
    full, last = gla(q, k, v, d, initial_state=inputs["initial_state"], **rest)
    a, b = slice(0, 17), slice(17, None)
    first, mid = gla(q[:, :, a], k[:, :, a], v[:, :, a], half(d, a), initial_state=inputs["initial_state"], **rest)
    second, end = gla(q[:, :, b], k[:, :, b], v[:, :, b], half(d, b), initial_state=mid, **rest)
    assert_close("o", full, torch.cat([first, second], dim=2), 1e-12)
    assert_close("S_T", last, end, 1e-12)


@pytest.mark.parametrize("bonus", [False, True], ids=["nobonus", "bonus"])
@pytest.mark.parametrize("kind", KINDS)
def test_step_loop_equals_the_op(kind, bonus):
    """Generation: gla_step from an initial state, one token at a time, equals both forms over the sequence."""
    inputs = gla_inputs(2, 3, 9, 4, 5, kind, bonus, with_state=True)
    o_ref, s_ref = gla(inputs["q"], inputs["k"], inputs["v"], inputs["log_decay"], bonus=inputs["bonus"],
                       initial_state=inputs["initial_state"], backend="recurrent--torch", return_last_state=True)
    o_chunk = gla(inputs["q"], inputs["k"], inputs["v"], inputs["log_decay"], bonus=inputs["bonus"],
                  initial_state=inputs["initial_state"], chunk_size=4)
    state, outs = inputs["initial_state"], []
    for t in range(9):
        d_t = inputs["log_decay"][:, :, t] if kind == "vector" else inputs["log_decay"]
        o_t, state = gla_step(inputs["q"][:, :, t], inputs["k"][:, :, t], inputs["v"][:, :, t], d_t, state,
                              bonus=inputs["bonus"])
        outs.append(o_t)
    assert_close("o step", o_ref, torch.stack(outs, 2), 1e-14)
    assert_close("S step", s_ref, state, 1e-14)
    assert_close("o chunk", o_ref, o_chunk, 1e-12)
    o_0, s_0 = gla_step(inputs["q"][:, :, 0], inputs["k"][:, :, 0], inputs["v"][:, :, 0],
                        inputs["log_decay"][:, :, 0] if kind == "vector" else inputs["log_decay"], None)
    o_ref0, s_ref0 = gla(*(inputs[n][:, :, :1] for n in "qkv"),
                         inputs["log_decay"][:, :, :1] if kind == "vector" else inputs["log_decay"],
                         return_last_state=True)
    assert_close("o from zeros", o_ref0[:, :, 0], o_0, 1e-14)
    assert_close("S from zeros", s_ref0, s_0, 1e-14)


# S = 2, DK = DV = 1, scale 1: q = (2, 3), k = (0.5, -1), v = (4, 1), S_0 = 1, u = 3.
#   a = (0.5, 0.25), no bonus: S_1 = 0.5 * 1 + 0.5 * 4 = 2.5, o_1 = 2 * 2.5 = 5; S_2 = 0.25 * 2.5 - 1 = -0.375,
#                              o_2 = 3 * -0.375 = -1.125
#   a = (0.5, 0.25), bonus:    o_1 = 2 * (1 + 3 * 0.5 * 4) = 14; o_2 = 3 * (2.5 + 3 * -1) = -1.5; S_2 = -0.375
#   a = (0.5, 0.5) (fixed):    S_2 = 0.5 * 2.5 - 1 = 0.25; no bonus o = (5, 0.75); bonus o = (14, -1.5)
HAND = [("vector", False, (5.0, -1.125), -0.375), ("vector", True, (14.0, -1.5), -0.375),
        ("fixed_vector", False, (5.0, 0.75), 0.25), ("fixed_vector", True, (14.0, -1.5), 0.25),
        ("scalar", False, (5.0, 0.75), 0.25), ("scalar", True, (14.0, -1.5), 0.25)]


@pytest.mark.parametrize("kind,bonus,o_expected,s_expected", HAND)
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_hand_computed_tiny_case(backend, kind, bonus, o_expected, s_expected):
    t = lambda *x: torch.tensor(x, dtype=torch.float64).view(1, 1, -1, 1)  # noqa: E731
    q, k, v = t(2.0, 3.0), t(0.5, -1.0), t(4.0, 1.0)
    log_decay = {"vector": torch.log(t(0.5, 0.25)), "fixed_vector": torch.log(torch.full((1, 1), 0.5, dtype=q.dtype)),
                 "scalar": torch.log(torch.full((1,), 0.5, dtype=q.dtype))}[kind]
    u = torch.full((1, 1), 3.0, dtype=q.dtype) if bonus else None
    o, s = gla(q, k, v, log_decay, bonus=u, scale=1.0, backend=backend, chunk_size=1,
               initial_state=torch.ones(1, 1, 1, 1, dtype=q.dtype), return_last_state=True)
    assert torch.allclose(o.view(-1), torch.tensor(o_expected, dtype=q.dtype), rtol=1e-14, atol=0)
    assert torch.allclose(s.view(-1), torch.tensor([s_expected], dtype=q.dtype), rtol=1e-14, atol=0)


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_hgrn_is_the_per_channel_dk1_case(backend):
    """HGRN: h_t = f_t * h_{t-1} + (1 - f_t) * i_t per channel == gla with one head per channel, DK = DV = 1,
    q = 1, k = 1 - f, v = i, log_decay = log f, scale = 1; outputs and the gradients of f's pre-activation and i."""
    g = torch.Generator().manual_seed(0)
    B, D, S = 2, 5, 23
    x = torch.randn(B, D, S, generator=g, dtype=torch.float64).requires_grad_()
    i = torch.randn(B, D, S, generator=g, dtype=torch.float64).requires_grad_()
    f = torch.sigmoid(x)
    h, hs = torch.zeros(B, D, dtype=torch.float64), []
    for t in range(S):
        h = f[..., t] * h + (1 - f[..., t]) * i[..., t]
        hs.append(h)
    h_ref = torch.stack(hs, -1)
    x2, i2 = x.detach().clone().requires_grad_(), i.detach().clone().requires_grad_()
    o = gla(torch.ones(B, D, S, 1, dtype=torch.float64), (1 - torch.sigmoid(x2))[..., None], i2[..., None],
            F.logsigmoid(x2)[..., None], scale=1.0, backend=backend, chunk_size=8)[..., 0]
    assert_close("h", h_ref, o, 1e-12)
    w = torch.randn(h_ref.shape, generator=g, dtype=torch.float64)
    (h_ref * w).sum().backward()
    (o * w).sum().backward()
    assert_close("dx", x.grad, x2.grad, 1e-12)
    assert_close("di", i.grad, i2.grad, 1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64])
def test_output_and_state_dtypes(dtype):
    inputs = gla_inputs(1, 2, 5, 4, 4, "vector", bonus=True)
    q, k, v, d, u = (inputs[n].to(dtype) for n in ("q", "k", "v", "log_decay", "bonus"))
    for backend in BACKENDS:
        o, s = gla(q, k, v, d, bonus=u, backend=backend, return_last_state=True)
        assert o.dtype == dtype and s.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
        o_t, s_t = gla_step(q[:, :, 0], k[:, :, 0], v[:, :, 0], d[:, :, 0], None, bonus=u)
        assert o_t.dtype == dtype and s_t.dtype == s.dtype


def test_scale_is_a_parameter():
    inputs = gla_inputs(1, 2, 11, 4, 3, "scalar")
    args = [inputs[n] for n in ("q", "k", "v", "log_decay")]
    for backend in BACKENDS:
        assert_close("scale", gla(*args, backend=backend) * 2.0, gla(*args, scale=4 ** -0.5 * 2.0, backend=backend),
                     1e-14)
        assert_close("rwkv", gla(*args, scale=1.0, backend=backend), gla(*args, backend=backend) * 2.0, 1e-14)


def test_auto_is_chunkwise_torch_and_unknown_backend_lists_the_valid_ones():
    assert resolve_backend("auto") == "chunkwise--torch"
    inputs = gla_inputs(1, 1, 4, 4, 4)
    with pytest.raises(ValueError, match="valid: auto, chunkwise--torch, recurrent--torch"):
        gla(inputs["q"], inputs["k"], inputs["v"], inputs["log_decay"], backend="nope")


BAD = {  # name -> (q, k, v, log_decay, bonus, initial_state) shapes with one thing wrong
    "k shorter": ((1, 2, 5, 4), (1, 2, 4, 4), (1, 2, 5, 3), (1, 2, 5, 4), None, None),
    "v other S": ((1, 2, 5, 4), (1, 2, 5, 4), (1, 2, 6, 3), (1, 2, 5, 4), None, None),
    "decay (B, H, S)": ((1, 2, 5, 4), (1, 2, 5, 4), (1, 2, 5, 3), (1, 2, 5), None, None),
    "decay (H, DV)": ((1, 2, 5, 4), (1, 2, 5, 4), (1, 2, 5, 3), (2, 3), None, None),
    "decay (DK,)": ((1, 2, 5, 4), (1, 2, 5, 4), (1, 2, 5, 3), (4,), None, None),
    "bonus (DK,)": ((1, 2, 5, 4), (1, 2, 5, 4), (1, 2, 5, 3), (2,), (4,), None),
    "state (B, H, DV, DK)": ((1, 2, 5, 4), (1, 2, 5, 4), (1, 2, 5, 3), (2,), None, (1, 2, 3, 4)),
    "3-d q": ((2, 5, 4), (2, 5, 4), (2, 5, 3), (2,), None, None),
    "S = 0": ((1, 2, 0, 4), (1, 2, 0, 4), (1, 2, 0, 3), (2,), None, None),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_shapes_are_a_one_line_error_naming_them(name):
    tensors = [None if s is None else torch.zeros(s) for s in BAD[name]]
    with pytest.raises(ValueError) as err:
        gla(*tensors[:4], bonus=tensors[4], initial_state=tensors[5])
    msg = str(err.value)
    assert "\n" not in msg and "do not fit" in msg
    assert all(str(tuple(t.shape)) in msg for t in tensors if t is not None)


def test_bad_chunk_size_and_bad_step_decay_are_errors():
    q = torch.zeros(1, 2, 5, 4)
    with pytest.raises(ValueError, match="chunk_size"):
        gla(q, q, torch.zeros(1, 2, 5, 3), torch.zeros(2), chunk_size=0)
    with pytest.raises(ValueError, match="log_decay_t"):  # (B, H) is none of (B, H, DK), (H, DK), (H,)
        gla_step(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), torch.zeros(1, 2, 3), torch.zeros(1, 2), None)


def _fla(path: str, name: str):
    try:
        module = __import__(path, fromlist=[name])
        return getattr(module, name)
    except Exception as exc:  # not installed, or its import needs a GPU stack that is absent
        pytest.skip(f"{path}.{name} unavailable: {exc}")


def _matches_in_either_layout(fn, ours: torch.Tensor, q, k, v, g, **kwargs) -> None:
    """fla's naive functions have taken (B, H, T, K) and, in later versions, (B, T, H, K): accept either, since a
    wrong recurrence matches neither. fla computes in float32 (hence 1e-5, as for our float32 forms)."""
    errors = []
    for to, back in [(lambda t: t.transpose(1, 2), lambda t: t.transpose(1, 2)), (lambda t: t, lambda t: t)]:
        try:  # in the other layout the function may also fail on shapes (e.g. u (H, K) against T)
            o = fn(*(to(t).float() for t in (q, k, v, g)), **kwargs)[0]
            assert_close("o fla", ours, back(o), 1e-5)
            return
        except (AssertionError, RuntimeError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
    raise AssertionError("; ".join(errors))


@pytest.mark.peers
@pytest.mark.parametrize("with_state", [False, True], ids=["fresh", "carried"])
def test_matches_fla_naive_recurrent_gla(with_state):
    fn = _fla("fla.ops.gla.naive", "naive_recurrent_gla")
    inputs = gla_inputs(2, 3, 19, 8, 4, "vector", with_state=with_state)
    ours = gla(*(inputs[n] for n in ("q", "k", "v", "log_decay")), initial_state=inputs["initial_state"])
    state = None if inputs["initial_state"] is None else inputs["initial_state"].float()
    _matches_in_either_layout(fn, ours, *(inputs[n] for n in ("q", "k", "v", "log_decay")), initial_state=state)


@pytest.mark.peers
def test_matches_fla_naive_recurrent_rwkv6():
    fn = _fla("fla.ops.rwkv6.recurrent_naive", "naive_recurrent_rwkv6")
    inputs = gla_inputs(2, 3, 19, 8, 4, "vector", bonus=True, with_state=True)
    ours = gla(*(inputs[n] for n in ("q", "k", "v", "log_decay")), bonus=inputs["bonus"], scale=1.0,
               initial_state=inputs["initial_state"])
    _matches_in_either_layout(fn, ours, *(inputs[n] for n in ("q", "k", "v", "log_decay")),
                              u=inputs["bonus"].float(), scale=1.0, initial_state=inputs["initial_state"].float())
