"""``python -m experiments.train [experiment=NAME] [scale=...] [overrides]``: the suite's one Hydra entry point.

One job = one (model, task, optim, seed) point: build the task and the model, fit with checkpoints, evaluate on
validation and test, write the run's immutable record under results/. Errors a user can cause end in one line
that says what to do; finished records and the last good checkpoint are never touched.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from . import results
from .schema import register

log = logging.getLogger("experiments.train")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
CHECKED_GROUPS = ("experiment", "model", "task", "scale", "trainer", "optim", "logger")
FAILURES: list[str] = []  # one line per failed job of this process


class SuiteError(Exception):
    """An error the user can fix; its message is the one line we print."""


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def check_names(argv: list[str]) -> None:
    """Unknown group options (``model=foo``) fail before Hydra starts, in one line that lists the valid names."""
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if not sep or key not in CHECKED_GROUPS or value in ("null", ""):
            continue
        valid = options(key)
        for choice in value.split(","):
            if choice not in valid:
                raise SuiteError(f"unknown {key} {choice!r}; valid {key} names: {', '.join(valid)}")


def precompose(argv: list[str]) -> None:
    """Compose the config once before Hydra runs (the first value of each sweep), so a misspelled key or a bad
    value ends in one line naming the key instead of Hydra's multi-line report."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in argv if not a.startswith("-") and not a.lstrip("+~").startswith("hydra")]
    try:
        overrides = []
        for o in OverridesParser.create().parse_overrides(args):
            if o.is_sweep_override():
                prefix = {"ADD": "+", "FORCE_ADD": "++"}.get(o.type.name, "")
                overrides.append(f"{prefix}{o.key_or_group}={next(iter(o.sweep_string_iterator()))}")
            else:
                overrides.append(o.input_line)
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            compose("train", overrides=overrides)
    except Exception as err:  # Hydra and OmegaConf raise several types; all are config errors here
        noise = ("To append", "reference_type", "object_type")
        lines = []
        while err is not None:  # Hydra wraps the OmegaConf error that names the key and the reason
            lines += [ln.strip() for ln in str(err).splitlines() if ln.strip() and not ln.strip().startswith(noise)]
            err = err.__cause__
        raise SuiteError("config: " + "; ".join(lines)) from None


def validate(cfg: DictConfig) -> None:
    """Value checks the schema's types cannot express."""
    import torch

    if cfg.optim.lr <= 0:
        raise SuiteError(f"optim.lr must be > 0, got {cfg.optim.lr}")
    if cfg.optim.schedule not in ("cosine", "constant"):
        raise SuiteError(f"optim.schedule must be cosine or constant, got {cfg.optim.schedule!r}")
    if cfg.logger.name not in ("csv", "wandb"):
        raise SuiteError(f"logger.name must be csv or wandb, got {cfg.logger.name!r}")
    if cfg.scale.name not in ("smoke", "small", "paper"):
        raise SuiteError(f"scale.name must be smoke, small or paper, got {cfg.scale.name!r}")
    if cfg.trainer.max_steps <= 0:
        raise SuiteError(f"trainer.max_steps must be > 0, got {cfg.trainer.max_steps}")
    if cfg.trainer.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise SuiteError("trainer.accelerator=gpu but no CUDA device is visible; use trainer=cpu")


def make_logger(cfg: DictConfig, output_dir: Path, rid: str):
    if cfg.logger.name == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        return WandbLogger(project=cfg.logger.project, name=rid, save_dir=str(output_dir), mode=cfg.logger.mode,
                           config=OmegaConf.to_container(cfg, resolve=True))
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(save_dir=str(output_dir), name="csv", version="")


def output_dir(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    if cfg.paths.output_dir:
        return Path(cfg.paths.output_dir)
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path("outputs") / "compose"


def ddp_child_argv(argv: list[str]) -> list[str]:
    """The command line Lightning's DDP launcher repeats for the other ranks: this job's own overrides in RUN
    mode, so that a rank started from one point of a multirun trains that point and does not start the sweep."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return argv
    return [argv[0], *HydraConfig.get().overrides.task, "hydra.mode=RUN"]


def run(cfg: DictConfig) -> dict:
    """Train and evaluate one point; returns its record (the existing one when the point already ran)."""
    import lightning as L
    import torch

    from tasks import InfeasibleSetting, build_task
    from xlstm import build_backbone

    from .callbacks import RNGStateCheckpoint
    from .module import NonFiniteLossError, SequenceModule

    validate(cfg)
    rid = results.run_id(cfg)
    path = results.record_path(cfg.paths.results_dir, cfg.experiment, rid)
    if path.exists():
        log.info(f"skip {rid}: its record exists ({path})")
        return results.load_record(path)

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    try:
        task = build_task(OmegaConf.to_object(cfg.task))
        backbone = build_backbone(OmegaConf.to_object(cfg.model))
    except InfeasibleSetting as err:  # a grid point that cannot exist: record it so reruns and tables know
        results.write_record(path, results.make_record(cfg, rid, status="infeasible", metrics={}, params=0, steps=0,
                                                       max_steps=0, lr=cfg.optim.lr, wall_time_s=0.0, error=str(err)))
        log.warning(f"{rid} is infeasible and was recorded as such: {err}")
        return results.load_record(path)
    except ValueError as err:  # a value the schema's types cannot rule out (bad head count, bad gate init, ...)
        raise SuiteError(f"{rid}: {err}") from None
    encoder, decoder = task.encoder(backbone.dim), task.decoder(backbone.dim)
    if backbone.config.tie_embeddings:
        try:
            task.tie_embeddings(encoder, decoder)
        except ValueError as err:
            raise SuiteError(str(err)) from None
    max_steps = task.max_steps(cfg.trainer.max_steps)
    scale = task.lr_scale()  # the whole schedule scales: peak and floor
    optim = OmegaConf.merge(cfg.optim, {"lr": cfg.optim.lr * scale,
                                        "min_lr": cfg.optim.min_lr * scale if cfg.optim.min_lr is not None else None})
    module = SequenceModule(encoder, backbone, decoder, task.metrics, optim, max_steps)
    params = sum(p.numel() for p in module.parameters())

    ckpt_dir = Path(cfg.paths.checkpoint_dir) / (cfg.experiment or "adhoc") / rid
    last = ckpt_dir / "last.ckpt"
    if last.exists() and not cfg.resume:
        raise SuiteError(f"{rid} has a checkpoint at {last}; pass resume=true to continue it, "
                         f"or delete {ckpt_dir} to start over")
    t = cfg.trainer
    trainer = L.Trainer(
        accelerator=t.accelerator, devices=t.devices, strategy=t.strategy, num_nodes=t.num_nodes,
        precision=t.precision, max_steps=max_steps, val_check_interval=min(t.val_check_interval, max_steps),
        check_val_every_n_epoch=None, limit_val_batches=t.limit_val_batches, num_sanity_val_steps=0,
        gradient_clip_val=t.gradient_clip_val, accumulate_grad_batches=t.accumulate_grad_batches,
        log_every_n_steps=t.log_every_n_steps, deterministic=t.deterministic, detect_anomaly=t.detect_anomaly,
        use_distributed_sampler=False,  # tasks shard their own data across ranks
        enable_progress_bar=t.enable_progress_bar, enable_model_summary=False,
        logger=make_logger(cfg, output_dir(cfg), rid), default_root_dir=str(output_dir(cfg)),
        callbacks=[
            L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_top_k=0, save_last=True,
                                                every_n_train_steps=t.checkpoint_every_n_steps),
            RNGStateCheckpoint(),
        ],
    )
    resume_from = str(last) if cfg.resume and last.exists() else None
    log.info(f"run {rid}: {params / 1e6:.3f}M params" + (f", resuming from {last}" if resume_from else ""))
    start = time.time()
    argv = sys.argv
    try:
        sys.argv = ddp_child_argv(argv)
        trainer.fit(module, datamodule=task, ckpt_path=resume_from)
    except NonFiniteLossError as err:
        record = results.make_record(cfg, rid, status="diverged", metrics={}, params=params,
                                     steps=trainer.global_step, max_steps=max_steps, lr=optim.lr,
                                     wall_time_s=time.time() - start, error=str(err))
        if trainer.is_global_zero:
            results.write_record(path, record)
        kept = f"last good checkpoint kept at {last}" if last.exists() else "no checkpoint was written yet"
        raise SuiteError(f"{rid} diverged: {err}; {kept}; lower optim.lr or set trainer.gradient_clip_val") from err
    finally:
        sys.argv = argv
    if module.val_step != trainer.global_step:  # evaluate the final weights
        trainer.validate(module, datamodule=task, verbose=False)
    trainer.test(module, datamodule=task, verbose=False)
    metrics = {split: module.final_metrics[split] for split in ("val", "test")}
    record = results.make_record(cfg, rid, status="finished", metrics=metrics, params=params,
                                 steps=trainer.global_step, max_steps=max_steps, lr=optim.lr,
                                 wall_time_s=time.time() - start)
    if trainer.is_global_zero:
        results.write_record(path, record)
        headline = {s: {k: round(v, 4) for k, v in m.items() if "@" not in k} for s, m in metrics.items()}
        log.info(f"finished {rid}: {headline}")
    return record


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def hydra_main(cfg: DictConfig) -> Any:
    try:
        return run(cfg)
    except SuiteError as err:
        FAILURES.append(str(err))
        log.error(str(err))
        return None


def quiet_lightning() -> None:
    """Keep the console to the suite's own lines: Lightning's info banners and a torch-2.13 deprecation notice."""
    import warnings

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def main() -> None:
    quiet_lightning()
    register()
    try:
        check_names(sys.argv[1:])
        precompose(sys.argv[1:])
    except SuiteError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    hydra_main()
    if FAILURES:
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    main()
