"""MQAR (Figures 5, 14-16): validation accuracy vs model width per setting (what the paper plots), best learning
rate by validation; test accuracy is an extra column of table.csv.

One builder serves the three experiments: ``mqar`` (Zoology's settings), ``mqar_long`` (long contexts, many pairs)
and ``mqar_extrapolation`` (trained at one context, evaluated at longer ones). The paper shows these only as
plots, so there is no paper number beside ours.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from . import (DIVERGED_NOTE, Artefact, best_by_validation, cell, legend_beside, model_color, model_label,
               model_sort_key, panel_grid, provenance, save_figure, scale_of, variants)

AXES = ["model.name", "model.embedding_dim", "task.context_length", "task.num_kv_pairs"]

TITLES = {
    "mqar": "MQAR, experiment 1 (Figure 14): Zoology's settings",
    "mqar_long": "MQAR, experiment 2 (Figures 5 and 15): long contexts, many key-value pairs",
    "mqar_extrapolation": "MQAR, experiment 3 (Figure 16): trained at one context, evaluated at longer ones",
}


def _rows(records: list[dict]) -> pd.DataFrame:
    """One row per (run, evaluated context): val and test accuracy at that context."""
    rows = []
    for r, variant in zip(records, variants(records, AXES)):
        if r["status"] == "infeasible":
            continue
        task, model = r["config"]["task"], r["config"]["model"]
        pairs = task["num_kv_pairs"] or task["context_length"] // 16
        contexts = [task["context_length"], *task["eval_context_lengths"]]
        for context in contexts:
            key = f"acc@{context}"
            finished = r["status"] == "finished"
            rows.append({"model": r["model"], "variant": variant, "width": model["embedding_dim"], "context": task["context_length"],
                         "pairs": pairs, "eval_context": context, "lr": r["lr"], "seed": r["seed"],
                         # the learning rate is chosen on the training context's validation accuracy
                         "val": r["metrics"]["val"].get(f"acc@{task['context_length']}") if finished else np.nan,
                         "val_acc": r["metrics"]["val"].get(key) if finished else np.nan,
                         "test": r["metrics"]["test"].get(key) if finished else np.nan})
    return pd.DataFrame(rows)


def mqar_table(records: list[dict], paper_dir: Path, experiment: str) -> Artefact:
    table = best_by_validation(_rows(records), ["model", "variant", "width", "context", "pairs", "eval_context"],
                               report=("val_acc", "test"))
    table["model_label"] = [model_label(m) + (f" [{v}]" if v else "") for m, v in zip(table.model, table.variant)]
    table["order"] = table.model.map(model_sort_key)
    table = table.sort_values(["context", "pairs", "eval_context", "order", "width"]).drop(columns="order")
    table = table.reset_index(drop=True)[["model", "variant", "model_label", "width", "context", "pairs",
                                          "eval_context", "best_lr", "seeds", "diverged", "val", "val_acc_mean",
                                          "val_acc_std", "test_mean", "test_std"]]
    settings = list(dict.fromkeys(zip(table.context, table.pairs, table.eval_context)))
    widths = sorted(table.width.unique())
    lines = [f"# {TITLES[experiment]}; {scale_of(records)} scale", "",
             "Validation accuracy on the query positions, as the paper plots it (mean over seeds; ± std with more",
             "than one), at the learning rate with the best validation accuracy at the training context; test",
             "accuracy is in table.csv. The paper gives these results only as plots: no paper number stands beside",
             "ours.", "", provenance(records)]
    infeasible = sorted({r["error"] for r in records if r["status"] == "infeasible"})
    if infeasible:
        lines += ["", "Not run (the generator needs context >= 4 x pairs): " + "; ".join(infeasible)]
    for context, pairs, eval_context in settings:
        sub = table[(table.context == context) & (table.pairs == pairs) & (table.eval_context == eval_context)]
        where = f"context {context}, {pairs} pairs" + (f", evaluated at {eval_context}" if eval_context != context else "")
        lines += ["", f"## {where}", "", "| model | " + " | ".join(f"d={w}" for w in widths) + " |",
                  "|---|" + "---|" * len(widths)]
        for label in dict.fromkeys(sub.model_label):
            cells = []
            for w in widths:
                row = sub[(sub.model_label == label) & (sub.width == w)]
                cells.append(cell(row.val_acc_mean.iloc[0], row.val_acc_std.iloc[0], seeds=row.seeds.iloc[0],
                                  diverged=row.diverged.iloc[0]) if len(row) else "")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if table.diverged.any():
        lines += ["", DIVERGED_NOTE]
    return Artefact(table, "\n".join(lines) + "\n", {"table.png": lambda path: _plot(table, settings, path)})


def _plot(table: pd.DataFrame, settings: list[tuple[int, int, int]], path: Path) -> None:
    fig, axes = panel_grid(len(settings), 3, (3.8, 3.0))
    for ax, (context, pairs, eval_context) in zip(axes, settings):
        sub = table[(table.context == context) & (table.pairs == pairs) & (table.eval_context == eval_context)]
        for label in dict.fromkeys(sub.model_label):
            line = sub[sub.model_label == label].sort_values("width")
            ax.plot(line.width, line.val_acc_mean, marker="o", label=label, color=model_color(label))
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(f"T={context}, K={pairs}" + (f", eval T={eval_context}" if eval_context != context else ""),
                     fontsize=9)
        ax.set_xlabel("model dimension", fontsize=8)
        ax.set_ylabel("validation accuracy", fontsize=8)
    legend_beside(fig, axes)
    save_figure(fig, path)


mqar = partial(mqar_table, experiment="mqar")
mqar_long = partial(mqar_table, experiment="mqar_long")
mqar_extrapolation = partial(mqar_table, experiment="mqar_extrapolation")
