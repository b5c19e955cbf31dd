"""State tracking on formal languages: ``ablation_state_tracking`` (input-gate activation and sLSTM memory mixing on
Parity and Modular Arithmetic) and ``parity_diagnosis`` (why xLSTM[1:1] can sit at chance on Parity). Cells are
rescaled accuracy (0 = chance, 1 = perfect) at the learning rate chosen by validation, mean over seeds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import DIVERGED_NOTE, Artefact, best_by_validation, cell, panel_grid, provenance, save_figure, scale_of
from .formal_languages import _score
from .language_modelling import variant_row

TRAIN_MAX_LENGTH = 40  # the small and paper grids train on lengths 1..40

STATE_TRACKING_ROWS = {  # variant -> (model, input gate, memory mixing)
    "slstm": ("xLSTM[0:1]", "exp", "yes"), "slstm_sigmoid": ("xLSTM[0:1]", "sigmoid", "yes"),
    "slstm_no_mixing": ("xLSTM[0:1]", "exp", "no"), "slstm_sigmoid_no_mixing": ("xLSTM[0:1]", "sigmoid", "no"),
    "mlstm": ("xLSTM[1:0]", "exp", "no (mLSTM)"), "mlstm_sigmoid": ("xLSTM[1:0]", "sigmoid", "no (mLSTM)"),
}
PARITY_ROWS = ["default", "slstm_first", "long", "bias_standard", "bias_zeros", "bias_small_init", "bias_standard_slstm_first",
               "bias_standard_long", "slstm_one_block_bias_standard"]


def _by_length(record: dict) -> dict[int, float]:
    """Test rescaled accuracy per length of a finished run."""
    if record["status"] != "finished":
        return {}
    return {int(k.split("@")[1]): v for k, v in record["metrics"]["test"].items() if k.startswith("acc_scaled@")}


def _runs(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        lengths = _by_length(r)
        inside = [v for length, v in lengths.items() if length <= TRAIN_MAX_LENGTH]
        beyond = [v for length, v in lengths.items() if length > TRAIN_MAX_LENGTH]
        rows.append({"variant": variant_row(r), "task": r["task"], "lr": r["lr"], "seed": r["seed"],
                     "steps": r["steps"], "val": _score(r, "val"), "test": _score(r, "test"),
                     "inside": np.mean(inside) if inside else np.nan, "beyond": np.mean(beyond) if beyond else np.nan})
    return pd.DataFrame(rows)


def _rank(variant: str, order) -> tuple[int, str]:
    return (list(order).index(variant) if variant in order else len(order), variant)


def _order(variants, order) -> list[str]:
    return sorted(set(variants), key=lambda v: _rank(v, order))


def ablation_state_tracking(records: list[dict], paper_dir: Path) -> Artefact:
    runs = _runs(records)
    table = best_by_validation(runs, ["variant", "task"])
    tasks = sorted(runs.task.unique())
    lines = [f"# Input gate and memory mixing on state tracking; {scale_of(records)} scale", "",
             "Rescaled test accuracy over the test lengths (0 = chance, 1 = perfect), learning rate by validation.",
             "", provenance(records), "",
             "| row | model | input gate | memory mixing | " + " | ".join(tasks) + " |",
             "|---|---|---|---|" + "---|" * len(tasks)]
    for v in _order(runs.variant, STATE_TRACKING_ROWS):
        model, gate, mixing = STATE_TRACKING_ROWS.get(v, ("", "", ""))
        cells = []
        for t in tasks:
            row = table[(table.variant == v) & (table.task == t)]
            cells.append(cell(row.test_mean.iloc[0], row.test_std.iloc[0], seeds=int(row.seeds.iloc[0]),
                              diverged=int(row.diverged.iloc[0])) if len(row) else "not run")
        lines.append(f"| {v} | {model} | {gate} | {mixing} | " + " | ".join(cells) + " |")
    if table.diverged.any():
        lines += ["", DIVERGED_NOTE]
    figure = {"accuracy_by_length.png": lambda path: _length_curves(records, table, STATE_TRACKING_ROWS, path)}
    return Artefact(table, "\n".join(lines) + "\n", figure)


def parity_diagnosis(records: list[dict], paper_dir: Path) -> Artefact:
    runs = _runs(records)
    table = best_by_validation(runs, ["variant"], report=("test", "inside", "beyond"))
    lines = [f"# Parity diagnosis: xLSTM[1:1] and its controls; {scale_of(records)} scale", "",
             f"Rescaled test accuracy inside the training lengths (<= {TRAIN_MAX_LENGTH}) and beyond them at the",
             "learning rate chosen by validation, mean ± std over seeds; solved = seeds above 0.9 inside. 0 = chance.",
             "", provenance(records), "",
             "| row | steps | best lr | solved | inside (<= 40) | beyond (> 40) |", "|---|---|---|---|---|---|"]
    for v in _order(runs.variant, PARITY_ROWS):
        row = table[table.variant == v].iloc[0]
        chosen = runs[(runs.variant == v) & (runs.lr == row.best_lr)]
        seeds = int(row.seeds) or 1
        lines.append(f"| {v} | {int(chosen.steps.max())} | {row.best_lr:g} | "
                     f"{int((chosen.inside > 0.9).sum())}/{len(chosen)} | "
                     f"{cell(row.inside_mean, row.inside_std, seeds=seeds, diverged=int(row.diverged))} | "
                     f"{cell(row.beyond_mean, row.beyond_std, seeds=seeds)} |")
    if table.diverged.any():
        lines += ["", DIVERGED_NOTE]
    figure = {"accuracy_by_length.png": lambda path: _length_curves(records, table, PARITY_ROWS, path)}
    return Artefact(table, "\n".join(lines) + "\n", figure)


def _length_curves(records: list[dict], table: pd.DataFrame, order, path: Path) -> None:
    """Rescaled test accuracy by length, one panel per task, one line per row at its selected learning rate (mean
    over seeds)."""
    best = {(v, t): lr for v, t, lr in zip(table.variant, table.get("task", ["parity"] * len(table)), table.best_lr)}
    rows = [{"variant": variant_row(r), "task": r["task"], "length": length, "acc": acc}
            for r in records if best.get((variant_row(r), r["task"])) == r["lr"]
            for length, acc in _by_length(r).items()]
    frame = pd.DataFrame(rows, columns=["variant", "task", "length", "acc"])
    tasks = sorted(set(frame.task)) or ["parity"]
    fig, axes = panel_grid(len(tasks), 2, (4.5, 3.2))
    for ax, task in zip(axes, tasks):
        sub = frame[frame.task == task]
        for variant in _order(sub.variant, order):
            mean = sub[sub.variant == variant].groupby("length").acc.mean()
            ax.plot(mean.index, mean.values, marker=".", label=variant)
        ax.axvline(TRAIN_MAX_LENGTH, color="grey", linestyle=":", linewidth=1)
        ax.set_title(f"{task} (mean over seeds)", fontsize=9)
        ax.set_xlabel("test length", fontsize=8)
        ax.set_ylabel("rescaled accuracy", fontsize=8)
        ax.set_ylim(-0.15, 1.05)
        ax.legend(fontsize=6)
    save_figure(fig, path)
