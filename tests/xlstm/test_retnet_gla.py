"""RetNet and GLA: each mixer against an independent float64 reference (RetNet's parallel retention, GLA's step
loop; values and gradients), carried state, causality, a memorisation smoke run, parameter counts, bf16."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import xlstm
from kernels.testing import assert_close
from xlstm.baselines.gla import GLA, GLAConfig
from xlstm.baselines.retnet import RetNet, RetNetConfig
from xlstm.baselines.transformer import rotary

MODELS = {"retnet": (RetNet, RetNetConfig), "gla": (GLA, GLAConfig)}
D, H, S = 16, 2, 13


def _backbone(name: str, **kw):
    """A tiny float64 backbone, chunks of 4 (13 positions: several chunks and a padded one), every param nudged."""
    cls, cfg = MODELS[name]
    torch.manual_seed(0)
    model = cls(cfg(**{"embedding_dim": D, "num_blocks": 2, "num_heads": H, "gla_chunk_size": 4, **kw})).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, dtype=p.dtype) * 0.3)
    return model


def _gated_out(m, o, x):
    """o (B, H, S, DV) -> out(RMSNorm_head(o) * w * silu(g_proj x)), written out."""
    o = o.transpose(1, 2)
    o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + m.norm.norm.eps) * m.norm.norm.weight
    return F.linear(o.flatten(-2) * F.silu(F.linear(x, m.g_proj.weight)), m.out.weight)


def _heads(t):  # (B, S, H * DH) -> (B, H, S, DH)
    return t.view(t.shape[0], t.shape[1], H, -1).transpose(1, 2)


def _retnet_reference(m, x):
    """Parallel retention: o = ((q k^T) * scale * Dmask) v, Dmask[t, s] = gamma^(t - s) for s <= t else 0."""
    q = rotary(_heads(F.linear(x, m.q_proj.weight)), 0, m.config.rope_base)
    k = rotary(_heads(F.linear(x, m.k_proj.weight)), 0, m.config.rope_base)
    v = _heads(F.linear(x, m.v_proj.weight))
    gamma = (1 - 2.0 ** (-5.0 - torch.arange(H, dtype=torch.float64)))[:, None, None]  # (H, 1, 1)
    t = torch.arange(x.shape[1], dtype=torch.float64)
    lag = t[:, None] - t[None, :]
    dmask = torch.where(lag >= 0, gamma ** lag.clamp(min=0), torch.zeros(()))  # (H, S, S)
    o = ((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5 * dmask) @ v
    return _gated_out(m, o, x)


def _gla_reference(m, x):
    """Step loop: S_t = diag(exp(gk_t)) S_{t-1} + k_t^T v_t, o_t = scale q_t S_t."""
    q, k, v = (_heads(F.linear(x, p.weight)) for p in (m.q_proj, m.k_proj, m.v_proj))
    w1, w2 = m.gk_proj[0], m.gk_proj[1]
    gk = _heads(F.logsigmoid(F.linear(F.linear(x, w1.weight), w2.weight, w2.bias)) / 16.0)
    state, outs = x.new_zeros(x.shape[0], H, q.shape[-1], v.shape[-1]), []
    for t in range(x.shape[1]):
        state = gk[:, :, t].exp()[..., None] * state + k[:, :, t, :, None] * v[:, :, t, None, :]
        outs.append(q.shape[-1] ** -0.5 * (q[:, :, t, None, :] @ state)[:, :, 0])
    return _gated_out(m, torch.stack(outs, 2), x)


@pytest.mark.parametrize("name, reference", [("retnet", _retnet_reference), ("gla", _gla_reference)])
def test_mixer_matches_the_float64_reference(name, reference):
    m = _backbone(name).stack.blocks[0].mixer
    x = torch.randn(2, S, D, dtype=torch.float64, requires_grad=True)
    weights = {n: p for n, p in m.named_parameters() if "norm" not in n}  # projections (and GLA's decay bias)
    cot = torch.randn(2, S, D, dtype=torch.float64)
    y, _ = m(x)
    y_ref = reference(m, x)
    assert_close("y", y_ref, y, 1e-10)
    grads = torch.autograd.grad((y * cot).sum(), [x, *weights.values()])
    grads_ref = torch.autograd.grad((y_ref * cot).sum(), [x, *weights.values()])
    for n, g, g_ref in zip(["x", *weights], grads, grads_ref):
        assert_close(f"d{n}", g_ref, g, 1e-9)


@pytest.mark.parametrize("name, heads, kw, expected", [
    ("gla", 4, {}, 411_962_368),  # Table 1: 412M
    ("retnet", 8, {"mlp_hidden": 2752}, 431_804_416),  # the paper size: Table 1's 431M
    ("retnet", 8, {"expand_v": 2.0, "hidden_ratio": 2.0}, 417_651_712),  # flash-linear-attention's defaults
])
def test_parameter_counts_at_350m(name, heads, kw, expected):
    cls, cfg = MODELS[name]
    with torch.device("meta"):
        lm = xlstm.LanguageModel(cls(cfg(embedding_dim=1024, num_blocks=24, num_heads=heads, vocab_size=50304,
                                         context_length=2048, **kw)))
    assert sum(p.numel() for p in lm.parameters()) == expected


@pytest.mark.parametrize("name", MODELS)
def test_head_split_errors_are_one_line(name):
    cls, cfg = MODELS[name]
    with pytest.raises(ValueError, match=r"embedding_dim \* expand_k=.* must be divisible by num_heads=3"):
        cls(cfg(embedding_dim=16, num_heads=3))


def test_retnet_decays_are_fixed_and_exact_in_every_dtype():
    m = RetNet(RetNetConfig(embedding_dim=32, num_blocks=1, num_heads=4)).stack.blocks[0].mixer
    assert not any("decay" in name for name, _ in m.named_parameters())
    gamma = 1 - 2.0 ** (-5.0 - torch.arange(4, dtype=torch.float64))
    assert_close("log gamma", gamma.log(), m.log_decay(torch.float64, torch.device("cpu")), 1e-15)
    m.to(torch.bfloat16)  # casting the model leaves the decays alone (the recurrence runs in float32)
    assert_close("log gamma", gamma.log(), m.log_decay(torch.float32, torch.device("cpu")), 1e-7)


@pytest.mark.parametrize("name", MODELS)
def test_bf16_runs_and_is_finite(name):
    model = _backbone(name).to(torch.bfloat16)
    x = torch.randn(2, S, D, dtype=torch.bfloat16)
    y, state = model(x[:, :9], return_state=True)
    y2, _ = model(x[:, 9:], state, return_state=True)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all() and torch.isfinite(y2).all()
