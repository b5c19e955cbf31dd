"""``python -m experiments.train [experiment=NAME] [scale=...] [overrides]``: the suite's one Hydra entry point.

One job = one (model, task, optim, seed) point: resolve its config (the experiment's model settings, the task's
protocol), claim it (several processes can share a grid), build the task's network, fit with checkpoints, evaluate
on validation and test, keep the final weights, write the run's immutable record under results/. Errors a user can
cause end in one line that says what to do; finished records and the last good checkpoint are never touched.
"""
from __future__ import annotations

import copy
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from . import results
from .allocator import retain_freed_memory
from .config import (SuiteError, check_command, explicit_keys, grid_summary, refuse_paper_scale_on_cpu, resolve,
                     split_argv)
from .schema import register

log = logging.getLogger("experiments.train")
FAILURES: list[str] = []  # one line per failed job of this process
PREEMPTED_EXIT = 143  # 128 + SIGTERM, what schedulers expect of a terminated job


class Preempted(Exception):
    """SIGTERM or SIGUSR1 (SLURM preemption, ``timeout``): the sweep stops; its message says how to resume."""


def make_logger(cfg: DictConfig, output_dir: Path, rid: str):
    if cfg.logger.name == "wandb":
        from lightning.pytorch.loggers import WandbLogger

        return WandbLogger(project=cfg.logger.project, name=rid, save_dir=str(output_dir), mode=cfg.logger.mode,
                           config=OmegaConf.to_container(cfg, resolve=True))
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(save_dir=str(output_dir), name="csv", version=rid)  # one folder per point, never shared


def output_dir(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    if cfg.paths.output_dir:
        return Path(cfg.paths.output_dir)
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path("outputs") / "compose"


def ddp_child_argv(argv: list[str]) -> list[str]:
    """The command line Lightning's DDP launcher repeats for the other ranks: this job's own overrides in RUN
    mode, so that a rank started from one point of a multirun trains that point and does not start the sweep.
    (Lightning adds the rank's log file name, ``train_ddp_process_<rank>``, in ``hydra.run.dir``.)"""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return argv
    return [argv[0], *HydraConfig.get().overrides.task, "hydra.mode=RUN"]


def slurm_restarted() -> bool:
    """A SLURM job that was requeued (after preemption) starts again with SLURM_RESTART_COUNT >= 1."""
    return int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0


def requeue_slurm_job(cfg: DictConfig) -> None:
    """Put this SLURM job back in the queue; when it starts again it resumes from the checkpoint just saved."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job or not cfg.trainer.slurm_requeue or not results.launched_as_rank_zero():
        return
    if os.environ.get("SLURM_ARRAY_JOB_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
        ok, detail = done.returncode == 0, (done.stderr or done.stdout).strip()
    except (OSError, subprocess.TimeoutExpired) as err:
        ok, detail = False, str(err)
    if ok:
        log.info(f"requeued SLURM job {job}; it resumes from its last checkpoint when it starts again")
    else:
        log.error(f"could not requeue SLURM job {job} ({detail}); resubmit it with resume=true")


def _existing(path: Path, rid: str) -> dict:
    try:
        record = results.load_record(path)
    except ValueError as err:
        raise SuiteError(str(err)) from None
    log.info(f"skip {rid}: its record exists ({path})")
    return record


def run(cfg: DictConfig) -> dict | None:
    """Train and evaluate one point; returns its record (the existing one when the point already ran), or None
    when another process is running it."""
    from hydra.core.hydra_config import HydraConfig

    from .guards import check_writable
    from .locks import PointLock, follow_rank_zero

    cfg = copy.deepcopy(cfg)  # resolved in place below; the caller's config stays as composed
    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    explicit = explicit_keys(list(hydra_cfg.overrides.task)) if hydra_cfg else set()
    choices = dict(hydra_cfg.runtime.choices) if hydra_cfg else None
    changed = resolve(cfg, explicit, choices)
    if changed:
        log.info("task protocol: " + "; ".join(changed))
    rid = results.run_id(cfg)
    path = results.record_path(cfg.paths.results_dir, cfg.experiment, cfg.scale.name, rid)
    if path.exists():
        return _existing(path, rid)
    checkpoints = Path(cfg.paths.checkpoint_dir) / (cfg.experiment or "adhoc") / cfg.scale.name
    if not results.launched_as_rank_zero():  # a DDP rank > 0: rank 0 decides whether this job trains the point
        if os.environ.get("LOCAL_RANK", "0") != "0" and os.environ.get("SLURM_PROCID") is None:
            return _train(cfg, rid, path, checkpoints / rid)  # spawned by rank 0 inside fit: it holds the point
        try:
            mine = follow_rank_zero(path, path.with_suffix(".lock"))
        except TimeoutError as err:
            raise SuiteError(str(err)) from None
        return _train(cfg, rid, path, checkpoints / rid) if mine else None
    check_writable(path.parent, "paths.results_dir")
    if cfg.job == "train":  # a speed job writes no checkpoint
        check_writable(checkpoints, "paths.checkpoint_dir")
    if _device(cfg).type == "cpu":
        retain_freed_memory()  # reuse freed blocks instead of mapping them afresh every step
    lock = PointLock(path.with_suffix(".lock"))
    holder = lock.acquire()
    if holder is not None:
        log.info(f"skip {rid}: {holder.describe()} is running it")
        return None
    try:
        if path.exists():  # finished by another process between the first look and the claim
            return _existing(path, rid)
        if cfg.job == "speed":
            return _speed(cfg, rid, path)
        return _train(cfg, rid, path, checkpoints / rid)
    finally:
        lock.release()


def _device(cfg: DictConfig):
    """The device a point runs on: CUDA when the accelerator allows it and one is present."""
    import torch

    cuda = cfg.trainer.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
    return torch.device("cuda" if cuda else "cpu")


def _speed(cfg: DictConfig, rid: str, path: Path) -> dict:
    """A speed job: build the model (random weights), measure it, write the record (experiments.speed)."""
    import torch

    from tasks.heads import TokenClassifier
    from xlstm import build_backbone

    from .speed import measure

    torch.manual_seed(cfg.seed)
    device = _device(cfg)
    try:
        network = TokenClassifier(build_backbone(OmegaConf.to_object(cfg.model))).to(device)
    except ValueError as err:
        raise SuiteError(f"{rid}: {err}") from None
    if cfg.trainer.compile:
        from xlstm.components import compile_blocks

        compile_blocks(network)
    start = time.time()
    points = measure(cfg, network, device)
    params = sum(p.numel() for p in network.parameters())
    record = results.make_record(cfg, rid, status="finished", metrics={"points": points}, params=params, steps=0,
                                 wall_time_s=time.time() - start)
    results.write_record(path, record)
    log.info(f"{rid}: {len(points)} points, {record['wall_time_s']:.0f} s; record {path}")
    return record


def _strategy(t: DictConfig, network) -> Any:
    """The Lightning strategy, and the model-side switches: activation checkpointing and ``torch.compile`` per
    residual block. FSDP wraps (and, with activation checkpointing, recomputes) one residual block per unit."""
    from xlstm.components import compile_blocks, residual_blocks, set_activation_checkpointing

    if t.strategy != "fsdp":
        set_activation_checkpointing(network, t.activation_checkpointing)
        if t.compile:
            compile_blocks(network)
        return t.strategy
    from lightning.pytorch.strategies import FSDPStrategy

    block_types = {type(b) for b in residual_blocks(network)}
    if t.compile:
        compile_blocks(network)
    return FSDPStrategy(sharding_strategy=t.fsdp_sharding, auto_wrap_policy=block_types,
                        activation_checkpointing_policy=block_types if t.activation_checkpointing else None,
                        use_orig_params=True)


def _train(cfg: DictConfig, rid: str, path: Path, ckpt_dir: Path) -> dict:
    import lightning as L
    import torch
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from tasks import InfeasibleSetting, build_task
    from xlstm import build_backbone

    from .callbacks import PreemptionCheckpoint, ProgressLog, RNGStateCheckpoint, TrainingLog, TrainingProvenance
    from .guards import check_checkpoint, check_fits
    from .module import NonFiniteLossError, SequenceModule

    rank_zero = results.launched_as_rank_zero()
    try:
        task = build_task(OmegaConf.to_object(cfg.task), cfg.paths.data_dir)
        task.prepare()
        with torch.device("meta"):  # the size, without allocating anything
            check_fits(task.network(build_backbone(OmegaConf.to_object(cfg.model))), cfg.trainer.accelerator,
                       f"{rid} does not fit")
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        network = task.network(build_backbone(OmegaConf.to_object(cfg.model)))
    except InfeasibleSetting as err:  # a grid point that cannot exist: record it so reruns and tables know
        if rank_zero:
            results.write_record(path, results.make_record(cfg, rid, status="infeasible", metrics={}, params=0,
                                                           steps=0, wall_time_s=0.0, error=str(err)))
        log.warning(f"{rid} is infeasible and was recorded as such: {err}")
        return results.load_record(path) if rank_zero else {}
    except (ValueError, ZeroDivisionError) as err:  # what only the model or task can rule out (head counts, ...)
        raise SuiteError(f"{rid}: {err}") from None
    t = cfg.trainer
    strategy = _strategy(t, network)
    module = SequenceModule(network, task.metrics, OmegaConf.to_object(cfg.optim), t.max_steps)
    params = sum(p.numel() for p in module.parameters())

    last, final = ckpt_dir / "last.ckpt", ckpt_dir / "final.ckpt"
    resume = cfg.resume or slurm_restarted()
    if last.exists() and not resume:
        raise SuiteError(f"{rid} has a checkpoint at {last}; pass resume=true to continue it, "
                         f"or delete {ckpt_dir} to start over")
    if resume and last.exists():
        check_checkpoint(last)
    provenance, training_log = TrainingProvenance(*results.git_commit()), TrainingLog()
    bar = t.enable_progress_bar if t.enable_progress_bar is not None else sys.stdout.isatty()
    callbacks = [L.pytorch.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_top_k=0, save_last=True,
                                                     every_n_train_steps=t.checkpoint_every_n_steps),
                 RNGStateCheckpoint(), provenance, training_log, PreemptionCheckpoint(str(last))]
    if not bar:
        callbacks.append(ProgressLog(rid, t.progress_interval_s))
    plugins = []
    if L.fabric.plugins.environments.SLURMEnvironment.detect():  # preemption is ours to handle (see main)
        plugins.append(L.fabric.plugins.environments.SLURMEnvironment(auto_requeue=False))
    trainer = L.Trainer(
        accelerator=t.accelerator, devices=t.devices, strategy=strategy, num_nodes=t.num_nodes,
        precision=t.precision, max_steps=t.max_steps, val_check_interval=min(t.val_check_interval, t.max_steps),
        check_val_every_n_epoch=None, limit_val_batches=t.limit_val_batches, num_sanity_val_steps=0,
        gradient_clip_val=t.gradient_clip_val, accumulate_grad_batches=t.accumulate_grad_batches,
        log_every_n_steps=t.log_every_n_steps, deterministic=t.deterministic, detect_anomaly=t.detect_anomaly,
        use_distributed_sampler=False,  # tasks shard their own data across ranks
        enable_progress_bar=bar, enable_model_summary=False, plugins=plugins or None,
        logger=make_logger(cfg, output_dir(cfg), rid), default_root_dir=str(output_dir(cfg)), callbacks=callbacks,
    )
    resume_from = str(last) if resume and last.exists() else None
    log.info(f"run {rid}: {params / 1e6:.3f}M params" + (f", resuming from {last}" if resume_from else ""))
    start = time.time()
    argv = sys.argv
    try:
        sys.argv = ddp_child_argv(argv)
        trainer.fit(module, datamodule=task, ckpt_path=resume_from)
        if module.val_step != trainer.global_step:  # evaluate the final weights
            trainer.validate(module, datamodule=task, verbose=False)
        trainer.test(module, datamodule=task, verbose=False)
        trainer.save_checkpoint(final, weights_only=False)  # the finished run's weights; a rerun never resumes from them
    except NonFiniteLossError as err:
        if rank_zero:
            results.write_record(path, results.make_record(
                cfg, rid, status="diverged", metrics={}, params=params, steps=trainer.global_step,
                wall_time_s=time.time() - start, training=provenance.trained(trainer), error=str(err),
                throughput=training_log.summary(), curve=training_log.curve))
        kept = f"last good checkpoint kept at {last}" if last.exists() else "no checkpoint was written yet"
        raise SuiteError(f"{rid} diverged: {err}; {kept}; lower optim.lr or set trainer.gradient_clip_val") from None
    except SIGTERMException:
        raise Preempted(f"{rid} stopped by SIGTERM at step {trainer.global_step}; checkpoint saved at {last}; "
                        "rerun the same command with resume=true to continue it") from None
    finally:
        sys.argv = argv
    metrics = {split: module.final_metrics[split] for split in ("val", "test")}
    record = results.make_record(cfg, rid, status="finished", metrics=metrics, params=params,
                                 steps=trainer.global_step, wall_time_s=time.time() - start,
                                 training=provenance.trained(trainer), checkpoint=str(final),
                                 throughput=training_log.summary(), curve=training_log.curve)
    if trainer.is_global_zero:
        last.unlink(missing_ok=True)  # "delete the record to rerun" starts that point afresh
        results.write_record(path, record)
        headline = {s: {k: round(v, 4) for k, v in m.items() if "@" not in k} for s, m in metrics.items()}
        log.info(f"finished {rid}: {headline}; {record['throughput']}")
    return record


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def hydra_main(cfg: DictConfig) -> Any:
    try:
        return run(cfg)
    except SuiteError as err:
        FAILURES.append(str(err))
        log.error(str(err))
        return None
    except Preempted as err:  # stop the whole sweep: the scheduler wants this process gone
        log.error(str(err))
        requeue_slurm_job(cfg)
        raise SystemExit(PREEMPTED_EXIT) from None


def _on_stop_signal(signum: int, frame: Any) -> None:
    """SIGTERM / SIGUSR1 for the whole process. Inside ``fit`` Lightning's own SIGTERM handler is installed: it
    stops the loop and the run saves its checkpoint, so SIGUSR1 (SLURM's early warning) is passed on as SIGTERM.
    Outside ``fit`` nothing needs saving: the sweep stops here."""
    lightning_handles = signal.getsignal(signal.SIGTERM) is not _on_stop_signal
    if lightning_handles:
        if signum != signal.SIGTERM:
            os.kill(os.getpid(), signal.SIGTERM)
        return
    raise Preempted(f"stopped by {signal.Signals(signum).name} outside training; rerun the same command to go on "
                    "(finished points are skipped, resume=true continues an interrupted one)")


def quiet_lightning() -> None:
    """Keep the console to the suite's own lines: Lightning's info banners and a torch-2.13 deprecation notice."""
    import warnings

    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    logging.getLogger("lightning.fabric.utilities.rank_zero").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def precheck(args, overrides: list[str]) -> None:
    """Names, keys and values of the first grid point, and what the command is about to start, before Hydra runs
    anything (Hydra would compose every point of a sweep first)."""
    cfg, grid = check_command(overrides, args.multirun)
    if args.cfg or not results.launched_as_rank_zero():  # printing the config, or a DDP rank: start nothing
        return
    runs, line = grid_summary(grid or {}, cfg)
    refuse_paper_scale_on_cpu(cfg, runs)
    if grid is not None:
        print(line, flush=True)


def main() -> None:
    quiet_lightning()
    register()
    args, overrides = split_argv(sys.argv[1:])
    if sum(bool(x) for x in (args.run, args.multirun, args.cfg, args.info, args.shell_completion)) > 1:
        print("error: only one of --run, --multirun, --cfg, --info and --shell-completion can be given (Hydra's "
              "rule)", file=sys.stderr)
        sys.exit(2)
    if not (args.help or args.hydra_help or args.info or args.shell_completion):
        try:
            precheck(args, overrides)
        except SuiteError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
    for signum in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, _on_stop_signal)
    try:
        hydra_main()
    except Preempted as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(PREEMPTED_EXIT)
    if FAILURES:
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("HYDRA_FULL_ERROR", "0")
    main()
