"""How each paper artefact's table and figures are built from run records (``TABLES``).

``python -m experiments.tables NAME`` rebuilds results/NAME/{table.csv, table.md, *.png} from results/NAME/runs.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PNG_METADATA = {"Software": None}  # no version string in the PNG: rebuilding the same records gives the same bytes


@dataclass
class Artefact:
    table: pd.DataFrame
    markdown: str
    figures: dict[str, Callable[[Path], None]] = field(default_factory=dict)


def provenance(records: list[dict]) -> str:
    """One line that labels a table with what produced it: scales, steps, hardware, commits."""
    def joined(key: str) -> str:
        return ", ".join(sorted({str(r[key]) for r in records}))

    commits = sorted({r["git_commit"][:10] + ("+dirty" if r.get("git_dirty") else "") for r in records})
    return (f"{len(records)} runs; scale: {joined('scale')}; steps: {joined('steps')}; "
            f"hardware: {joined('hardware')}; commits: {', '.join(commits)}")


def model_label(name: str) -> str:
    from xlstm import MODELS, paper_label

    return paper_label(name) if name in MODELS else name


def best_by_validation(runs: pd.DataFrame, keys: list[str], higher_is_better: bool = True) -> pd.DataFrame:
    """Per group of ``keys``: the lr with the best mean validation score (over seeds), and at that lr the test
    mean and std over seeds. ``runs`` has columns keys + [lr, seed, val, test]; diverged runs have NaN scores,
    and an lr with any diverged seed ranks below every lr whose seeds all finished."""
    rows = []
    for group, sub in runs.groupby(keys, sort=True):
        by_lr = sub.groupby("lr").agg(val=("val", "mean"), test_mean=("test", "mean"), test_std=("test", "std"),
                                      seeds=("seed", "nunique"), finished=("val", "count"))
        complete = by_lr[by_lr.finished == by_lr.seeds]
        pool = complete if len(complete) else by_lr
        pool = pool.dropna(subset=["val"])
        if len(pool):
            lr = pool.val.idxmax() if higher_is_better else pool.val.idxmin()
            best = pool.loc[lr]
            row = dict(best_lr=lr, val=best.val, test_mean=best.test_mean,
                       test_std=0.0 if best.seeds == 1 else best.test_std, seeds=int(best.finished))
        else:
            row = dict(best_lr=np.nan, val=np.nan, test_mean=np.nan, test_std=np.nan, seeds=0)
        rows.append({**dict(zip(keys, group if isinstance(group, tuple) else (group,))), **row})
    return pd.DataFrame(rows)


def _cell(mean: float, std: float, paper: float | None = None) -> str:
    text = "diverged" if np.isnan(mean) else f"{mean:.2f} ± {std:.2f}"
    if paper is not None and not np.isnan(paper):
        text += f" ({paper:.2f})"
    return text


# ---------------------------------------------------------------------------------------------------------------
# formal_languages: Figure 4 (heat map) and Figure 12 (supplementary table)


def formal_languages(records: list[dict], paper_dir: Path) -> Artefact:
    from tasks.formal import LANGUAGES

    runs = pd.DataFrame([{
        "model": r["model"], "task": r["task"], "lr": r["lr"], "seed": r["seed"],
        "val": r["metrics"]["val"]["acc_scaled"] if r["status"] == "finished" else np.nan,
        "test": r["metrics"]["test"]["acc_scaled"] if r["status"] == "finished" else np.nan,
    } for r in records])
    table = best_by_validation(runs, ["model", "task"])
    levels = ["regular", "deterministic context-free", "context-sensitive"]
    table["level"] = [LANGUAGES[t].level if t in LANGUAGES else "" for t in table.task]
    table["model_label"] = table.model.map(model_label)
    table["task_label"] = [LANGUAGES[t].paper_name if t in LANGUAGES else t for t in table.task]

    paper = pd.read_csv(paper_dir / "fig12_formal_supplementary.csv")
    paper_lookup = {(m, t): (a, s) for m, t, a, s in
                    zip(paper.model, paper.task, paper.scaled_acc_mean, paper.scaled_acc_std)}
    table["paper_mean"] = [paper_lookup.get((m, t), (np.nan, np.nan))[0]
                           for m, t in zip(table.model_label, table.task_label)]
    table["paper_std"] = [paper_lookup.get((m, t), (np.nan, np.nan))[1]
                          for m, t in zip(table.model_label, table.task_label)]
    table["level_order"] = table.level.map({lv: i for i, lv in enumerate(levels)})
    table = table.sort_values(["level_order", "task", "model"]).drop(columns="level_order").reset_index(drop=True)
    table = table[["model", "model_label", "task", "task_label", "level", "best_lr", "seeds", "val", "test_mean",
                   "test_std", "paper_mean", "paper_std"]]

    tasks_order = list(dict.fromkeys(table.task_label))
    models_order = list(dict.fromkeys(table.sort_values("model").model_label))
    lines = [
        "# Formal languages (Figure 4 / Figure 12)",
        "",
        "Rescaled accuracy on test lengths (0 = random, 1 = perfect), mean over test lengths; best learning rate by",
        "validation, mean ± std over seeds. In parentheses: the paper's value where it gives one as a number (Figure 12;",
        "Figure 4 gives its values only as a heat map).",
        "",
        provenance(records),
        "",
        "| model | " + " | ".join(tasks_order) + " |",
        "|---|" + "---|" * len(tasks_order),
    ]
    for m in models_order:
        cells = []
        for t in tasks_order:
            row = table[(table.model_label == m) & (table.task_label == t)]
            cells.append(_cell(row.test_mean.iloc[0], row.test_std.iloc[0], row.paper_mean.iloc[0]) if len(row) else "")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    markdown = "\n".join(lines) + "\n"

    by_length = _formal_by_length(records, table)
    return Artefact(table, markdown, {
        "table.png": lambda path: _heatmap(table, models_order, tasks_order, path),
        "accuracy_by_length.png": lambda path: _length_curves(by_length, path),
    })


def _formal_by_length(records: list[dict], table: pd.DataFrame) -> pd.DataFrame:
    """Test rescaled accuracy per length for each (model, task) at its selected lr, mean over seeds."""
    best = {(m, t): lr for m, t, lr in zip(table.model, table.task, table.best_lr)}
    rows = []
    for r in records:
        if r["status"] != "finished" or best.get((r["model"], r["task"])) != r["lr"]:
            continue
        for key, value in r["metrics"]["test"].items():
            if key.startswith("acc_scaled@"):
                rows.append({"model": model_label(r["model"]), "task": r["task"], "length": int(key.split("@")[1]),
                             "acc_scaled": value})
    frame = pd.DataFrame(rows, columns=["model", "task", "length", "acc_scaled"])
    return frame.groupby(["model", "task", "length"], as_index=False).acc_scaled.mean()


def _heatmap(table: pd.DataFrame, models: list[str], tasks_order: list[str], path: Path) -> None:
    grid = np.full((len(models), len(tasks_order)), np.nan)
    for i, m in enumerate(models):
        for j, t in enumerate(tasks_order):
            row = table[(table.model_label == m) & (table.task_label == t)]
            if len(row):
                grid[i, j] = row.test_mean.iloc[0]
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 + 1.1 * len(tasks_order)), 1.2 + 0.5 * len(models)))
    ax.imshow(np.clip(grid, 0, 1), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    for i in range(len(models)):
        for j in range(len(tasks_order)):
            ax.text(j, i, "–" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(tasks_order)), tasks_order, rotation=45, ha="right")
    ax.set_yticks(range(len(models)), models)
    ax.set_title("Formal languages: rescaled test accuracy", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata=PNG_METADATA)
    plt.close(fig)


def _length_curves(by_length: pd.DataFrame, path: Path) -> None:
    task_names = sorted(by_length.task.unique())
    fig, axes = plt.subplots(1, max(1, len(task_names)), figsize=(4 * max(1, len(task_names)), 3), squeeze=False)
    for ax, task in zip(axes[0], task_names):
        for model, sub in by_length[by_length.task == task].groupby("model"):
            ax.plot(sub.length, sub.acc_scaled, marker=".", label=model)
        ax.set_title(task)
        ax.set_xlabel("test length")
        ax.set_ylabel("rescaled accuracy")
        ax.set_ylim(-0.1, 1.05)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata=PNG_METADATA)
    plt.close(fig)


TABLES: dict[str, Callable[[list[dict], Path], Artefact]] = {
    "formal_languages": formal_languages,
}


def table_builder(experiment: str) -> Callable[[list[dict], Path], Artefact]:
    if experiment not in TABLES:
        raise ValueError(f"no table is defined for experiment {experiment!r}; valid: {', '.join(TABLES)}")
    return TABLES[experiment]


def main(argv: list[str] | None = None) -> int:
    from .results import ROOT, rebuild

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (1, 2):
        print("usage: python -m experiments.tables NAME [RESULTS_DIR]", file=sys.stderr)
        return 2
    try:
        out = rebuild(argv[0], argv[1] if len(argv) == 2 else ROOT / "results")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print((out / "table.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
