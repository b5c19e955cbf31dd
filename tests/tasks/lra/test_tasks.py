"""The LRA tasks on the task contract: batches (padding mask, trimming, purity across resumes), heads and encoders,
generated-split caching, previews, bad settings."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tasks import TASKS, build_task
from tasks.heads import PairClassifier, PooledClassifier
from tasks.lra.datasets import ListOpsConfig, RetrievalConfig, average_pool
from tasks.lra.examples import Examples
from xlstm import build_backbone
from xlstm.config import xLSTMConfig

LRA_NAMES = ("lra_listops", "lra_pathfinder", "lra_image", "lra_image_rgb", "lra_retrieval", "lra_text")
SHORT = dict(min_length=10, max_length=40, max_depth=4, num_train=50, num_val=20, num_test=20, batch_size=8,
             eval_batch_size=16)


def backbone(dim: int = 16):
    return build_backbone(xLSTMConfig(name="xlstm_1_0", ratio=[1, 0], embedding_dim=dim, num_blocks=1, num_heads=2,
                                      vocab_size=16))


def test_every_lra_task_is_registered_with_its_config():
    for name in LRA_NAMES:
        assert TASKS[name].config_class(name=name).name == name


def test_listops_batches_trim_padding_and_mark_valid_positions(tmp_path):
    task = build_task(ListOpsConfig(**SHORT), tmp_path)
    batch = task.train_batch(0)
    ex = task.examples("train")
    assert batch["tokens"].dtype == torch.int64 and batch["targets"].shape == (8,)
    lengths = batch["mask"].sum(1)
    assert batch["tokens"].shape[1] == int(lengths.max())  # trimmed to the longest row of the batch
    assert (batch["tokens"][~batch["mask"]] == 0).all() and (batch["tokens"][batch["mask"]] > 0).all()
    assert set(lengths.tolist()) <= set(ex.lengths.tolist())
    # batch i is a pure function of i: a fresh task (a resumed run) gives the same batches; epochs reshuffle
    again = build_task(ListOpsConfig(**SHORT), tmp_path)
    for i in (0, 5, 6, 13):
        assert torch.equal(again.train_batch(i)["tokens"], task.train_batch(i)["tokens"])
    per_epoch = 50 // 8
    first = torch.cat([task.train_batch(i)["targets"] for i in range(per_epoch)])
    assert len(first) == 48  # one epoch: 6 batches of distinct rows (the last 2 rows wait for the next permutation)
    eval_batches = task.eval_batches("val")
    assert sum(len(b["targets"]) for b in eval_batches) == 20 and [len(b["targets"]) for b in eval_batches] == [16, 4]


def test_generated_splits_are_cached_by_their_settings(tmp_path):
    task = build_task(ListOpsConfig(**SHORT), tmp_path)
    ex = task.examples("val")
    cached = list((tmp_path / "lra" / "generated").glob("lra_listops-val-*.npz"))
    assert len(cached) == 1
    other = build_task(ListOpsConfig(**{**SHORT, "max_depth": 5}), tmp_path)
    other.examples("val")
    assert len(list((tmp_path / "lra" / "generated").glob("lra_listops-val-*.npz"))) == 2
    again = build_task(ListOpsConfig(**SHORT), tmp_path).examples("val")
    assert np.array_equal(again.inputs, ex.inputs) and np.array_equal(again.labels, ex.labels)


def test_pooled_head_scores_a_batch_and_padding_does_not_change_a_row(tmp_path):
    task = build_task(ListOpsConfig(**SHORT), tmp_path)
    network = task.network(backbone()).eval()
    assert isinstance(network, PooledClassifier)
    batch = task.train_batch(0)
    scored = network.score(batch)
    assert scored.logits.shape == (8, 10) and torch.equal(scored.targets, batch["targets"])
    # a causal backbone with mean pooling over valid positions: one row alone (no padding) gives the same logits
    row = int(batch["mask"].sum(1).argmin())
    n = int(batch["mask"][row].sum())
    alone = network(batch["tokens"][row:row + 1, :n])
    torch.testing.assert_close(alone[0], scored.logits[row], rtol=1e-4, atol=1e-5)


def test_retrieval_uses_the_pair_head_with_pair_masks(tmp_path):
    task = build_task(RetrievalConfig(batch_size=2, eval_batch_size=2), tmp_path)
    rng = np.random.default_rng(0)
    lengths = np.array([[5, 3], [2, 6], [6, 6]])
    inputs = np.zeros((3, 2, 6), dtype=np.uint16)
    for i, pair in enumerate(lengths):
        for side, n in enumerate(pair):
            inputs[i, side, :n] = rng.integers(1, 257, n)
    task._examples = {s: Examples(inputs, lengths, np.array([1, 0, 1])) for s in ("train", "val", "test")}
    network = task.network(backbone())
    assert isinstance(network, PairClassifier)
    batch = task.eval_batches("val")[1]  # the last pair alone: trimmed to its own longest document
    assert batch["tokens"].shape == (1, 2, 6) and batch["mask"].shape == (1, 2, 6)
    first = task.eval_batches("val")[0]
    assert first["mask"].sum(-1).tolist() == [[5, 3], [2, 6]]
    assert network.score(first).logits.shape == (2, 2)


def test_average_pool_and_pixel_encodings():
    images = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4)
    pooled = average_pool(images, 2)
    assert pooled.shape == (2, 2, 2) and pooled[0, 0, 0] == np.rint((0 + 1 + 4 + 5) / 4)
    assert average_pool(images, 1) is images


@pytest.mark.parametrize("name,key,value", [("lra_listops", "source", "web"), ("lra_listops", "pooling", "max"),
                                            ("lra_image", "pool", 3), ("lra_image", "encoding", "conv"),
                                            ("lra_image_rgb", "encoding", "embedding"),
                                            ("lra_pathfinder", "source", "hub"), ("lra_text", "source", "files")])
def test_bad_settings_name_the_key(name, key, value):
    with pytest.raises(ValueError, match=key):
        build_task(TASKS[name].config_class(name=name, **{key: value}))


def test_listops_preview_prints_expressions_with_their_values(capsys):
    from tasks.__main__ import main

    assert main(["preview", "lra_listops", "--n", "2", "--length", "60", "--seed", "3"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2 and all(line["length"] <= 60 for line in lines)
    assert lines[0]["input"].startswith("[") and lines[0]["input"].endswith("]") and lines[0]["target"].isdigit()


def test_missing_files_are_one_line(tmp_path):
    from tasks.lra import DataMissing

    for name, settings in (("lra_listops", {"source": "tsv"}), ("lra_retrieval", {}), ("lra_text", {}),
                           ("lra_image", {}), ("lra_image", {"source": "fashion_mnist", "path": str(tmp_path)})):
        task = build_task(TASKS[name].config_class(name=name, **settings), tmp_path)
        with pytest.raises(DataMissing) as err:
            task.examples("train")
        assert "\n" not in str(err.value), name


def test_linear_pixel_encoding_scales_by_the_training_moments(tmp_path):
    from tasks.lra.datasets import PathfinderConfig

    task = build_task(PathfinderConfig(resolution=20, contour_length=6, num_distractors=2, num_train=30, num_val=5,
                                       num_test=5, encoding="linear"), tmp_path)
    values = task.examples("train").inputs.astype(np.float64) / 255.0
    features = task.train_batch(0)["tokens"]
    assert features.dtype == torch.float32 and features.shape[-1] == 1
    mean, std = task._scale()
    assert mean[0] == pytest.approx(values.mean(), rel=1e-6) and std[0] == pytest.approx(values.std(), rel=1e-5)
    network = task.network(backbone())
    assert isinstance(network.encoder, torch.nn.Linear)
    assert network.score(task.train_batch(0)).logits.shape == (30, 2)  # batch 64 > 30 rows: one batch of all
