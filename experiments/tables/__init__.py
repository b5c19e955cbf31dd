"""How each paper artefact's table and figures are built from run records: ``TABLES``, one module per artefact.

``python -m experiments.tables NAME`` rebuilds results/NAME/{table.csv, table.md, *.png} from results/NAME/runs.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")  # before any pyplot import: tables are drawn headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PNG_METADATA = {"Software": None}  # no version string in the PNG: rebuilding the same records gives the same bytes


@dataclass
class Artefact:
    table: pd.DataFrame
    markdown: str
    figures: dict[str, Callable[[Path], None]] = field(default_factory=dict)


def panel_grid(count: int, cols: int, size: tuple[float, float]) -> tuple[plt.Figure, list]:
    """A figure with ``count`` panels, ``cols`` per row (unused cells hidden)."""
    cols = min(cols, max(1, count))
    rows = -(-max(1, count) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    for ax in list(axes.flat)[count:]:
        ax.axis("off")
    return fig, list(axes.flat)[:count]


def save_figure(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120, metadata=PNG_METADATA)
    plt.close(fig)


def provenance(records: list[dict]) -> str:
    """One line that labels a table with what produced it: scales, steps, hardware, commits."""
    records = [r for r in records if r["status"] != "infeasible"]

    def joined(key: str) -> str:
        return ", ".join(sorted({str(r[key]) for r in records}))

    commits = sorted({r["git_commit"][:10] + ("+dirty" if r.get("git_dirty") else "") for r in records})
    return (f"{len(records)} runs; scale: {joined('scale')}; steps: {joined('steps')}; "
            f"hardware: {joined('hardware')}; commits: {', '.join(commits)}")


# Row order of the paper's figures: Transformers and SSMs, RNN baselines, then the xLSTMs.
MODEL_ORDER = ["llama", "gpt3", "mamba", "mamba_nowt", "rwkv4", "lstm_block", "lstm", "xlstm[0:1]", "xlstm[1:0]",
               "xlstm[1:1]", "xlstm[7:1]"]


def model_label(name: str) -> str:
    from xlstm import MODELS, paper_label

    return paper_label(name) if name in MODELS else name


def model_sort_key(name: str) -> tuple[int, str]:
    return (MODEL_ORDER.index(name) if name in MODEL_ORDER else len(MODEL_ORDER), name)


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


def cell(mean: float, std: float, paper: float | None = None, seeds: int = 2) -> str:
    """"0.52 ± 0.03 (0.11)": ours, the std over seeds (left out for one seed), the paper's value."""
    text = "diverged" if np.isnan(mean) else f"{mean:.2f}" + (f" ± {std:.2f}" if seeds > 1 else "")
    if paper is not None and not np.isnan(paper):
        text += f" ({paper:.2f})"
    return text


def _tables() -> dict[str, Callable[[list[dict], Path], Artefact]]:
    from .formal_languages import formal_languages
    from .mqar import mqar, mqar_extrapolation, mqar_long

    return {"formal_languages": formal_languages, "mqar": mqar, "mqar_long": mqar_long,
            "mqar_extrapolation": mqar_extrapolation}


def table_builder(experiment: str) -> Callable[[list[dict], Path], Artefact]:
    tables = _tables()
    if experiment not in tables:
        raise ValueError(f"no table is defined for experiment {experiment!r}; valid: {', '.join(tables)}")
    return tables[experiment]


def main(argv: list[str] | None = None) -> int:
    from ..results import ROOT, rebuild

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

