"""formal_languages: the Figure 4 heat map (models x tasks grouped by Chomsky level), the Figure 12 table, and
accuracy by test length."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from xlstm.registry import label_of_paper_name

from . import (DIVERGED_NOTE, Artefact, best_by_validation, cell, model_label, model_sort_key, panel_grid,
               provenance, save_figure, scale_of, variants)


def formal_languages(records: list[dict], paper_dir: Path) -> Artefact:
    from tasks.formal import LANGUAGES, LEVELS

    runs = pd.DataFrame([{
        "model": r["model"], "variant": variant, "task": r["task"], "lr": r["lr"], "seed": r["seed"],
        "val": _score(r, "val"), "test": _score(r, "test"),
    } for r, variant in zip(records, variants(records, ["model.name", "task.name"]))])
    table = best_by_validation(runs, ["model", "variant", "task"])
    language = {t: LANGUAGES[t] for t in table.task}
    table["level"] = [language[t].level for t in table.task]
    table["model_label"] = [model_label(m) + (f" [{v}]" if v else "") for m, v in zip(table.model, table.variant)]
    table["task_label"] = [language[t].paper_name for t in table.task]

    paper = pd.read_csv(paper_dir / "fig12_formal_supplementary.csv")
    paper_models = [label_of_paper_name(m) for m in paper.model]  # Figure 12's "Retention" is RetNet
    lookup = {(m, t): (a, s) for m, t, a, s in zip(paper_models, paper.task, paper.scaled_acc_mean,
                                                    paper.scaled_acc_std)}
    pairs = list(zip(table.model_label, table.task_label))
    table["paper_mean"] = [lookup.get(p, (np.nan, np.nan))[0] for p in pairs]
    table["paper_std"] = [lookup.get(p, (np.nan, np.nan))[1] for p in pairs]
    table["level_order"] = table.level.map(LEVELS.index)
    table["model_order"] = table.model.map(model_sort_key)
    table = table.sort_values(["level_order", "task_label", "model_order"]).reset_index(drop=True)
    table = table[["model", "variant", "model_label", "task", "task_label", "level", "best_lr", "seeds", "diverged",
                   "val", "test_mean", "test_std", "paper_mean", "paper_std"]]

    tasks = list(dict.fromkeys(table.task_label))
    levels = [table.level[table.task_label == t].iloc[0] for t in tasks]
    models = [label for _, label in sorted({(model_sort_key(m), label) for m, label in zip(table.model,
                                                                                          table.model_label)})]
    lines = [
        f"# Formal languages (Figure 4 / Figure 12), {scale_of(records)} scale",
        "",
        "Rescaled accuracy on the test lengths (0 = random, 1 = perfect), averaged over lengths; learning rate chosen",
        "by validation, mean ± std over seeds (no ± with one seed). In parentheses: the paper's value where it prints one (Figure 12;",
        "Figure 4 shows its values only as colours). Levels: R regular, DCF deterministic context-free, CS",
        "context-sensitive, extra = the paper's own tasks (level not stated).",
        "",
        provenance(records),
        "",
        "| model | " + " | ".join(f"{t} ({_short(lv)})" for t, lv in zip(tasks, levels)) + " |",
        "|---|" + "---|" * len(tasks),
    ]
    for m in models:
        cells = []
        for t in tasks:
            row = table[(table.model_label == m) & (table.task_label == t)]
            cells.append(cell(row.test_mean.iloc[0], row.test_std.iloc[0], row.paper_mean.iloc[0], row.seeds.iloc[0],
                              row.diverged.iloc[0]) if len(row) else "")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if table.diverged.any():
        lines += ["", DIVERGED_NOTE]
    by_length = _by_length(records, table)
    return Artefact(table, "\n".join(lines) + "\n", {
        "table.png": lambda path: _heatmap(table, models, tasks, levels, path),
        "accuracy_by_length.png": lambda path: _length_curves(by_length, path),
    })


def _score(record: dict, split: str) -> float:
    return record["metrics"][split].get("acc_scaled", np.nan) if record["status"] == "finished" else np.nan


def _short(level: str) -> str:
    return {"regular": "R", "deterministic context-free": "DCF", "context-sensitive": "CS"}.get(level, level)


def _by_length(records: list[dict], table: pd.DataFrame) -> pd.DataFrame:
    """Test rescaled accuracy per length for each (model, task) at its selected lr, mean over seeds."""
    best = {(m, v, t): (lr, label) for m, v, t, lr, label in zip(table.model, table.variant, table.task,
                                                                table.best_lr, table.model_label)}
    rows = [{"model": best[key][1], "order": model_sort_key(r["model"]), "task": r["task"],
             "length": int(metric.split("@")[1]), "acc_scaled": value}
            for r, variant in zip(records, variants(records, ["model.name", "task.name"]))
            for key in [(r["model"], variant, r["task"])]
            if r["status"] == "finished" and key in best and best[key][0] == r["lr"]
            for metric, value in r["metrics"]["test"].items() if metric.startswith("acc_scaled@")]
    frame = pd.DataFrame(rows, columns=["model", "order", "task", "length", "acc_scaled"])
    return frame.groupby(["order", "model", "task", "length"], as_index=False).acc_scaled.mean()


def _heatmap(table: pd.DataFrame, models: list[str], tasks: list[str], levels: list[str], path: Path) -> None:
    grid = np.full((len(models), len(tasks)), np.nan)
    for (m, t), value in zip(zip(table.model_label, table.task_label), table.test_mean):
        grid[models.index(m), tasks.index(t)] = value
    fig, ax = plt.subplots(figsize=(max(4.5, 2.0 + 0.9 * len(tasks)), 1.6 + 0.45 * len(models)))
    ax.imshow(np.clip(grid, 0, 1), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for i in range(len(models)):
        for j in range(len(tasks)):
            ax.text(j, i, "–" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(tasks)), tasks, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(models)), models, fontsize=8)
    start = 0  # level groups, labelled above the columns and separated by lines (Figure 4's layout)
    for j in range(1, len(tasks) + 1):
        if j == len(tasks) or levels[j] != levels[start]:
            ax.text((start + j - 1) / 2, -0.7, _short(levels[start]), ha="center", va="bottom", fontsize=8)
            if j < len(tasks):
                ax.axvline(j - 0.5, color="black", linewidth=1)
            start = j
    ax.set_title("Formal languages: rescaled test accuracy", fontsize=10, pad=18)
    save_figure(fig, path)


def _length_curves(by_length: pd.DataFrame, path: Path) -> None:
    tasks = sorted(by_length.task.unique())
    fig, axes = panel_grid(len(tasks), 4, (3.6, 2.8))
    for ax, task in zip(axes, tasks):
        for (_, model), sub in by_length[by_length.task == task].groupby(["order", "model"]):
            ax.plot(sub.length, sub.acc_scaled, marker=".", label=model)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("test length", fontsize=8)
        ax.set_ylabel("rescaled accuracy", fontsize=8)
        ax.set_ylim(-0.15, 1.05)
        ax.legend(fontsize=6)
    save_figure(fig, path)
