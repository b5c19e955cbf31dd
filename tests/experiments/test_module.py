"""The optimizer groups and the learning-rate schedule of the LightningModule."""
import math

import pytest
from torch import nn

import xlstm
from experiments.module import weight_decay_groups, warmup_cosine
from experiments.schema import OptimConfig
from xlstm.components import LayerNorm


def test_no_decay_for_embeddings_biases_and_norms():
    emb, lin, norm = nn.Embedding(10, 4), nn.Linear(4, 4), LayerNorm(4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = emb.weight  # tied: counted once, in the no-decay group
    decay, no_decay = weight_decay_groups(nn.ModuleList([emb, lin, norm, head]), 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(lin.weight)}
    assert {id(p) for p in no_decay["params"]} == {id(emb.weight), id(lin.bias), id(norm.weight)}


def _decayed(model: nn.Module) -> set[str]:
    decay, _ = weight_decay_groups(model, 0.1)
    ids = {id(p) for p in decay["params"]}
    return {name for name, p in model.named_parameters() if id(p) in ids}


def test_xlstm_weight_decay_partition_is_the_official_one():
    """The official code decays a parameter when its name says it is a weight and not a norm weight, and never the
    token embedding: here one mLSTM block (0), one sLSTM block (3), the LM head."""
    model = xlstm.build("xlstm_7_1", embedding_dim=32, num_blocks=4, vocab_size=10, slstm_at=[3])
    decayed = _decayed(model)
    mlstm = {f"backbone.stack.blocks.0.mixer.{p}.weight" for p in
             ("proj_up", "conv", "q_proj", "k_proj", "v_proj", "igate", "fgate", "proj_down")}
    slstm = {f"backbone.stack.blocks.3.mixer.gate_proj.{g}.weight" for g in range(4)} | {
        f"backbone.stack.blocks.3.ffn.{p}.weight" for p in ("up", "down")} | {"backbone.stack.blocks.3.mixer.conv.weight"}
    assert {n for n in decayed if ".blocks.0." in n} == mlstm
    assert {n for n in decayed if ".blocks.3." in n} == slstm
    assert {n for n in decayed if ".blocks." not in n} == {"head.weight"}
    for kept in ("backbone.stack.blocks.3.mixer.R", "backbone.stack.blocks.3.mixer.b", "embedding.weight",
                 "backbone.stack.blocks.0.mixer.skip", "backbone.stack.blocks.0.mixer.outnorm.weight",
                 "backbone.stack.blocks.0.mixer.igate.bias", "backbone.stack.blocks.0.mixer.conv.bias",
                 "backbone.stack.blocks.3.mixer_norm.weight", "backbone.stack.post_norm.weight"):
        assert kept not in decayed, kept


def test_baselines_decay_their_weight_matrices_only():
    assert _decayed(xlstm.build("lstm", embedding_dim=8, num_blocks=1, vocab_size=5)) == {
        "backbone.lstm.weight_ih_l0", "backbone.lstm.weight_hh_l0", "head.weight"}
    mamba = _decayed(xlstm.build("mamba", embedding_dim=8, num_blocks=1, vocab_size=5))
    assert not any(n.endswith(("A_log", ".D", "bias")) or "norm" in n for n in mamba)
    rwkv = _decayed(xlstm.build("rwkv4", embedding_dim=8, num_blocks=1, vocab_size=5))
    assert rwkv == {"head.weight"} | {f"backbone.stack.blocks.0.{m}.{p}.weight" for m, ps in
                                      (("time_mix", ("key", "value", "receptance", "output")),
                                       ("channel_mix", ("key", "value", "receptance"))) for p in ps}


def test_warmup_then_cosine_to_the_floor():
    f = warmup_cosine(OptimConfig(lr=1e-3, warmup_steps=10, min_lr=1e-5), max_steps=110)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.01 + 0.99 * 0.5)  # halfway through the cosine
    assert f(110) == pytest.approx(0.01) and f(500) == pytest.approx(0.01)
    g = warmup_cosine(OptimConfig(lr=1.0, warmup_fraction=0.1, min_lr_ratio=0.1, decay_steps=1000), max_steps=2000)
    assert g(99) == pytest.approx(1.0) and g(1000) == pytest.approx(0.1)
    assert g(550) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_cosine_with_restarts_repeats_the_cycle():
    """R = 3 cycles after warm-up: each starts at the peak and reaches the floor at its end; one cycle = cosine."""
    f = warmup_cosine(OptimConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.0, schedule="cosine_restarts", restarts=3),
                      max_steps=310)
    assert f(9) == pytest.approx(1.0)
    for start in (10, 110, 210):  # cycle starts: the peak again
        assert f(start) == pytest.approx(1.0)
        assert f(start + 50) == pytest.approx(0.5)  # halfway through the cycle
        assert f(start + 99) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
    assert f(310) == 0.0 and f(1000) == 0.0
    one = warmup_cosine(OptimConfig(lr=1.0, warmup_steps=10, schedule="cosine_restarts", restarts=1), max_steps=310)
    plain = warmup_cosine(OptimConfig(lr=1.0, warmup_steps=10), max_steps=310)
    assert [one(s) for s in range(320)] == [plain(s) for s in range(320)]
