"""The language-modelling task: window order (resume and world size), batches, evaluation splits, perplexity."""
from __future__ import annotations

import math
from itertools import islice
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tasks import Scored, build_task
from tasks.lm.data import DataError, window_order, windows_of_step
from tasks.lm.prepare import prepare
from tasks.lm.task import LMConfig, LMMetrics, LanguageModellingTask, padded_vocab

from .test_prepare import write_fixture


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    write_fixture(root / "src")
    for split in ("train", "validation"):
        prepare(str(root / "src"), "bytes", root / "lm_local" / split, shard_tokens=300)
    return root


def _task(data_dir, **kw) -> LanguageModellingTask:
    config = LMConfig(tokenizer="bytes", context_length=16, batch_size=8, eval_tokens=128, eval_batch_size=3, **kw)
    return build_task(config, data_dir)


def _loader(task, step: int, world: int = 1, rank: int = 0, accumulate: int = 1):
    task.trainer = SimpleNamespace(global_step=step, world_size=world, global_rank=rank,
                                   accumulate_grad_batches=accumulate)
    return iter(task.train_dataloader())


def test_each_epoch_is_a_permutation_and_steps_continue_across_epochs():
    order = window_order(10, 1, 0)
    assert sorted(order.tolist()) == list(range(10)) and not np.array_equal(order, window_order(10, 1, 1))
    steps = np.concatenate([windows_of_step(10, 1, s, 4) for s in range(5)])  # 20 windows: two epochs
    assert sorted(steps[:10].tolist()) == list(range(10)) and sorted(steps[10:].tolist()) == list(range(10))


def test_a_resumed_loader_gives_the_batches_of_an_uninterrupted_one(data_dir):
    task = _task(data_dir)
    straight = list(islice(_loader(task, 0), 7))
    resumed = list(islice(_loader(task, 4), 3))
    for a, b in zip(straight[4:], resumed):
        assert torch.equal(a["tokens"], b["tokens"])


@pytest.mark.parametrize("world, accumulate", [(2, 1), (4, 1), (2, 2), (1, 4)])
def test_every_world_size_and_accumulation_trains_the_same_windows_per_step(data_dir, world, accumulate):
    task = _task(data_dir)
    single = list(islice(_loader(task, 3), 2))  # steps 3 and 4 in one process
    parts = accumulate
    for k, reference in enumerate(single):
        pieces = []
        for part in range(parts):
            for rank in range(world):
                batches = list(islice(_loader(task, 3, world, rank, accumulate), (k + 1) * parts))
                pieces.append(batches[k * parts + part]["tokens"])
        assert torch.equal(torch.cat(pieces), reference["tokens"])  # the step's windows, split, in order


def test_batches_are_next_token_windows_with_their_sources(data_dir):
    task = _task(data_dir)
    batch = next(_loader(task, 0))
    data = task.train
    first = int(windows_of_step(task.num_train_windows, 1, 0, 8)[0])
    window = data.read(first * 16, first * 16 + 17)
    assert torch.equal(batch["tokens"][0], torch.from_numpy(window[:-1]))
    assert torch.equal(batch["targets"][0], torch.from_numpy(window[1:]))
    assert torch.equal(batch["token_sources"][0], torch.from_numpy(data.sources(first * 16 + 1, first * 16 + 17)))
    with pytest.raises(DataError, match="does not split into 3 processes"):
        _loader(task, 0, world=3)


def test_validation_and_test_score_fixed_disjoint_windows_at_every_context(data_dir):
    task = _task(data_dir, eval_context_lengths=[32, 64])
    val, test = list(task.val_dataloader()), list(task.test_dataloader())
    for split in (val, test):
        tokens_by_context = {}
        for b in split:
            length = int(b["lengths"][0])
            tokens_by_context[length] = tokens_by_context.get(length, 0) + b["targets"].numel()
        assert tokens_by_context == {16: 128, 32: 128, 64: 128}  # the same budget at every context
    v = {tuple(r) for b in val for r in b["tokens"].tolist() if len(r) == 16}
    t = {tuple(r) for b in test for r in b["tokens"].tolist() if len(r) == 16}
    assert not v & t
    assert list(task.val_dataloader())[0]["tokens"].tolist() == val[0]["tokens"].tolist()  # fixed


@pytest.mark.parametrize("world", [2, 3])
def test_processes_score_disjoint_shares_of_the_one_process_evaluation_set(data_dir, world):
    def windows(task):
        return sorted(tuple(r) for b in task.val_dataloader() for r in b["tokens"].tolist())

    single = windows(_task(data_dir, eval_context_lengths=[32]))
    shares = []
    for rank in range(world):
        task = _task(data_dir, eval_context_lengths=[32])
        task.trainer = SimpleNamespace(world_size=world, global_rank=rank)
        shares.append(windows(task))
    assert all(shares) and sorted(w for share in shares for w in share) == single
    task = _task(data_dir, eval_context_lengths=[128])  # 128 tokens: one window of 128 for 3 processes
    task.trainer = SimpleNamespace(world_size=3, global_rank=0)
    with pytest.raises(DataError, match="fewer than the 3 processes: raise task.eval_tokens"):
        task.val_dataloader()


def test_contexts_beyond_learned_positions_are_not_evaluated(data_dir):
    import xlstm

    task = _task(data_dir, eval_context_lengths=[32])
    config = xlstm.MODELS["gpt3"].backbone.config_class(name="gpt3", embedding_dim=16, num_blocks=1, num_heads=1,
                                                        vocab_size=257, context_length=16)
    task.network(xlstm.build_backbone(config))
    assert {int(b["lengths"][0]) for b in task.val_dataloader()} == {16}


def test_perplexity_is_exp_of_the_token_weighted_mean_nll_per_context_source_and_position():
    metric = LMMetrics([4, 8], ["web", "books"])
    # batch 1: two windows of 4 at the training context; batch 2: one window of 8
    nll1 = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5], dtype=torch.float64)
    b1 = {"targets": torch.zeros(2, 4, dtype=torch.long), "lengths": torch.tensor([4, 4]),
          "token_sources": torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])}
    s1 = Scored(torch.zeros(8, 3), torch.zeros(8, dtype=torch.long), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), nll1)
    nll2 = torch.full((8,), 2.0, dtype=torch.float64)
    b2 = {"targets": torch.zeros(1, 8, dtype=torch.long), "lengths": torch.tensor([8]),
          "token_sources": torch.zeros(1, 8, dtype=torch.long)}
    s2 = Scored(torch.zeros(8, 3), torch.zeros(8, dtype=torch.long), torch.zeros(8, dtype=torch.long), nll2)
    metric.update(s1, b1)
    metric.update(s2, b2)
    out = metric.compute()
    assert out["ppl"] == out["ppl@4"] == pytest.approx(math.exp(12.0 / 8))
    assert out["ppl@8"] == pytest.approx(math.exp(2.0))
    assert out["ppl/web"] == pytest.approx(math.exp(3.0 / 2))  # web: 1 + 2 over two tokens
    assert out["ppl/books"] == pytest.approx(math.exp(9.0 / 6))  # books: 3 + 4 + 4 x 0.5
    # positions 1 | 2-3 | 4-7 (1-based): at context 4, (1 + .5) / 2, (2 + 3 + .5 + .5) / 4, (4 + .5) / 2
    assert out["nll@4/pos1"] == pytest.approx(0.75) and out["nll@4/pos2"] == pytest.approx(1.5)
    assert out["nll@4/pos4"] == pytest.approx(2.25) and out["nll@8/pos4"] == pytest.approx(2.0)


def test_data_prepared_with_another_tokenizer_is_refused_in_one_line(data_dir):
    run = {"task": {**vars(LMConfig(tokenizer="gpt2"))}, "paths": {"data_dir": str(data_dir)}}
    with pytest.raises(ValueError, match="prepared with tokenizer 'bytes'.*the run asks for 'gpt2'"):
        LanguageModellingTask.protocol(run)
    ok = LanguageModellingTask.protocol({"task": {**vars(LMConfig(tokenizer="bytes", context_length=16))},
                                         "paths": {"data_dir": str(data_dir)}})
    assert ok == {"model.vocab_size": 320, "model.context_length": 16}  # 257 bytes + EOT, rounded up to 64s
    assert padded_vocab(50257, 64) == 50304 and padded_vocab(4096, 64) == 4096  # GPT-2 -> the paper's 50304
    with pytest.raises(ValueError, match="no prepared data at"):
        LanguageModellingTask.protocol({"task": {**vars(LMConfig(tokenizer="bytes"))},
                                        "paths": {"data_dir": str(data_dir / "none")}})
