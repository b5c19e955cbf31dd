"""The optimizer groups and the learning-rate schedule of the LightningModule."""
import math

import pytest
from torch import nn

from experiments.module import no_decay_groups, warmup_cosine
from experiments.schema import OptimConfig
from xlstm.components import LayerNorm


def test_no_decay_for_embeddings_biases_and_norms():
    emb, lin, norm = nn.Embedding(10, 4), nn.Linear(4, 4), LayerNorm(4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = emb.weight  # tied: counted once, in the no-decay group
    decay, no_decay = no_decay_groups([nn.ModuleList([emb, lin, norm, head])], 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(lin.weight)}
    assert {id(p) for p in no_decay["params"]} == {id(emb.weight), id(lin.bias), id(norm.weight)}


def test_warmup_then_cosine_to_the_floor():
    f = warmup_cosine(OptimConfig(lr=1e-3, warmup_steps=10, min_lr=1e-5), max_steps=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.01 + 0.99 * 0.5)  # halfway through the cosine
    assert f(110) == pytest.approx(0.01) and f(500) == pytest.approx(0.01)
    g = warmup_cosine(OptimConfig(lr=1.0, warmup_fraction=0.1, min_lr_ratio=0.1, decay_steps=1000), max_steps=2000)
    assert g(99) == pytest.approx(1.0) and g(1000) == pytest.approx(0.1)
    assert g(550) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
