"""``python -m experiments.eval run=<run id> [checkpoint=...] [key=value ...]``: evaluate a trained language model.

Two suites, each written as one immutable record (``results/eval_downstream/<scale>/runs/`` and
``results/eval_paloma/<scale>/runs/``, the scale of the training run) and then as a table beside the paper's
(Table 3's downstream columns, Table 4/9's PALOMA sources):

* ``tasks``: lm-evaluation-harness tasks (``downstream.TASKS``) on the JSONL files in ``eval_data_dir``;
* ``paloma_sources``: PALOMA sources (hub config names) from ``paloma_dir`` (``hub`` or a local copy).

A record's id is the training run's id and a hash of what the evaluation read and how (data files' contents, limits,
window, precision), so rerunning the same evaluation is skipped and a different one gets its own record.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from xlstm.config import require

from .. import results
from ..config import SuiteError
from . import downstream, paloma
from .perplexity import PRECISIONS, place

log = logging.getLogger("experiments.eval")
SUITES = {"downstream": "eval_downstream", "paloma": "eval_paloma"}  # suite -> experiment (results folder)


@dataclass
class EvalConfig:
    run: Optional[str] = None  # a run id or a record's path
    checkpoint: Optional[str] = None  # default: the run's final.ckpt
    tasks: list[str] = field(default_factory=lambda: list(downstream.TASKS))  # [] skips the downstream suite
    eval_data_dir: str = "data/eval"  # <dir>/<task>.jsonl, the upstream rows
    limit: Optional[int] = None  # rows per downstream task (None: all)
    paloma_sources: list[str] = field(default_factory=lambda: [c for _, c in paloma.SOURCES])  # [] skips PALOMA
    paloma_dir: str = "hub"  # hub (allenai/paloma, gated) | a local copy in its layout
    paloma_max_docs: Optional[int] = None  # documents per source (None: all)
    hf_token: Optional[str] = None
    max_length: Optional[int] = None  # window in tokens; None: the trained context (2048 in the paper)
    batch_size: int = 8
    precision: str = "fp32"  # fp32 | bf16 | bf16-mixed
    device: str = "auto"  # auto | cpu | cuda
    data_label: str = ""  # what the data is, shown in the tables (e.g. "fixtures", "PALOMA val")
    results_dir: str = str(results.ROOT / "results")
    checkpoint_dir: str = "checkpoints"
    data_dir: Optional[str] = None  # where the run's tokenizer file lies; None: the training's paths.data_dir

    def check(self) -> None:
        require(self.precision in PRECISIONS, "precision", " | ".join(PRECISIONS), self.precision)
        require(self.device in ("auto", "cpu", "cuda"), "device", "auto | cpu | cuda", self.device)
        require(self.batch_size >= 1, "batch_size", ">= 1", self.batch_size)
        require(self.limit is None or self.limit >= 1, "limit", "null or >= 1", self.limit)
        require(self.paloma_max_docs is None or self.paloma_max_docs >= 1, "paloma_max_docs", "null or >= 1",
                self.paloma_max_docs)
        require(self.max_length is None or self.max_length >= 1, "max_length", "null or >= 1", self.max_length)
        unknown = [t for t in self.tasks if t not in downstream.TASKS]
        require(not unknown, "tasks", f"a list of {', '.join(downstream.TASKS)}", self.tasks)
        require(bool(self.tasks) or bool(self.paloma_sources), "tasks/paloma_sources", "at least one task or source",
                "both empty")


def parse(argv: list[str]) -> EvalConfig:
    """key=value overrides (OmegaConf's dotlist syntax, lists as tasks=[piqa,arc_easy]) onto the defaults; one error
    line for an unknown key or a bad value."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(EvalConfig), OmegaConf.from_dotlist(argv))
        config: EvalConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except (OmegaConfBaseException, ValueError) as err:
        raise SuiteError(f"bad argument: {str(err).splitlines()[0]} (keys: {', '.join(EvalConfig.__annotations__)})"
                         ) from None
    try:
        config.check()
    except ValueError as err:
        raise SuiteError(str(err)) from None
    return config


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _eval_id(train_rid: str, what: dict) -> str:
    digest = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:8]
    return f"{train_rid}__{digest}"


def _record(cfg: EvalConfig, suite: str, trained, eval_id: str, metrics: dict, settings: dict, wall: float) -> dict:
    from xlstm import paper_label

    train = trained.record
    commit, dirty = results.git_commit()
    return {"run_id": eval_id, "experiment": SUITES[suite], "status": "finished", "error": None,
            "task": suite, "model": train["model"], "model_label": paper_label(train["model"]),
            "scale": train["scale"], "seed": train["seed"], "lr": train["lr"], "steps": train["steps"],
            "params": train.get("params"), "trained_run": train["run_id"], "trained_experiment": train["experiment"],
            "training": train.get("training", []), "checkpoint": str(trained.checkpoint),
            "data_label": cfg.data_label, "eval": settings, "metrics": metrics, "wall_time_s": round(wall, 2),
            "hardware": results.hardware(), "git_commit": commit, "git_dirty": dirty,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "config": train["config"]}


def _downstream(cfg: EvalConfig, trained, device: str, max_length: int) -> tuple[dict, dict]:
    import datasets
    import lm_eval

    from .harness import SuiteLM

    datasets.disable_progress_bars()  # the local JSONL loads in milliseconds; keep the log readable
    logging.getLogger("lm_eval").setLevel(logging.WARNING)

    tasks = downstream.build_tasks(cfg.tasks, cfg.eval_data_dir)
    lm = SuiteLM(trained.model, trained.tokenizer, max_length, cfg.batch_size, cfg.precision, device)
    out = lm_eval.simple_evaluate(model=lm, tasks=list(tasks.values()), limit=cfg.limit, bootstrap_iters=0,
                                  log_samples=False,
                                  random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
    metrics = {}
    for name in cfg.tasks:
        row = out["results"][name]
        metrics[name] = {key.split(",")[0]: float(value) for key, value in row.items()
                         if "," in key and "stderr" not in key}
        metrics[name]["samples"] = int(out["n-samples"][name]["effective"])
    return metrics, {"tasks": cfg.tasks, "limit": cfg.limit, "lm_eval": lm_eval.__version__ if hasattr(
        lm_eval, "__version__") else "unknown"}


def _paloma(cfg: EvalConfig, trained, max_length: int) -> tuple[dict, dict]:
    sources = list(cfg.paloma_sources)
    metrics = {}
    for source in sources:
        docs = paloma.documents(source, cfg.paloma_dir, cfg.paloma_max_docs, cfg.hf_token)
        result = paloma.evaluate_source(trained.model, trained.tokenizer, docs, max_length, cfg.batch_size,
                                        cfg.precision)
        metrics[paloma.COLUMN_OF.get(source, source)] = result.as_dict()
        log.info(f"PALOMA {source}: ppl {result.ppl:.3f} over {result.tokens:,} tokens, {result.documents} documents")
    return metrics, {"sources": sources, "max_docs": cfg.paloma_max_docs}


def _data_identity(cfg: EvalConfig, suite: str) -> dict:
    """What the evaluation reads, by content where it is local (so changed data gets a new record)."""
    if suite == "downstream":
        files = {t: downstream.data_file(cfg.eval_data_dir, t) for t in cfg.tasks}
        return {t: _sha256(path) if path.is_file() else "missing" for t, path in files.items()}
    if cfg.paloma_dir == "hub":
        return {"hub": paloma.HUB_DATASET}
    return {s: [_sha256(p) for p in paloma.local_files(Path(cfg.paloma_dir), s)] for s in cfg.paloma_sources}


def evaluate(cfg: EvalConfig) -> list[Path]:
    """Run the configured suites on the model; returns the records written (or found)."""
    import torch

    from .checkpoint import load_trained

    trained = load_trained(cfg.run, cfg.checkpoint, results_dir=cfg.results_dir, checkpoint_dir=cfg.checkpoint_dir,
                           data_dir=cfg.data_dir)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    if device == "cuda" and not torch.cuda.is_available():
        raise SuiteError("device=cuda but no CUDA device is visible; use device=cpu")
    max_length = cfg.max_length or trained.context_length
    limit = trained.model.backbone.max_positions
    if limit is not None and max_length > limit:
        raise SuiteError(f"max_length={max_length} exceeds the {limit} positions {trained.record['model']} learned; "
                         f"use max_length <= {limit}")
    trained.model = place(trained.model, cfg.precision, device)
    written = []
    for suite, wanted in (("downstream", cfg.tasks), ("paloma", cfg.paloma_sources)):
        if not wanted:
            continue
        what = {"suite": suite, "data": _data_identity(cfg, suite), "max_length": max_length,
                "precision": cfg.precision, "limit": cfg.limit if suite == "downstream" else cfg.paloma_max_docs,
                "items": list(wanted), "checkpoint": _sha256(trained.checkpoint)}
        eval_id = _eval_id(trained.record["run_id"], what)
        path = results.record_path(cfg.results_dir, SUITES[suite], trained.record["scale"], eval_id)
        if path.exists():
            log.info(f"{path} exists: skipped (delete it to evaluate again)")
            written.append(path)
            continue
        start = time.time()
        if suite == "downstream":
            metrics, settings = _downstream(cfg, trained, device, max_length)
        else:
            metrics, settings = _paloma(cfg, trained, max_length)
        settings.update(max_length=max_length, precision=cfg.precision, batch_size=cfg.batch_size, device=device,
                        data=what["data"], data_dir=cfg.eval_data_dir if suite == "downstream" else cfg.paloma_dir)
        results.write_record(path, _record(cfg, suite, trained, eval_id, metrics, settings, time.time() - start))
        log.info(f"wrote {path}")
        written.append(path)
    return written
