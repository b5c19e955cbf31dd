"""HGRN and HGRN2 (xlstm.baselines.hgrn): mixers vs float64 loops written from the equations, the forget-gate
lower bounds, carried state and activation checkpointing, causality, a training smoke test, Table 7 parameter
counts, bf16."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import xlstm
from kernels.testing import assert_close
from xlstm.baselines.hgrn import HGRN, HGRN2, HGRN2Config, HGRNConfig
from xlstm.components import set_activation_checkpointing

MODELS = {"hgrn": (HGRN, HGRNConfig), "hgrn2": (HGRN2, HGRN2Config)}


def _backbone(name: str, D=16, L=3, H=2, **kw):
    torch.manual_seed(0)
    cls, cfg = MODELS[name]
    bb = cls(cfg(embedding_dim=D, num_blocks=L, num_heads=H, gla_chunk_size=4, **kw)).double()
    with torch.no_grad():  # random bounds and norm weights, so every path matters
        for n, p in bb.named_parameters():
            if n == "lower_bounds" or p.ndim == 1:
                p.add_(torch.randn(p.shape, dtype=p.dtype) * 0.5)
    return bb


def _ref_bounds(lower_bounds):
    p = torch.softmax(lower_bounds, 0)
    return torch.cumsum(p, 0) - p[0]


def _rmsnorm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def _ref_hgrn(m, x, b, h0):
    """h_t = f h_{t-1} + (1 - f) silu(i) per channel; y = out(RMSNorm_D(h) silu(g))."""
    f = b + (1 - b) * torch.sigmoid(x @ m.f_proj.weight.T)
    u = F.silu(x @ m.i_proj.weight.T)
    h, hs = h0, []
    for t in range(x.shape[1]):
        h = f[:, t] * h + (1 - f[:, t]) * u[:, t]
        hs.append(h)
    o = _rmsnorm(torch.stack(hs, 1), m.norm.norm.weight, m.norm.norm.eps) * F.silu(x @ m.g_proj.weight.T)
    return o @ m.out.weight.T, h


def _ref_hgrn2(m, x, b, S0):
    """S_t = diag(f_t) S_{t-1} + (1 - f_t)^T i_t, o_t = DK^-0.5 q_t S_t per head; y = out(RMSNorm_D(o))."""
    B, T, D = x.shape
    H, DK = m.H, m.DK
    q = F.silu(x @ m.q_proj.weight.T).view(B, T, H, DK)
    f = (b + (1 - b) * torch.sigmoid(x @ m.f_proj.weight.T)).view(B, T, H, DK)
    i = (x @ m.i_proj.weight.T).view(B, T, H, DK)
    S, os = S0, []
    for t in range(T):
        S = f[:, t, :, :, None] * S + (1 - f[:, t, :, :, None]) * i[:, t, :, None, :]
        os.append(torch.einsum("bhk,bhkv->bhv", q[:, t] * DK ** -0.5, S).reshape(B, D))
    o = _rmsnorm(torch.stack(os, 1), m.norm.weight, m.norm.eps)
    return o @ m.out.weight.T, S


@pytest.mark.parametrize("name", ["hgrn", "hgrn2"])
def test_mixer_matches_float64_loop(name):
    bb = _backbone(name)
    m = bb.stack.blocks[1].mixer  # layer 1: a non-zero bound
    B, S, D = 2, 13, 16
    x = torch.randn(B, S, D, dtype=torch.float64, requires_grad=True)
    state0 = torch.randn(B, D, 1, 1) if name == "hgrn" else torch.randn(B, 2, 8, 8)
    state0 = state0.double()
    y, st = m(x, (bb.lower_bound_values()[1], state0))
    b = _ref_bounds(bb.lower_bounds)[1]
    assert b.min() > 0
    ref = _ref_hgrn(m, x, b, state0[..., 0, 0]) if name == "hgrn" else _ref_hgrn2(m, x, b, state0)
    assert_close("y", ref[0], y, 1e-10)
    assert_close("state", ref[1], st.reshape(ref[1].shape), 1e-10)
    params = [x, bb.lower_bounds, m.i_proj.weight, m.f_proj.weight, m.out.weight,
              m.g_proj.weight if name == "hgrn" else m.q_proj.weight]
    g = torch.Generator().manual_seed(1)
    wy, ws = torch.randn(y.shape, generator=g, dtype=y.dtype), torch.randn(ref[1].shape, generator=g, dtype=y.dtype)
    grads = lambda out, s: torch.autograd.grad((out * wy).sum() + (s.reshape(ws.shape) * ws).sum(), params)  # noqa
    for n, r, o in zip(["x", "lower_bounds", "i_proj", "f_proj", "out", "g/q_proj"], grads(*ref), grads(y, st)):
        assert_close(f"d{n}", r, o, 1e-9)


@pytest.mark.parametrize("name", ["hgrn", "hgrn2"])
def test_lower_bounds(name):
    bb = _backbone(name, L=5)
    b = bb.lower_bound_values()
    assert b.shape == (5, 16) and torch.equal(b[0], torch.zeros(16, dtype=b.dtype))
    assert (b[1:] >= b[:-1]).all() and (b >= 0).all() and (b < 1).all()
    fresh = MODELS[name][0](MODELS[name][1](embedding_dim=16, num_blocks=4, num_heads=2))
    assert_close("zero init: b_l = l / L", torch.arange(4.0)[:, None].expand(4, 16) / 4, fresh.lower_bound_values(),
                 1e-6)
    bb(torch.randn(2, 7, 16, dtype=torch.float64)).square().sum().backward()
    assert bb.lower_bounds.grad is not None and bb.lower_bounds.grad.abs().sum() > 0
    off = MODELS[name][0](MODELS[name][1](embedding_dim=16, num_blocks=2, num_heads=2, use_lower_bound=False))
    assert off.lower_bounds is None and torch.isfinite(off(torch.randn(1, 5, 16))).all()


@pytest.mark.parametrize("name", ["hgrn", "hgrn2"])
def test_carried_state_and_checkpointing(name):
    bb = _backbone(name, L=2).eval()
    x = torch.randn(2, 13, 16, dtype=torch.float64)
    with torch.no_grad():
        full, s_full = bb(x, return_state=True)
        a, s = bb(x[:, :5], return_state=True)
        b, s_split = bb(x[:, 5:], s, return_state=True)
        steps, s_step = [], None
        for t in range(13):
            y, s_step = bb(x[:, t:t + 1], s_step, return_state=True)
            steps.append(y)
    assert_close("5 + 8", full, torch.cat([a, b], 1), 1e-10)
    assert_close("one at a time", full, torch.cat(steps, 1), 1e-10)
    for s0, s1, s2 in zip(s_full, s_split, s_step):
        assert_close("state", s0, s1, 1e-10)
        assert_close("stepped state", s0, s2, 1e-10)
    bb.train()
    runs = []
    for ckpt in (False, True):
        set_activation_checkpointing(bb, ckpt)
        bb.zero_grad()
        y = bb(x)
        y.sin().sum().backward()
        runs.append((y.detach(), [p.grad.clone() for p in bb.parameters()]))
    assert_close("checkpointed forward", runs[0][0], runs[1][0], 1e-12)
    for (n, _), g0, g1 in zip(bb.named_parameters(), runs[0][1], runs[1][1]):
        assert_close(f"checkpointed d{n}", g0, g1, 1e-12)


@pytest.mark.parametrize("name, D, L, millions", [
    ("hgrn", 1024, 24, 411.4),
    ("hgrn2", 768, 12, 162.2), ("hgrn2", 1024, 24, 411.4), ("hgrn2", 1536, 24, 834.2),
    ("hgrn2", 2048, 24, 1439.4), ("hgrn2", 2560, 32, 2795.4)])
def test_param_counts(name, D, L, millions):
    cls, cfg = MODELS[name]
    with torch.device("meta"):
        lm = xlstm.LanguageModel(cls(cfg(embedding_dim=D, num_blocks=L, num_heads=max(D // 128, 1), vocab_size=50304,
                                         context_length=2048)))
    assert round(sum(p.numel() for p in lm.parameters()) / 1e6, 1) == millions


@pytest.mark.parametrize("name", ["hgrn", "hgrn2"])
def test_bf16(name):
    lm = xlstm.LanguageModel(_backbone(name, L=2)).to(torch.bfloat16)
    logits, state = lm.step(torch.randint(0, 50, (2, 9)))
    logits2, _ = lm.step(torch.randint(0, 50, (2, 3)), state)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all() and torch.isfinite(logits2).all()
    logits.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in lm.parameters() if p.grad is not None)


def test_bad_head_count_is_one_value_error_line():
    with pytest.raises(ValueError, match=r"^embedding_dim=30 must be divisible by num_heads=4$"):
        HGRN2(HGRN2Config(embedding_dim=30, num_heads=4))
