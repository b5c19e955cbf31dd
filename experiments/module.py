"""The one LightningModule: a task's network (a head around a backbone, ``tasks.heads``), cross-entropy on whatever
the head scores, the task's metrics, and the paper's optimizer. It does not know which kind of task it trains."""
from __future__ import annotations

import math
from typing import Any, Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from tasks import Scored
from xlstm.components import LayerNorm, MultiHeadNorm

from .schema import OptimConfig


NO_DECAY_MODULES = (nn.Embedding, nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, LayerNorm, MultiHeadNorm)


class NonFiniteLossError(RuntimeError):
    """Raised when the loss or a gradient is NaN/Inf; the run stops and its last good checkpoint stays."""


def decays(module: nn.Module, name: str) -> bool:
    """The official xLSTM rule, by what a parameter is: weight decay on weight matrices and kernels (an attribute
    named ``weight...``: linear, block-diagonal, convolution, gate projections, the LM head, ``nn.LSTM``'s
    ``weight_ih_l0``), never on norm weights, embeddings, biases, the sLSTM recurrent matrix ``R`` and bias ``b``, the
    mLSTM learnable skip, or the baselines' other vectors (Mamba's ``A_log`` and ``D``, RWKV's ``time_*``)."""
    return name.startswith("weight") and not isinstance(module, NO_DECAY_MODULES)


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups by ``decays``; a parameter tied to an embedding (a tied LM head) is never decayed."""
    embeddings = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters(recurse=False)}
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            (decay if decays(module, name) and id(p) not in embeddings else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(optim: OptimConfig, max_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up from 0, cosine down to the floor at the decay horizon, then the floor. With
    ``cosine_restarts`` the span after warm-up is cut into ``restarts`` equal cycles, each a cosine from the peak down
    to the floor (SGDR-style warm restarts without warm-up in between)."""
    horizon = optim.decay_steps or max_steps
    warmup = optim.warmup_steps if optim.warmup_steps is not None else int(optim.warmup_fraction * horizon)
    floor = optim.min_lr / optim.lr if optim.min_lr is not None else optim.min_lr_ratio
    cycles = optim.restarts if optim.schedule == "cosine_restarts" else 1

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if optim.schedule == "constant":
            return 1.0
        if step >= horizon:
            return floor
        span = max(1, horizon - warmup) / cycles
        progress = ((step - warmup) % span) / span
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return multiplier


def diagnostics(network: nn.Module) -> dict[str, float]:
    """What layers track while training (``module.diagnostics() -> {name: value}``, e.g. the mLSTM input gate's
    largest pre-activation), the maximum over layers; reported with each evaluation."""
    out: dict[str, float] = {}
    for module in network.modules():
        if module is not network and callable(getattr(module, "diagnostics", None)):
            for name, value in module.diagnostics().items():
                out[name] = max(out.get(name, float("-inf")), value)
    return {k: v for k, v in out.items() if math.isfinite(v)}


class SequenceModule(L.LightningModule):
    """Trains ``network.score(batch)`` (logits and targets of the scored items) with cross-entropy."""

    def __init__(self, network: nn.Module, metrics: Callable[[], Any], optim: OptimConfig, max_steps: int):
        super().__init__()
        self.network = network
        self.optim_config, self.max_steps = optim, max_steps
        self.val_metrics, self.test_metrics = metrics(), metrics()
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()  # item-weighted mean over the split
        self.final_metrics: dict[str, dict[str, float]] = {}  # split -> metrics of its latest evaluation
        self.val_step = -1  # global step of the latest validation

    def forward(self, batch: dict) -> Scored:
        return self.network.score(batch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        scored = self(batch)
        loss = F.cross_entropy(scored.logits.float(), scored.targets)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"loss is {loss.item()} at step {self.global_step}")
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if grads and not torch.isfinite(torch.stack([g.float().norm() for g in grads]).sum()):
            raise NonFiniteLossError(f"a gradient is not finite at step {self.global_step}")

    def _eval_step(self, batch: dict, split: str) -> None:
        scored = self(batch)
        scored.nll = F.cross_entropy(scored.logits.float(), scored.targets, reduction="none")  # (N,)
        getattr(self, f"{split}_loss").update(scored.nll.mean(), weight=len(scored.nll))
        getattr(self, f"{split}_metrics").update(scored, batch)

    def _eval_end(self, split: str) -> None:
        metrics, loss = getattr(self, f"{split}_metrics"), getattr(self, f"{split}_loss")
        values = {k: float(v) for k, v in metrics.compute().items()}
        values["loss"] = float(loss.compute())
        values.update(diagnostics(self.network))
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
        groups = weight_decay_groups(self.network, o.weight_decay)
        optimizer = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), eps=o.eps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(o, self.max_steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
