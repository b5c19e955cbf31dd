"""The heads of tasks.heads: the token head is the language model of xlstm.build (same class, init and tying),
pooling reads only valid positions, the pair head's features and batching; and the one LightningModule trains a
pooled and a pair classifier end to end without knowing which it trains."""
from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

import xlstm
from experiments.module import SequenceModule
from experiments.schema import OptimConfig
from tasks import IGNORE, Task, TaskConfig
from tasks.heads import PairClassifier, PooledClassifier, TokenClassifier, pool, token_encoder
from tasks.metrics import Accuracy


def _backbone(name: str = "lstm", **kw) -> xlstm.Backbone:
    return xlstm.build_backbone(xlstm.make_config(name, **{"embedding_dim": 16, "num_blocks": 1, **kw}))


def test_token_head_is_the_language_model_of_build_with_the_same_init():
    torch.manual_seed(3)
    ours = TokenClassifier(xlstm.build_backbone(xlstm.make_config("xlstm_1_1", embedding_dim=16, vocab_size=11)))
    torch.manual_seed(3)
    built = xlstm.build("xlstm[1:1]", embedding_dim=16, vocab_size=11)
    assert isinstance(ours, xlstm.LanguageModel) and type(built) is xlstm.LanguageModel
    assert ours.state_dict().keys() == built.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), built.state_dict().values()))
    tied = TokenClassifier(_backbone(vocab_size=11, tie_embeddings=True))
    assert tied.head.weight is tied.embedding.weight


def test_token_head_scores_only_the_scored_positions():
    torch.manual_seed(0)
    head = TokenClassifier(_backbone(vocab_size=7)).eval()
    tokens = torch.randint(0, 7, (3, 6))
    targets = torch.full((3, 6), IGNORE)
    targets[0, 5], targets[2, 1], targets[2, 4] = 1, 2, 3
    scored = head.score({"tokens": tokens, "targets": targets})
    full = head(tokens)  # (B, S, V): the language model's logits everywhere
    assert torch.equal(scored.rows, torch.tensor([0, 2, 2])) and torch.equal(scored.targets, torch.tensor([1, 2, 3]))
    torch.testing.assert_close(scored.logits, full[[0, 2, 2], [5, 1, 4]])


def test_pooling_reads_only_valid_positions():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float).view(2, 4, 1)  # row 0: 0 1 2 3, row 1: 4 5 6 7
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    assert pool(hidden, mask, "mean").flatten().tolist() == [1.0, 5.5]
    assert pool(hidden, mask, "last").flatten().tolist() == [2.0, 7.0]
    assert pool(hidden, None, "last").flatten().tolist() == [3.0, 7.0]
    with pytest.raises(ValueError, match="pooling"):
        pool(hidden, mask, "max")
    with pytest.raises(ValueError, match="no valid position"):
        pool(hidden, torch.zeros(2, 4, dtype=torch.bool), "mean")


@pytest.mark.parametrize("pooling", ["mean", "last"])
def test_pooled_classifier_ignores_padding(pooling):
    torch.manual_seed(0)
    head = PooledClassifier(_backbone(), token_encoder(5, 16), num_classes=3, pooling=pooling).eval()
    tokens = torch.randint(1, 5, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 6:] = False
    padded = tokens.clone()
    padded[0, 6:] = 0  # what sits in the padding must not matter (right padding, causal backbone)
    with torch.no_grad():
        assert torch.allclose(head(tokens, mask), head(padded, mask))
        alone = head(tokens[:1, :6])  # the same sequence, unpadded
        assert torch.allclose(head(tokens, mask)[:1], alone, atol=1e-6)
    scored = head.score({"tokens": tokens, "mask": mask, "targets": torch.tensor([2, 0])})
    assert scored.logits.shape == (2, 3) and torch.equal(scored.rows, torch.arange(2))


def test_pair_classifier_features_and_one_batch_for_both_documents():
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 5.0]])
    assert PairClassifier.combine(a, b).tolist() == [[1.0, 2.0, 3.0, 5.0, 3.0, 10.0, -2.0, -3.0]]
    torch.manual_seed(0)
    head = PairClassifier(_backbone(), token_encoder(5, 16), num_classes=2).eval()
    tokens = torch.randint(1, 5, (3, 2, 7))
    with torch.no_grad():
        pooled = [pool(head.backbone(head.encoder(tokens[:, i])), None, "mean") for i in (0, 1)]
        expected = head.mlp(PairClassifier.combine(*pooled))
        torch.testing.assert_close(head(tokens), expected)
        assert not torch.allclose(head(tokens), head(tokens.flip(1)))  # order matters: a - b


def test_sequence_heads_refuse_tied_embeddings():
    with pytest.raises(ValueError, match="tie_embeddings=false"):
        PooledClassifier(_backbone(tie_embeddings=True), token_encoder(5, 16), 2)


# ---- the module trains any head: two toy classification tasks on the Task contract ------------------------------

@dataclass
class ToyConfig(TaskConfig):
    pair: bool = False


class ToyTask(Task):
    """Sequences of 1s and 2s (padded with 0 to 12): pooled, "are there more 1s than 2s"; pair, "does the first
    document have more 1s than the second"."""

    config_class = ToyConfig

    def _batch(self, seed: int) -> dict:
        g = torch.Generator().manual_seed(seed)
        docs = 2 if self.config.pair else 1
        B = self.config.batch_size
        tokens = torch.randint(1, 3, (B, docs, 12), generator=g)
        lengths = torch.randint(4, 13, (B, docs), generator=g)
        mask = torch.arange(12) < lengths.unsqueeze(-1)
        tokens = tokens * mask
        ones = ((tokens == 1) & mask).sum(-1)
        if self.config.pair:
            targets = (ones[:, 0] > ones[:, 1]).long()
            return {"tokens": tokens, "mask": mask, "targets": targets}
        targets = (2 * ones[:, 0] > lengths[:, 0]).long()
        return {"tokens": tokens[:, 0], "mask": mask[:, 0], "targets": targets}

    def network(self, backbone):
        cls = PairClassifier if self.config.pair else PooledClassifier
        return cls(backbone, token_encoder(3, backbone.dim), num_classes=2)

    def metrics(self):
        return Accuracy()

    def train_dataloader(self):
        return DataLoader([self._batch(i) for i in range(200)], batch_size=None)

    def val_dataloader(self):
        return DataLoader([self._batch(10_000 + i) for i in range(4)], batch_size=None)

    def test_dataloader(self):
        return self.val_dataloader()


@pytest.mark.parametrize("pair", [False, True], ids=["pooled", "pair"])
def test_the_module_trains_pooled_and_pair_classifiers(pair):
    L.seed_everything(0, verbose=False)
    task = ToyTask(ToyConfig(name="toy", batch_size=32, pair=pair))
    module = SequenceModule(task.network(_backbone(embedding_dim=32)), task.metrics,
                            OptimConfig(lr=1e-2, warmup_steps=10), max_steps=150)
    trainer = L.Trainer(max_steps=150, val_check_interval=150, check_val_every_n_epoch=None, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=task)
    trainer.test(module, datamodule=task, verbose=False)
    assert module.final_metrics["test"]["acc"] > 0.85, module.final_metrics  # chance is ~0.5
