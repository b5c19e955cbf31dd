"""Typed Hydra schemas. ``register()`` puts them in Hydra's ConfigStore before composition.

The root config and the trainer/optim/logger/scale/paths groups are typed by the dataclasses below; the model and
task groups are typed per registry entry by the model's and task's own config dataclass (``schema/model/<option>``,
``schema/task/<option>``), which each YAML under configs/model and configs/task extends. A misspelled key or a
value of the wrong type therefore fails at compose time, naming the key.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

import tasks
import xlstm


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"  # cpu | gpu | auto
    devices: Any = 1  # int or "auto"
    strategy: str = "auto"  # auto | ddp | fsdp
    num_nodes: int = 1
    precision: str = "32-true"  # 32-true | bf16-mixed | bf16-true
    max_steps: int = 1000
    val_check_interval: int = 250  # optimizer steps between validations
    limit_val_batches: Optional[int] = None  # None = the whole validation set
    gradient_clip_val: Optional[float] = None
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 50
    checkpoint_every_n_steps: int = 250
    deterministic: bool = False
    detect_anomaly: bool = False
    enable_progress_bar: bool = False


@dataclass
class OptimConfig:
    """AdamW with linear warm-up and cosine decay (the paper's recipe; values per experiment)."""

    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    warmup_steps: Optional[int] = None  # absolute; when None, warmup_fraction of the decay horizon
    warmup_fraction: float = 0.1
    decay_steps: Optional[int] = None  # cosine horizon; None = trainer.max_steps
    min_lr: Optional[float] = None  # absolute floor; when None, min_lr_ratio * lr
    min_lr_ratio: float = 0.1
    schedule: str = "cosine"  # cosine | constant


@dataclass
class LoggerConfig:
    name: str = "csv"  # csv | wandb
    project: str = "xlstm-suite"
    mode: str = "offline"  # wandb mode: online | offline | disabled


@dataclass
class ScaleConfig:
    name: str = "smoke"  # smoke | small | paper


@dataclass
class PathsConfig:
    results_dir: str = "results"
    checkpoint_dir: str = "checkpoints"
    output_dir: Optional[str] = None  # logs; None = Hydra's output folder of the job


@dataclass
class TrainConfig:
    model: Any = MISSING
    task: Any = MISSING
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    experiment: Optional[str] = None  # set by configs/experiment/<name>.yaml; None = an ad-hoc run
    seed: int = 0
    resume: bool = False


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for name, cls in xlstm.MODELS.items():
        cs.store(group="schema/model", name=xlstm.option_name(name), node=cls.config_class(name=name))
    for name, cls in tasks.TASKS.items():
        cs.store(group="schema/task", name=name, node=cls.config_class(name=name))
