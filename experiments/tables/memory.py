"""The memory studies: ``memory_size`` (mLSTM head count at one width), ``memory_type`` (matrix vs scalar memory) and
``memory_stabilizer`` (the mLSTM's stabilizer and normalizer in float32 and bf16). No paper numbers exist for them;
each table compares its own rows. Language-model cells are validation perplexity (lower is better), MQAR cells
validation accuracy (higher is better), each at the best learning rate by validation, mean over seeds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import (DIVERGED_NOTE, Artefact, best_by_validation, cell, model_label, model_sort_key, panel_grid,
               provenance, save_figure, scale_of)
from .language_modelling import plot_curves, variant_row

LM_TASKS = ("lm_local", "slimpajama")
STABILIZER_ROWS = ["paper", "no_stabilizer", "normalizer_abs", "normalizer_one", "no_stabilizer_normalizer_abs"]
PRECISIONS = ["32-true", "bf16-mixed"]
MEMORY_KIND = {"xlstm_1_0": "matrix (mLSTM)", "xlstm_0_1": "scalar + mixing (sLSTM)", "xlstm_1_1": "both"}
MEMORY_ORDER = {m: i for i, m in enumerate(MEMORY_KIND)}


def mlstm_head_dim(model: dict) -> int:
    """The mLSTM's head dimension of a record's model config: inner width / heads."""
    from xlstm.components import ffn_hidden_dim

    inner = ffn_hidden_dim(model["embedding_dim"], model.get("mlstm_proj_factor", 2.0),
                           model.get("mlstm_proj_round_to", 64))
    return inner // model["num_heads"]


def _runs(records: list[dict]) -> pd.DataFrame:
    """One row per run: task kind (lm / mqar), model, heads, lr, seed, validation and test score, parameters."""
    rows = []
    for r in records:
        if r["status"] == "infeasible":
            continue
        lm = r["task"] in LM_TASKS
        key = "ppl" if lm else "acc"
        metrics = r["metrics"] if r["status"] == "finished" else {"val": {}, "test": {}}
        model = r["config"]["model"]
        rows.append({"kind": "lm" if lm else "mqar", "model": r["model"], "heads": model["num_heads"],
                     "head_dim": mlstm_head_dim(model), "lr": r["lr"], "seed": r["seed"],
                     "val": metrics["val"].get(key, np.nan), "test": metrics["test"].get(key, np.nan),
                     "params_m": r["params"] / 1e6, "igate_max": metrics["val"].get("igate_max", np.nan)})
    return pd.DataFrame(rows)


def _best(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """best_by_validation per task kind (perplexity: lower is better; accuracy: higher), with the run's params."""
    parts = []
    for kind, sub in runs.groupby("kind"):
        best = best_by_validation(sub, keys, higher_is_better=kind == "mqar")
        parts.append(best.join(sub.groupby(keys)[["params_m", "head_dim"]].first(), on=keys).assign(kind=kind))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _cells(table: pd.DataFrame, kind: str, **where) -> list[str]:
    """[parameters (M), best lr, score] of one task kind's row, or blanks and "not run"."""
    row = table[table.kind == kind] if len(table) else table
    for key, value in where.items():
        row = row[row[key] == value]
    if not len(row):
        return ["", "", "not run"]
    row = row.iloc[0]
    lr = f"{row.best_lr:g}" if np.isfinite(row.best_lr) else ""
    return [f"{row.params_m:.3f}", lr, cell(row.val, 0.0, seeds=int(row.seeds) or 1, diverged=int(row.diverged))]


def memory_size(records: list[dict], paper_dir: Path) -> Artefact:
    runs = _runs(records)
    table = _best(runs, ["heads"])
    heads = sorted(runs.heads.unique())
    lines = [f"# Memory size: xLSTM[1:0] mLSTM heads at one width; {scale_of(records)} scale", "",
             "Each head keeps a d_h x d_h matrix memory (d_h = inner width / heads), so fewer heads = more memory per",
             "layer at the same parameter count (table.csv has the counts). LM: validation perplexity (lower is",
             "better); MQAR: validation accuracy (higher is better); best learning rate by validation.", "",
             provenance(records), "",
             "| heads | LM d_h | LM lr | LM val ppl | MQAR d_h | MQAR lr | MQAR acc |", "|---|---|---|---|---|---|---|"]
    for h in heads:
        parts = []
        for kind in ("lm", "mqar"):
            row = table[(table.kind == kind) & (table.heads == h)]
            params, lr, score = _cells(table, kind, heads=h)
            parts += [str(int(row.head_dim.iloc[0])) if len(row) else "", lr, score]
        lines.append(f"| {h} | " + " | ".join(parts) + " |")
    if table.diverged.any():
        lines += ["", DIVERGED_NOTE]
    return Artefact(table, "\n".join(lines) + "\n", {"memory_size.png": lambda p: _by_axis(table, "heads", p)})


def memory_type(records: list[dict], paper_dir: Path) -> Artefact:
    runs = _runs(records)
    table = _best(runs, ["model"])
    models = sorted(runs.model.unique(), key=lambda m: (MEMORY_ORDER.get(m, 9), model_sort_key(m)))
    lines = [f"# Matrix vs scalar memory at about equal parameters; {scale_of(records)} scale", "",
             "One width and block count per task for every model (parameters in the table). LM: validation",
             "perplexity (lower is better); MQAR: validation accuracy (higher is better).", "", provenance(records), "",
             "| model | memory | LM params (M) | LM lr | LM val ppl | MQAR params (M) | MQAR lr | MQAR acc |",
             "|---|---|---|---|---|---|---|---|"]
    for m in models:
        parts = _cells(table, "lm", model=m) + _cells(table, "mqar", model=m)
        lines.append(f"| {model_label(m)} | {MEMORY_KIND.get(m, '')} | " + " | ".join(parts) + " |")
    if table.diverged.any():
        lines += ["", DIVERGED_NOTE]
    return Artefact(table, "\n".join(lines) + "\n", {"memory_type.png": lambda p: _by_axis(table, "model", p)})


def _by_axis(table: pd.DataFrame, axis: str, path: Path) -> None:
    """One panel per task kind: the score of each row (head count or model)."""
    kinds = [k for k in ("lm", "mqar") if k in set(table.kind)]
    fig, axes = panel_grid(len(kinds), 2, (4.0, 3.0))
    for ax, kind in zip(axes, kinds):
        sub = table[table.kind == kind]
        if axis == "model":
            sub = sub.assign(order=sub.model.map(MEMORY_ORDER.get)).sort_values("order")
        labels = [model_label(v) if axis == "model" else str(v) for v in sub[axis]]
        ax.bar(labels, sub.val.fillna(0), color="C0")
        ax.set_ylabel("validation perplexity" if kind == "lm" else "validation accuracy")
        ax.set_xlabel("mLSTM heads" if axis == "heads" else "")
        ax.set_title("language modelling" if kind == "lm" else "MQAR", fontsize=9)
    save_figure(fig, path)


def memory_stabilizer(records: list[dict], paper_dir: Path) -> Artefact:
    rows = []
    for r in records:
        if r["status"] == "infeasible":
            continue
        val = r["metrics"]["val"] if r["status"] == "finished" else {}
        model = r["config"]["model"]
        rows.append({"variant": variant_row(r), "precision": r["config"]["trainer"]["precision"],
                     "stabilizer": model["mlstm_stabilizer"], "normalizer": model["mlstm_normalizer"],
                     "lr": r["lr"], "seed": r["seed"], "val": val.get("ppl", np.nan), "steps": r["steps"],
                     "test": (r["metrics"]["test"] if r["status"] == "finished" else {}).get("ppl", np.nan),
                     "max_steps": r["config"]["trainer"]["max_steps"], "status": r["status"],
                     "igate_max": val.get("igate_max", np.nan), "error": r.get("error") or ""})
    runs = pd.DataFrame(rows)
    table = best_by_validation(runs, ["variant", "precision"], higher_is_better=False)
    table = table.join(runs.groupby(["variant", "precision"])[["stabilizer", "normalizer", "igate_max"]].max(),
                       on=["variant", "precision"])
    order = {v: i for i, v in enumerate(STABILIZER_ROWS)}
    variants_run = sorted(set(runs.variant), key=lambda v: order.get(v, len(order)))
    precisions = [p for p in PRECISIONS if p in set(runs.precision)] + sorted(set(runs.precision) - set(PRECISIONS))
    lines = [f"# mLSTM stabilizer and normalizer, xLSTM[1:0] language model; {scale_of(records)} scale", "",
             "Validation perplexity (lower is better), or the step at which the loss or a gradient turned",
             "non-finite. igate max: the largest input-gate pre-activation seen in training, the log of the largest",
             "factor exp(i) the memory takes in (float32 and bfloat16 overflow at exp(88.7)).", "",
             provenance(records), "",
             "| row | stabilizer | normalizer | " + " | ".join(f"{p} val ppl | {p} igate max" for p in precisions)
             + " |", "|---|---|---|" + "---|---|" * len(precisions)]
    for v in variants_run:
        first = runs[runs.variant == v].iloc[0]
        cells = []
        for p in precisions:
            sub = runs[(runs.variant == v) & (runs.precision == p)]
            best = table[(table.variant == v) & (table.precision == p)]
            if not len(sub):
                cells += ["not run", ""]
                continue
            b = best.iloc[0]
            if np.isfinite(b.val):
                text = cell(b.val, 0.0, seeds=1, diverged=int(b.diverged))
            else:
                text = "diverged at step " + ", ".join(str(s) for s in sorted(sub.steps))
            peak = sub.igate_max.max()
            cells += [text, f"{peak:.1f}" if np.isfinite(peak) else ""]
        lines.append(f"| {v} | {first.stabilizer} | {first.normalizer} | " + " | ".join(cells) + " |")
    if table.diverged.any():
        lines += ["", DIVERGED_NOTE]

    def label(r: dict) -> tuple[str, str]:
        v, p = variant_row(r), r["config"]["trainer"]["precision"]
        return f"{v} {p}", f"C{order.get(v, 9) % 10}"

    figure = {"curves.png": lambda path: plot_curves(records, path, "mLSTM stabilizer / normalizer", label_of=label,
                                                     sort_key=lambda r: (order.get(variant_row(r), 9),
                                                                         r["config"]["trainer"]["precision"]))}
    return Artefact(table, "\n".join(lines) + "\n", figure)
