"""RWKV-5 and RWKV-6: paper parameter counts, the time mix against a naive float64 loop written from the equations
(values and gradients), carried state, causality, a memorisation smoke run and bf16."""
from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F

import xlstm
from kernels.testing import assert_close
from xlstm.baselines.rwkv5 import RWKV5, RWKV5Config
from xlstm.baselines.rwkv6 import RWKV6, RWKV6Config

MODELS = {"rwkv5": (RWKV5, RWKV5Config), "rwkv6": (RWKV6, RWKV6Config)}
SIZES = ((768, 12), (1024, 24), (1536, 24), (2048, 24), (2560, 32))  # 125M, 350M, 760M, 1.3B, 2.7B
PAPER_M = {"rwkv5": (176.5, 455.7, 947.8, 1616.0, 3194.7), "rwkv6": (173.6, 441.6, 907.7, 1537.5, 3021.9)}


def _backbone(name: str, seed: int = 0, nudge: float = 0.1, **kw):
    """A tiny backbone in float64 with every parameter nudged (zero inits would hide paths)."""
    cls, cfg = MODELS[name]
    torch.manual_seed(seed)
    kw = {"embedding_dim": 16, "num_blocks": 2, "num_heads": 2, "gla_chunk_size": 4, **kw}
    model = cls(cfg(**kw)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, dtype=p.dtype) * nudge)
    return model


@pytest.mark.parametrize("name", MODELS)
def test_paper_parameter_counts(name):
    cls, cfg = MODELS[name]
    for (D, L), expected in zip(SIZES, PAPER_M[name]):
        with torch.device("meta"):
            lm = xlstm.LanguageModel(cls(cfg(embedding_dim=D, num_blocks=L, num_heads=D // 64, vocab_size=50304,
                                             context_length=2048)))
        n = sum(p.numel() for p in lm.parameters()) / 1e6
        assert abs(n - expected) < 0.05, f"{name} D={D} L={L}: {n:.2f}M != {expected}M"


def test_heads_must_divide_the_width():
    with pytest.raises(ValueError, match="divisible by num_heads"):
        RWKV6(RWKV6Config(embedding_dim=18, num_heads=4))


# --- the naive float64 time mix, straight from the equations ---------------------------------------------------

def _naive_wkv(r, k, v, w, u, H):
    """Per head and channel: y_t,j = sum_i r_t,i (u_i k_t,i v_t,j + s_ij); s_ij = w_t,i s_ij + k_t,i v_t,j.
    r, k, v, w (B, S, D) with w the decay factor; u (D,)."""
    B, S, D = r.shape
    N = D // H
    s = r.new_zeros(B, H, N, N)
    u = u.reshape(H, N, 1)
    out = []
    for t in range(S):
        r_t, k_t, v_t, w_t = (a[:, t].reshape(B, H, N) for a in (r, k, v, w))
        kv = k_t[..., :, None] * v_t[..., None, :]  # (B, H, N_i, N_j)
        out.append((r_t[..., :, None] * (u * kv + s)).sum(-2).reshape(B, D))
        s = w_t[..., :, None] * s + kv
    return torch.stack(out, 1)


def _naive_out(tm, o, g, H):
    """W_o(GroupNorm_H(o) * g) with the group norm written out as x060 does (no division, biased variance,
    eps 1e-5 * 8^2), which x052's GroupNorm_H(o / 8, eps 1e-5) equals."""
    B, S, D = o.shape
    o = o.reshape(B, S, H, D // H)
    mean = o.mean(-1, keepdim=True)
    var = ((o - mean) ** 2).mean(-1, keepdim=True)
    o = ((o - mean) / torch.sqrt(var + 1e-5 * 64)).reshape(B, S, D) * tm.ln_x.weight + tm.ln_x.bias
    return (o * g) @ tm.output.weight.T


def _naive_rwkv5(tm, x, H):
    prev = F.pad(x, (0, 0, 1, 0))[:, :-1]
    lerp = lambda mu: x * mu + prev * (1 - mu)  # noqa: E731
    r, k, v = (lerp(mu) @ lin.weight.T for mu, lin in ((tm.mix_r, tm.receptance), (tm.mix_k, tm.key),
                                                          (tm.mix_v, tm.value)))
    g = F.silu(lerp(tm.mix_g) @ tm.gate.weight.T)
    w = torch.exp(-torch.exp(tm.time_decay)).expand_as(r)
    return _naive_out(tm, _naive_wkv(r, k, v, w, tm.time_faaaa.reshape(-1), H), g, H)


def _naive_rwkv6(tm, x, H):
    xx = F.pad(x, (0, 0, 1, 0))[:, :-1] - x
    lora = torch.tanh((x + xx * tm.time_maa_x) @ tm.time_maa_w1)  # (B, S, 5 R)
    R = lora.shape[-1] // 5
    m = [lora[..., c * R:(c + 1) * R] @ tm.time_maa_w2[c] for c in range(5)]  # w, k, v, r, g
    x_w, x_k, x_v, x_r, x_g = (x + xx * (maa + m_c) for maa, m_c in zip(
        (tm.time_maa_w, tm.time_maa_k, tm.time_maa_v, tm.time_maa_r, tm.time_maa_g), m))
    r, k, v = x_r @ tm.receptance.weight.T, x_k @ tm.key.weight.T, x_v @ tm.value.weight.T
    g = F.silu(x_g @ tm.gate.weight.T)
    w = torch.exp(-torch.exp(tm.time_decay + torch.tanh(x_w @ tm.time_decay_w1) @ tm.time_decay_w2))
    return _naive_out(tm, _naive_wkv(r, k, v, w, tm.time_faaaa.reshape(-1), H), g, H)


@pytest.mark.parametrize("name", MODELS)
def test_time_mix_equals_the_naive_loop_values_and_gradients(name):
    tm = _backbone(name).stack.blocks[1].time_mix
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 13, 16, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 13, 16, generator=g, dtype=torch.float64)
    names, params = zip(*tm.named_parameters())
    y, state = tm(x, None, None)
    ref = (_naive_rwkv5 if name == "rwkv5" else _naive_rwkv6)(tm, x, 2)
    assert_close("y", ref, y, 1e-10)
    assert state.shape == (2, 2, 8, 8) and state.dtype == torch.float64
    grads = torch.autograd.grad((y * weight).sum(), (x, *params))
    ref_grads = torch.autograd.grad((ref * weight).sum(), (x, *params))
    must = {"time_decay", "time_faaaa"} | ({"time_maa_w1", "time_maa_w2", "time_decay_w1", "time_decay_w2"}
                                          if name == "rwkv6" else set())
    assert must <= set(names)
    for n, a, b in zip(("x", *names), ref_grads, grads):
        assert b.abs().sum() > 0, f"no gradient reaches {n}"
        assert_close(f"d{n}", a, b, 1e-10)


@pytest.mark.parametrize("name", MODELS)
def test_bf16_runs(name):
    bb = _backbone(name, nudge=0.02).to(torch.bfloat16)
    y, state = bb(torch.randn(2, 9, 16).to(torch.bfloat16), return_state=True)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    assert state[0][1].dtype == torch.float32  # the WKV state stays float32
