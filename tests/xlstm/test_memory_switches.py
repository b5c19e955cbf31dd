"""The memory-study switches of the xLSTM stack: the sLSTM's sigmoid input gate (against its definition, with
gradients), the sLSTM without memory mixing, the mLSTM stabilizer/normalizer switches inside the model (sequence
and step forms agree), the input gate's peak diagnostic, and the config's one-line errors."""
from __future__ import annotations

import pytest
import torch

import xlstm
from experiments.module import diagnostics
from kernels.slstm import resolve_backend, slstm_forward
from xlstm.mlstm_layer import HeadGate

from .helpers import stepped_logits


B, S, NH, DH = 2, 7, 2, 3


def slstm_definition(x, R, b, igate_activation):
    """sLSTM without a stabilizer, float64: c = f c + i z, n = f n + i, h = o c / n (i = exp or sigmoid)."""
    h = c = n = x.new_zeros(B, NH, DH)
    hs = []
    for t in range(S):
        raw = x[:, t] + torch.einsum("ghed,bhd->bghe", R, h) + b
        i = torch.exp(raw[:, 0]) if igate_activation == "exp" else torch.sigmoid(raw[:, 0])
        f, z, o = torch.sigmoid(raw[:, 1]), torch.tanh(raw[:, 2]), torch.sigmoid(raw[:, 3])
        c, n = f * c + i * z, f * n + i
        h = o * c / n
        hs.append(h)
    return torch.stack(hs, dim=1)


@pytest.mark.parametrize("activation", ["exp", "sigmoid"])
def test_slstm_input_gate_activation_matches_its_definition_with_gradients(activation):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, S, 4, NH, DH, generator=g, dtype=torch.float64, requires_grad=True)
    R = (0.5 * torch.randn(4, NH, DH, DH, generator=g, dtype=torch.float64)).requires_grad_()
    b = torch.randn(4, NH, DH, generator=g, dtype=torch.float64, requires_grad=True)
    h = slstm_forward(x, R, b, backend="torch", igate_activation=activation)
    h_ref = slstm_definition(x, R, b, activation)
    torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-12)  # float64: rounding ~1e-15
    w = torch.randn_like(h)
    for ours, ref in zip(torch.autograd.grad((h * w).sum(), (x, R, b)), torch.autograd.grad((h_ref * w).sum(), (x, R, b))):
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-11)
    if activation == "sigmoid":  # a different cell: the exponential gate gives other values
        assert not torch.allclose(h, slstm_definition(x, R, b, "exp"))


def test_the_sigmoid_input_gate_runs_in_the_torch_loops_only():
    assert resolve_backend("auto", torch.device("cuda"), 64, "sigmoid") == "torch_fused"
    with pytest.raises(ValueError, match="exponential input gate only; use slstm_backend=torch"):
        resolve_backend("triton", torch.device("cuda"), 64, "sigmoid")


def _model(name="xlstm_1_1", **kw):
    torch.manual_seed(0)
    return xlstm.build(name, embedding_dim=32, num_blocks=2, num_heads=2, vocab_size=11, **kw)


def test_without_memory_mixing_the_slstm_has_no_recurrent_weights():
    mixing, plain = _model(), _model(slstm_memory_mixing=False, slstm_recurrent_init="standard")
    names = {n for n, _ in plain.named_parameters()}
    assert not any(n.endswith(".R") for n in names) and any(n.endswith(".R") for n, _ in mixing.named_parameters())
    R = [m.R for m in plain.modules() if hasattr(m, "R")]
    assert R and all(not r.requires_grad and r.abs().sum() == 0 for r in R)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(mixing) - count(plain) == 4 * 2 * 16 * 16  # one sLSTM block: 4 gates x 2 heads x 16 x 16
    tokens = torch.randint(0, 11, (2, 9))
    plain(tokens).sum().backward()  # trains without them


@pytest.mark.parametrize("stabilizer, normalizer", [("max", "max"), ("none", "max"), ("max", "abs"), ("none", "one")])
@pytest.mark.parametrize("block", ["pre_up", "post_up"])
def test_mlstm_switches_give_the_same_model_in_sequence_and_step_form(stabilizer, normalizer, block):
    model = _model("xlstm_1_0", mlstm_backend="variant--torch", mlstm_stabilizer=stabilizer,
                   mlstm_normalizer=normalizer, mlstm_block=block).double()
    tokens = torch.randint(0, 11, (2, 8))
    torch.testing.assert_close(stepped_logits(model, tokens), model(tokens), rtol=1e-9, atol=1e-10)


def test_the_paper_setting_through_the_switchable_form_is_the_default_model():
    tokens = torch.randint(0, 11, (2, 8))
    torch.testing.assert_close(_model("xlstm_1_0", mlstm_backend="variant--torch")(tokens),
                               _model("xlstm_1_0")(tokens), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(_model("xlstm_1_0", mlstm_normalizer="one")(tokens), _model("xlstm_1_0")(tokens))


def test_the_input_gate_peak_is_tracked_in_training_only(monkeypatch):
    model = _model("xlstm_1_0")
    tokens = torch.randint(0, 11, (2, 8))
    model.eval()
    model(tokens)
    assert diagnostics(model) == {}  # nothing seen in training yet
    model.train()
    model(tokens)  # the input and forget gates as one product
    merged = diagnostics(model)
    # the same forward with one product per gate module, observed through forward hooks on the input gates
    monkeypatch.setattr(HeadGate, "together", staticmethod(lambda x, *gates: [gate(x) for gate in gates]))
    gates = []
    hooks = [m.igate.register_forward_hook(lambda mod, inp, out: gates.append(out.max().item()))
             for m in model.modules() if hasattr(m, "igate")]
    model(tokens)
    for hook in hooks:
        hook.remove()
    assert merged == diagnostics(model) == {"igate_max": pytest.approx(max(gates))}


@pytest.mark.parametrize("key, value, message", [
    ("mlstm_stabilizer", "clip", "mlstm_stabilizer must be max | none, got 'clip'"),
    ("mlstm_normalizer", "sum", "mlstm_normalizer must be max | abs | one, got 'sum'"),
    ("slstm_igate_activation", "relu", "slstm_igate_activation must be exp | sigmoid, got 'relu'"),
])
def test_bad_switch_values_are_one_line_errors(key, value, message):
    config = xlstm.xLSTMConfig(**{key: value})
    with pytest.raises(ValueError, match=message.replace("|", r"\|")):
        config.check()
