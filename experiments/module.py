"""The one LightningModule: task encoder -> backbone -> task decoder, masked cross-entropy, the paper's optimizer."""
from __future__ import annotations

import math
from typing import Any, Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from tasks import IGNORE

from .schema import OptimConfig


class NonFiniteLossError(RuntimeError):
    """Raised when the loss or a gradient is NaN/Inf; the run stops and its last good checkpoint stays."""


def no_decay_groups(modules: list[nn.Module], weight_decay: float) -> list[dict]:
    """AdamW parameter groups: decay weight matrices (ndim >= 2) except embeddings; no decay for biases, norm
    weights, gate/skip vectors and every embedding (the paper excludes the token embedding from weight decay)."""
    embeddings = {id(p) for m in modules for sub in m.modules() if isinstance(sub, nn.Embedding)
                  for p in sub.parameters(recurse=False)}
    decay, no_decay, seen = [], [], set()
    for m in modules:
        for p in m.parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))  # tied weights appear once
            (decay if p.ndim >= 2 and id(p) not in embeddings else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(optim: OptimConfig, max_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up from 0, cosine down to the floor at the decay horizon, then the floor."""
    horizon = optim.decay_steps or max_steps
    warmup = optim.warmup_steps if optim.warmup_steps is not None else int(optim.warmup_fraction * horizon)
    floor = optim.min_lr / optim.lr if optim.min_lr is not None else optim.min_lr_ratio

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if optim.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, horizon - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier


class SequenceModule(L.LightningModule):
    """Trains ``decoder(backbone(encoder(tokens)))`` with cross-entropy on the scored positions of ``targets``."""

    def __init__(self, encoder: nn.Module, backbone: nn.Module, decoder: nn.Module,
                 metrics: Callable[[], Any], optim: OptimConfig, max_steps: int):
        super().__init__()
        self.encoder, self.backbone, self.decoder = encoder, backbone, decoder
        self.optim_config, self.max_steps = optim, max_steps
        self.val_metrics, self.test_metrics = metrics(), metrics()
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()  # token-weighted mean over the split
        self.final_metrics: dict[str, dict[str, float]] = {}  # split -> metrics of its latest evaluation
        self.val_step = -1  # global step of the latest validation

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits at every position, (B, S, V)."""
        return self.decoder(self.backbone(self.encoder(tokens)))

    def scored(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits (N, V), targets (N,), mask (B, S)) at the scored positions only: the decoder runs where it is
        read (a formal task scores one or a few positions per sample, MQAR K of T)."""
        mask = batch["targets"] != IGNORE
        hidden = self.backbone(self.encoder(batch["tokens"]))
        return self.decoder(hidden[mask]), batch["targets"][mask], mask

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        logits, targets, _ = self.scored(batch)
        loss = F.cross_entropy(logits.float(), targets)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss is {loss.item()} at step {self.global_step}")
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.float().norm() for g in grads]).sum()):
            raise NonFiniteLossError(f"a gradient is not finite at step {self.global_step}")

    def _eval_step(self, batch: dict, split: str) -> None:
        logits, targets, mask = self.scored(batch)
        loss = F.cross_entropy(logits.float(), targets)
        getattr(self, f"{split}_loss").update(loss, weight=len(targets))
        predictions = torch.full_like(batch["targets"], IGNORE)  # (B, S): the argmax where scored
        predictions[mask] = logits.argmax(-1)
        getattr(self, f"{split}_metrics").update(predictions, batch)

    def _eval_end(self, split: str) -> None:
        metrics, loss = getattr(self, f"{split}_metrics"), getattr(self, f"{split}_loss")
        values = {k: float(v) for k, v in metrics.compute().items()}
        values["loss"] = float(loss.compute())
        metrics.reset()
        loss.reset()
        self.final_metrics[split] = values
        if split == "val":
            self.val_step = self.global_step
        headline = {f"{split}/{k}": v for k, v in values.items() if "@" not in k}
        self.log_dict(headline, sync_dist=True, prog_bar=split == "val")  # already synced; same on every rank
        if self.logger is not None:
            self.logger.log_metrics({f"{split}/{k}": v for k, v in values.items() if "@" in k}, self.global_step)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def configure_optimizers(self):
        o = self.optim_config
        groups = no_decay_groups([self.encoder, self.backbone, self.decoder], o.weight_decay)
        optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(o, self.max_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
