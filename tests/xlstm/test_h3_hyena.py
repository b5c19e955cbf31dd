"""H3 and Hyena: the mixers against independent float64 references (a step-by-step diagonal recurrence; an O(S^2)
double loop), carried state == one forward, causality, a training smoke, filters past context_length, and the
parameter counts of the 350M layout."""
from __future__ import annotations

import pytest
import torch

import xlstm
from kernels.testing import assert_close
from xlstm.baselines.h3 import H3, H3Config, H3Mixer
from xlstm.baselines.hyena import Hyena, HyenaConfig, HyenaMixer

MODELS = {"h3": (H3, H3Config), "hyena": (Hyena, HyenaConfig)}
f64 = torch.float64


def _backbone(name: str, **overrides):
    torch.manual_seed(0)
    cls, cfg = MODELS[name]
    model = cls(cfg(**{"embedding_dim": 8, "num_blocks": 2, "context_length": 32, **overrides}))
    for p in model.parameters():  # nudge the zero biases and the small GPT-2-init filter MLP so every path matters
        p.data.add_(torch.randn(p.shape) * 0.1)
    return model.double().eval()


@pytest.mark.parametrize("d_state", [8, 32])  # shorter / longer than the sequence
def test_h3_mixer_matches_the_diagonal_recurrence(d_state):
    torch.manual_seed(0)
    B, S, D = 2, 20, 6
    m = H3Mixer(D, d_state, "auto").double()
    x = torch.randn(B, S, D, dtype=f64)
    with torch.no_grad():
        out, _ = m(x)
        q, k, v = m.q_proj(x), m.k_proj(x), m.v_proj(x)  # (B, S, D)
        shifted = torch.stack([sum(m.shift[:, j] * k[:, t - j] for j in range(min(d_state, t + 1)))
                               for t in range(S)], dim=1)  # FIR of length N
        u = shifted * v
        A = torch.complex(-m.log_A_real.exp(), m.A_imag)  # (D, N/2)
        decay = torch.exp(m.log_dt.exp()[:, None] * A)
        b_bar, C = (decay - 1) / A, torch.view_as_complex(m.C)
        h, ys = torch.zeros(B, D, d_state // 2, dtype=torch.complex128), []
        for t in range(S):
            h = decay * h + b_bar * u[:, t, :, None]
            ys.append(2 * (C * h).sum(-1).real + m.skip * u[:, t])
        ref = m.out(q * torch.stack(ys, dim=1))
    assert_close("H3 mixer vs recurrence", ref, out, 1e-10)


def test_hyena_mixer_matches_a_direct_convolution():
    torch.manual_seed(0)
    B, S, D = 2, 12, 6
    m = HyenaMixer(HyenaConfig(embedding_dim=D, context_length=16)).double()  # torch's default Linear init
    x = torch.randn(B, S, D, dtype=f64, requires_grad=True)
    cotangent = torch.randn(B, S, D, dtype=f64)

    def reference(x):
        a = m.in_proj(x)  # (B, S, 3D)
        w, K = m.short_conv.weight[:, 0], m.short_conv.kernel_size  # (3D, K)
        z = torch.stack([m.short_conv.bias + sum(w[:, K - 1 - j] * a[:, t - j] for j in range(min(K, t + 1)))
                         for t in range(S)], dim=1)
        x0, x1, v = z.chunk(3, dim=-1)
        u, h, bias = v * x1, m.filter(S), m.filter.bias  # h (D, S)
        assert h.abs().max() > 1e-2, "the filter should matter in this test"
        y = torch.stack([sum(h[:, t - s] * u[:, s] for s in range(t + 1)) + bias * u[:, t] for t in range(S)], 1)
        return m.out(y * x0)

    out = m(x)[0]
    (grad,) = torch.autograd.grad((out * cotangent).sum(), x)
    ref = reference(x)
    (ref_grad,) = torch.autograd.grad((ref * cotangent).sum(), x)
    assert_close("Hyena mixer values", ref, out, 1e-10)
    assert_close("Hyena mixer input gradients", ref_grad, grad, 1e-10)


@pytest.mark.parametrize("name", list(MODELS))
def test_carried_state_and_steps_equal_one_forward(name):
    model = _backbone(name)
    x = torch.randn(2, 13, 8, dtype=f64)
    with torch.no_grad():
        full, _ = model.forward_state(x, None)
        first, state = model.forward_state(x[:, :5], None)
        rest, _ = model.forward_state(x[:, 5:], state)
        assert_close("5 + 8", full, torch.cat([first, rest], 1), 1e-10)
        state, steps = None, []
        for t in range(13):
            y, state = model.step(x[:, t:t + 1], state)
            steps.append(y)
        assert_close("one at a time", full, torch.cat(steps, 1), 1e-10)


@pytest.mark.parametrize("name", list(MODELS))
def test_causal(name):
    model = _backbone(name)
    x = torch.randn(2, 14, 8, dtype=f64)
    changed = x.clone()
    changed[:, 9:] = torch.randn(2, 5, 8, dtype=f64)  # not a constant shift: the LayerNorm would remove it
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert (a[:, :9] - b[:, :9]).abs().max() < 1e-12, "outputs before the change moved (beyond FFT round-off)"
    assert (a[:, 9:] - b[:, 9:]).abs().max() > 1e-3


def test_filters_past_context_length():
    h3, hyena = _backbone("h3", context_length=16), _backbone("hyena", context_length=16)
    with torch.no_grad():
        for kernel in (h3.stack.blocks[0].mixer.ssm_kernel(40), hyena.stack.blocks[0].mixer.filter(40)):
            assert kernel.shape == (8, 40) and torch.isfinite(kernel).all()
        for model in (h3, hyena):
            assert torch.isfinite(model(torch.randn(1, 40, 8, dtype=f64))).all()


def test_param_counts_of_the_350M_layout():
    """Table 1 lists H3 420M and Hyena 435M; this layout (24 blocks, MLP 4D, untied) gives 410.1M and 407.5M."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    with torch.device("meta"):
        h3 = xlstm.LanguageModel(H3(H3Config(embedding_dim=1024, num_blocks=24, vocab_size=50304,
                                             context_length=2048)))
        hyena = xlstm.LanguageModel(Hyena(HyenaConfig(embedding_dim=1024, num_blocks=24, vocab_size=50304,
                                                      context_length=2048)))
    assert count(h3.backbone.stack.blocks[0].mixer) == 4_397_056
    assert count(hyena.backbone.stack.blocks[0].mixer) == 4_287_040  # ~4.29M per Hyena operator
    assert abs(count(h3) / 1e6 - 410.1) < 0.05
    assert abs(count(hyena) / 1e6 - 407.5) < 0.05
