"""Activation checkpointing and torch.compile per residual block: the same values and gradients as without."""
from __future__ import annotations

import pytest
import torch

import xlstm
from xlstm.components import compile_blocks, residual_blocks, set_activation_checkpointing


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    spec = xlstm.MODELS[name]
    config = spec.backbone.config_class(name=name, embedding_dim=32, num_blocks=2, num_heads=2, **spec.defaults)
    return xlstm.build_backbone(config)


def _values_and_grads(model: torch.nn.Module, x: torch.Tensor):
    model.zero_grad()
    y = model(x)
    y.square().sum().backward()
    return y.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("name", ["llama", "mamba", "rwkv4", "xlstm_7_1", "lstm_block"])
def test_activation_checkpointing_recomputes_exactly(name):
    model, x = _model(name), torch.randn(2, 8, 32)
    assert residual_blocks(model), "every model is a residual stack of blocks"
    y, grads = _values_and_grads(model, x)
    set_activation_checkpointing(model, True)
    y2, grads2 = _values_and_grads(model, x)
    assert torch.equal(y, y2)  # the recomputation runs the same kernels on the same inputs: bitwise equal
    assert all(torch.equal(a, b) for a, b in zip(grads, grads2))
    with torch.no_grad():  # evaluation does not recompute (nn.LSTM takes another CPU kernel without autograd)
        torch.testing.assert_close(model(x), y, rtol=1e-6, atol=1e-6)


def test_compiled_blocks_keep_names_values_and_gradients():
    _check_compiled("llama")


@pytest.mark.slow  # torch.compile of every model on a CPU: ~10 s to ~40 s each (inductor's C++ build), minutes in all
@pytest.mark.parametrize("name", list(xlstm.MODELS))
def test_every_model_compiles_with_the_same_values_and_gradients(name):
    _check_compiled(name)


@pytest.mark.gpu  # CUDA: the blocks around the Triton kernels compile to Triton as well (run by run_on_gpu.sh)
@pytest.mark.parametrize("name", ["llama", "mamba", "rwkv4", "xlstm_1_0", "xlstm_7_1"])
def test_models_compile_on_cuda_with_the_same_values_and_gradients(name):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    _check_compiled(name, "cuda")


def _check_compiled(name: str, device: str = "cpu") -> None:
    model, x = _model(name).to(device), torch.randn(2, 8, 32, device=device)
    names = [n for n, _ in model.named_parameters()]
    y, grads = _values_and_grads(model, x)
    compile_blocks(model)
    assert [n for n, _ in model.named_parameters()] == names  # checkpoints load either way
    y2, grads2 = _values_and_grads(model, x)
    scale = y.abs().max()
    # fused kernels reorder float32 sums: agreement to a few ulps of the output's scale (2^-20 ~ 1e-6)
    assert (y - y2).abs().max() <= 1e-5 * scale
    # a gradient's rounding error scales with the terms summed into it, not with its own size: compare every
    # gradient against the largest one
    grad_scale = max(a.abs().max() for a in grads)
    for a, b in zip(grads, grads2):
        assert (a - b).abs().max() <= 1e-5 * grad_scale
