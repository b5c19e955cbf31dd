"""The MQAR generator: labels, key/value ranges, uniqueness, the power-law query gaps, seeds, batches."""
from __future__ import annotations

import numpy as np
import pytest

from tasks import IGNORE, InfeasibleSetting, build_task
from tasks.mqar import MQARConfig, MQARTask, mqar


@pytest.mark.parametrize("context, pairs", [(64, 4), (128, 8), (256, 16), (768, 48), (2048, 256), (16, 4)])
def test_every_label_is_the_value_paired_with_the_queried_key(context, pairs):
    V = 8192
    inputs, targets = mqar(np.random.default_rng(0), 200, context, pairs, vocab=V)
    assert inputs.shape == targets.shape == (200, context)
    for x, y in zip(inputs, targets):
        keys, values = x[0:2 * pairs:2], x[1:2 * pairs:2]
        assert len(set(keys)) == pairs and len(set(values)) == pairs  # distinct within the sample
        assert keys.min() >= 1 and keys.max() < V // 2 and values.min() >= V // 2 and values.max() < V
        lookup = dict(zip(keys, values))
        scored = np.flatnonzero(y != IGNORE)
        assert len(scored) == pairs and (scored >= 2 * pairs).all() and ((scored - 2 * pairs) % 2 == 0).all()
        assert sorted(x[scored]) == sorted(keys)  # each key queried exactly once
        assert all(y[t] == lookup[x[t]] for t in scored)  # a lookup oracle scores 100 %
        rest = np.setdiff1d(np.arange(2 * pairs, context), scored)
        assert (x[rest] == 0).all()  # random_non_queries=False: zeros between the queries


def test_query_gaps_follow_the_power_law():
    """Query slots are K draws without replacement with p(i) ~ i^(a-1), a = 0.01: most queries land early, and the
    inclusion frequency of each slot matches numpy's successive sampling (Zoology's own call) on the same p."""
    context, pairs, n = 256, 16, 4000
    inputs, targets = mqar(np.random.default_rng(1), n, context, pairs)
    space = (context - 2 * pairs) // 2
    slots = np.concatenate([(np.flatnonzero(y != IGNORE) - 2 * pairs) // 2 for y in targets])
    ours = np.bincount(slots, minlength=space) / n  # inclusion frequency per slot
    assert ours[: space // 4].sum() / pairs > 0.5  # most queries in the first quarter
    p = np.arange(1, space + 1) ** (0.01 - 1.0)
    rng = np.random.default_rng(2)
    theirs = np.bincount(np.concatenate([rng.choice(space, pairs, replace=False, p=p / p.sum()) for _ in range(n)]),
                         minlength=space) / n
    assert np.abs(ours - theirs).max() < 0.04  # 4000 samples: binomial std <= 0.008 per slot


def test_random_non_queries_fill_the_gaps():
    inputs, targets = mqar(np.random.default_rng(2), 100, 128, 8, vocab=512, random_non_queries=True)
    assert (inputs[:, 16:] != 0).mean() > 0.95


def test_deterministic_per_seed_and_splits_disjoint():
    a = mqar(np.random.default_rng([1, 0, 0]), 50, 64, 4)
    b = mqar(np.random.default_rng([1, 0, 0]), 50, 64, 4)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    task = build_task(MQARConfig(context_length=64, num_train=2000, num_eval=500, batch_size=100))
    train = {tuple(r) for i in range(20) for r in task.train_batch(i)["tokens"].tolist()}
    val = {tuple(r) for b in task.eval_batches("val") for r in b["tokens"].tolist()}
    test = {tuple(r) for b in task.eval_batches("test") for r in b["tokens"].tolist()}
    assert len(train) == 2000 and not (train & val) and not (val & test) and not (train & test)


def test_epochs_reshuffle_the_same_training_set():
    task = build_task(MQARConfig(context_length=64, num_train=400, batch_size=100))
    epoch0 = [tuple(r) for i in range(4) for r in task.train_batch(i)["tokens"].tolist()]
    epoch1 = [tuple(r) for i in range(4, 8) for r in task.train_batch(i)["tokens"].tolist()]
    assert sorted(epoch0) == sorted(epoch1) and epoch0 != epoch1


def _protocol(optim=None, **task) -> dict:
    """The values MQAR's protocol writes into a run config."""
    config = vars(MQARConfig(**task))
    return MQARTask.protocol({"task": config, "optim": optim or {"lr": 1e-2, "min_lr": 1e-4}})


def test_protocol_resolves_steps_batch_and_lr_into_the_run_config():
    # epochs x (samples / batch) optimizer steps; no epochs: trainer.max_steps stays as configured
    assert _protocol(context_length=64, num_train=1000, batch_size=100, epochs=3) == {
        "model.vocab_size": 8192, "trainer.max_steps": 30}
    assert "trainer.max_steps" not in _protocol(context_length=64, batch_size=100)
    # batch 0 = the paper's batch for the context (App. B.1.2), and at batch 24 the learning rates are a tenth
    assert _protocol(context_length=256)["task.batch_size"] == 256 and "optim.lr" not in _protocol(context_length=256)
    at_2048 = _protocol(context_length=2048, num_kv_pairs=48, epochs=64)
    assert at_2048["task.batch_size"] == 24 and at_2048["optim.lr"] == 1e-3 and at_2048["optim.min_lr"] == 1e-5
    assert at_2048["trainer.max_steps"] == 64 * (100_000 // 24)
    # the paper's grid at batch 24, value by value (not a tenth of the other grid: 2.2e-4, not 2.15e-4)
    grid = [_protocol({"lr": lr, "min_lr": None}, context_length=2048, num_kv_pairs=48)["optim.lr"]
            for lr in (1e-2, 2.15e-3, 4.6e-4, 1e-4)]
    assert grid == [1e-3, 2.2e-4, 5e-5, 1e-5]
    assert "optim.min_lr" not in _protocol({"lr": 1e-2, "min_lr": None}, context_length=2048, num_kv_pairs=48)
    assert _protocol({"lr": 3e-3, "min_lr": None}, context_length=2048, num_kv_pairs=48)["optim.lr"] == 3e-4
    assert "optim.lr" not in _protocol(context_length=2048, num_kv_pairs=48, batch_size=24)  # an explicit batch
    # applied once: the resolved config (batch 24, lr 1e-3) resolves to itself
    assert "optim.lr" not in _protocol({"lr": 1e-3, "min_lr": 1e-5}, context_length=2048, num_kv_pairs=48,
                                       batch_size=24)
    with pytest.raises(ValueError, match="set task.batch_size"):
        _protocol(context_length=100)


def test_extrapolation_contexts_and_infeasible_settings():
    task = build_task(MQARConfig(context_length=64, num_kv_pairs=4, eval_context_lengths=[128], num_eval=40,
                                 eval_batch_size=20))
    contexts = [int(b["lengths"][0]) for b in task.eval_batches("val")]
    assert contexts == [64, 64, 128, 128]
    with pytest.raises(InfeasibleSetting, match="4 x the pairs"):
        build_task(MQARConfig(context_length=768, num_kv_pairs=256))
