"""Typed Hydra schemas. ``register()`` puts them in Hydra's ConfigStore before composition.

The root config and the trainer/optim/logger/scale/paths groups are typed by the dataclasses below; the model and
task groups are typed per registry entry by the model's and task's own config dataclass (``schema/model/<option>``,
``schema/task/<option>``), which each YAML under configs/model and configs/task extends. A misspelled key or a
value of the wrong type therefore fails at compose time, naming the key; a key added with ``+`` that the schema
does not have fails in the suite's own check (``experiments.config.unknown_keys``). Each dataclass's ``check()``
refuses the values its types allow but no run can use.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from xlstm.config import require

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
    enable_progress_bar: Optional[bool] = None  # None: a bar on a terminal, a log line every progress_interval_s otherwise
    progress_interval_s: float = 30.0
    slurm_requeue: bool = True  # under SLURM, a preempted (SIGTERM/SIGUSR1) run requeues its job, which resumes
    activation_checkpointing: bool = False  # recompute each residual block in the backward pass (memory for time)
    compile: bool = False  # torch.compile each residual block (the paper compiles every model but the Transformers)
    fsdp_sharding: str = "FULL_SHARD"  # with strategy=fsdp: FULL_SHARD | SHARD_GRAD_OP (the paper's) | NO_SHARD

    def check(self) -> None:
        for key in ("max_steps", "val_check_interval", "checkpoint_every_n_steps", "log_every_n_steps",
                    "accumulate_grad_batches", "num_nodes"):
            require(getattr(self, key) >= 1, key, ">= 1", getattr(self, key))
        require(self.limit_val_batches is None or self.limit_val_batches >= 1, "limit_val_batches", "null or >= 1",
                self.limit_val_batches)
        require(self.gradient_clip_val is None or self.gradient_clip_val > 0, "gradient_clip_val", "null or > 0",
                self.gradient_clip_val)
        require(self.devices == "auto" or (isinstance(self.devices, int) and self.devices >= 1), "devices",
                '"auto" or >= 1', self.devices)
        require(self.precision in PRECISIONS, "precision", " | ".join(PRECISIONS), self.precision)
        require(self.progress_interval_s > 0, "progress_interval_s", "> 0", self.progress_interval_s)
        require(self.strategy in ("auto", "ddp", "fsdp"), "strategy", "auto | ddp | fsdp", self.strategy)
        require(not (self.strategy == "fsdp" and self.accelerator == "cpu"), "strategy",
                "ddp on a CPU (Lightning's FSDP runs on GPUs only; use trainer=ddp for CPU processes)", self.strategy)
        require(self.fsdp_sharding in FSDP_SHARDING, "fsdp_sharding", " | ".join(FSDP_SHARDING), self.fsdp_sharding)


FSDP_SHARDING = ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD")
PRECISIONS = ("32-true", "32", "bf16-mixed", "bf16-true", "16-mixed", "16-true", "64-true")


SCHEDULES = ("cosine", "cosine_restarts", "constant")


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
    schedule: str = "cosine"  # cosine | cosine_restarts (the decay span cut into `restarts` cosine cycles) | constant
    restarts: int = 3  # cycles of cosine_restarts (the paper's LRA search: R = 3)

    def check(self) -> None:
        require(self.lr > 0, "lr", "> 0", self.lr)
        require(self.weight_decay >= 0, "weight_decay", ">= 0", self.weight_decay)
        require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", "two values in [0, 1)",
                list(self.betas))
        require(self.eps > 0, "eps", "> 0", self.eps)
        require(self.warmup_steps is None or self.warmup_steps >= 0, "warmup_steps", "null or >= 0", self.warmup_steps)
        require(0 <= self.warmup_fraction <= 1, "warmup_fraction", "in [0, 1]", self.warmup_fraction)
        require(self.decay_steps is None or self.decay_steps >= 1, "decay_steps", "null or >= 1", self.decay_steps)
        require(self.min_lr is None or 0 <= self.min_lr <= self.lr, "min_lr", "null or in [0, optim.lr]", self.min_lr)
        require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "in [0, 1]", self.min_lr_ratio)
        require(self.schedule in SCHEDULES, "schedule", " | ".join(SCHEDULES), self.schedule)
        require(self.restarts >= 1, "restarts", ">= 1", self.restarts)


@dataclass
class LoggerConfig:
    name: str = "csv"  # csv | wandb
    project: str = "xlstm-suite"
    mode: str = "offline"  # wandb mode: online | offline | disabled

    def check(self) -> None:
        require(self.name in ("csv", "wandb"), "name", "csv or wandb", self.name)
        require(self.mode in ("online", "offline", "disabled"), "mode", "online, offline or disabled", self.mode)


@dataclass
class ScaleConfig:
    name: str = "smoke"  # smoke | small | paper
    allow_cpu: bool = False  # the paper scale refuses to start on a CPU unless this is set

    def check(self) -> None:
        require(self.name in ("smoke", "small", "paper"), "name", "smoke, small or paper", self.name)


@dataclass
class PathsConfig:
    results_dir: str = "results"
    checkpoint_dir: str = "checkpoints"
    data_dir: str = "data"  # where tasks that read files (prepared token shards, LRA files) look for them
    output_dir: Optional[str] = None  # logs; None = Hydra's output folder of the job


@dataclass
class SpeedConfig:
    """What a speed job (``job: speed``, experiments.speed) measures; the lists are the x axes of its figures."""

    measure: str = "generation"  # generation | decoding | training
    prefill: int = 16  # generation: prompt tokens before decoding (Figure 9 left: 16)
    lengths: list[int] = field(default_factory=lambda: [64, 256, 1024])  # generation: generated lengths timed
    batch_sizes: list[int] = field(default_factory=lambda: [1, 4, 16])  # decoding
    decode_prefill: int = 16  # decoding: prompt tokens of every sequence of the batch
    decode_tokens: int = 32  # decoding: tokens generated per batch size
    contexts: list[int] = field(default_factory=lambda: [512, 1024, 2048])  # training
    train_tokens: int = 8192  # training: tokens per step (batch = train_tokens // context, at least 1)
    train_steps: int = 3  # training: timed steps per context (median), after one warm-up step
    reps: int = 3  # generation and decoding: repetitions per point (median)
    precision: str = "fp32"  # fp32 | bf16

    def check(self) -> None:
        from .speed import MEASURES

        require(self.measure in MEASURES, "measure", " | ".join(MEASURES), self.measure)
        require(self.precision in ("fp32", "bf16"), "precision", "fp32 | bf16", self.precision)
        for key in ("prefill", "decode_prefill", "decode_tokens", "train_tokens", "train_steps", "reps"):
            require(getattr(self, key) >= 1, key, ">= 1", getattr(self, key))
        for key in ("lengths", "batch_sizes", "contexts"):
            values = list(getattr(self, key))
            require(bool(values) and all(v >= 1 for v in values), key, "a non-empty list of values >= 1", values)


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
    # settings an experiment needs for some models only: {glob over model option names: {model key: value}}, e.g.
    # {"xlstm_*": {"slstm_conv_kernel": 0}}; a model key set on the command line keeps its command-line value
    model_settings: dict[str, Any] = field(default_factory=dict)
    # a paper size (125M | 350M | 760M | 1.3B | 2.7B): the model's dims from xlstm.sizes, then the matching
    # size_settings {"<model glob>@<size>": {dotted key: value}} (per-size learning rates, batch, steps)
    model_size: Optional[str] = None
    variant: Optional[str] = None  # the configs/variant/<experiment>/<name>.yaml a point runs (an ablation's row)
    size_settings: dict[str, Any] = field(default_factory=dict)
    # settings an experiment needs for some tasks only (a study over language modelling and MQAR):
    # {glob over task names: {dotted key: value}}, applied before model_settings and model_size
    task_settings: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    resume: bool = False
    job: str = "train"  # train | speed (experiments.speed: measure the model, no training, no task data)
    speed: SpeedConfig = field(default_factory=SpeedConfig)


def heads_for_width(width: int, head_dim: int = 16) -> int:
    """``${heads_for_width:${model.embedding_dim},16}``: a head count that grows with the model width, one head per
    ``head_dim`` channels and at least one (the MQAR grids' reading of "the number of heads is adjusted to the model
    dimension")."""
    return max(1, int(width) // int(head_dim))


def register() -> None:
    """Put the schemas in Hydra's ConfigStore and the resolvers the configs use: ``${pid:}`` (in the default output
    folders: two processes started in the same second never share one) and ``${heads_for_width:...}``."""
    OmegaConf.register_new_resolver("pid", os.getpid, replace=True)
    OmegaConf.register_new_resolver("heads_for_width", heads_for_width, replace=True)
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for name, spec in xlstm.MODELS.items():
        node = spec.backbone.config_class(name=name, **copy.deepcopy(spec.defaults))
        cs.store(group="schema/model", name=name, node=node)
    for name, cls in tasks.TASKS.items():
        cs.store(group="schema/task", name=name, node=cls.config_class(name=name))
