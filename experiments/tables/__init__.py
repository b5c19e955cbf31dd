"""How each paper artefact's table and figures are built from run records: ``TABLES``, one module per artefact.

``python -m experiments.tables NAME [--scale S] [--results-dir D]`` rebuilds
results/NAME/<scale>/{table.csv, table.md, *.png} from results/NAME/<scale>/runs, for every scale that has records
(or the one given). The same happens at the end of every multirun (``RebuildTables``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")  # before any pyplot import: tables are drawn headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from hydra.experimental.callback import Callback  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from ..results import (NOT_IN_RUN_ID, ROOT, experiment_dir, finite, launched_as_rank_zero,  # noqa: E402
                       load_records, scales_with_records, write_atomic)

PNG_METADATA = {"Software": None}  # no version string in the PNG: rebuilding the same records gives the same bytes
DIVERGED_NOTE = "† some runs of this cell diverged (NaN/Inf loss or metrics) and ranked below the finished ones."


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


def model_color(label: str) -> tuple:
    """One colour per model in every figure (tab20, 19 registered models): the strong shades go to the models from
    the end of the row order (the xLSTMs, LSTMs and linear-attention RNNs), the light ones to the rest; a label with
    a variant ("xLSTM[1:0] [full]") takes its model's colour."""
    from xlstm import MODELS

    order = [model_label(name) for name in reversed(MODELS)]
    base = label.split(" [")[0]
    i = order.index(base) if base in order else len(order)
    return plt.get_cmap("tab20")(2 * i if i < 10 else 2 * (i - 10) + 1)


def legend_beside(fig: plt.Figure, axes: list) -> None:
    """One legend for all panels, right of them (each label once, in plotting order)."""
    entries = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(list(entries.values()), list(entries), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)


def save_figure(fig: plt.Figure, path: Path) -> None:
    fig.tight_layout()
    # a figure-level legend sits outside the panels: widen the saved area to hold it
    fig.savefig(path, dpi=120, metadata=PNG_METADATA, bbox_inches="tight" if fig.legends else None)
    plt.close(fig)


def commits(record: dict) -> list[str]:
    """The commits that trained a record's weights (a resumed run can have two), "+dirty" where the tree was."""
    segments = record.get("training") or [{"commit": record["git_commit"], "dirty": record.get("git_dirty")}]
    return [s["commit"][:10] + ("+dirty" if s.get("dirty") else "") for s in segments]


def scale_of(records: list[dict]) -> str:
    """The scale a table shows ("small"); records are kept per scale, so there is one."""
    return ", ".join(sorted({r["scale"] for r in records}))


def provenance(records: list[dict]) -> str:
    """One line that labels a table with what produced it: scale, steps, hardware, commits."""
    records = [r for r in records if r["status"] != "infeasible"]

    def joined(key: str) -> str:
        return ", ".join(sorted({str(r[key]) for r in records}))

    trained = sorted({c for r in records for c in commits(r)})
    return (f"{len(records)} runs; scale: {joined('scale')}; steps: {joined('steps')}; "
            f"hardware: {joined('hardware')}; commits: {', '.join(trained)}")


def model_label(name: str) -> str:
    from xlstm import paper_label

    try:
        return paper_label(name)
    except ValueError:
        return name


def model_sort_key(name: str) -> tuple[int, str]:
    """The paper's row order, which is the registry's order."""
    from xlstm import row_order

    return (row_order(name), name)


def _flatten(tree: Any, prefix: str = "") -> dict[str, str]:
    if isinstance(tree, dict):
        out: dict[str, str] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: json.dumps(tree)}


# Left out of a run's setting: what never changes its numbers, the seed (cells average over it) and the learning
# rate with its floor (cells choose it by validation).
NOT_A_SETTING = (*NOT_IN_RUN_ID, "seed", "optim.lr", "optim.min_lr")


def variants(records: list[dict], axes: list[str], searched: tuple[str, ...] = ()) -> list[str]:
    """Per record, the part of its setting that sets it apart within its table cell (records with the same values
    at the config paths ``axes``): "" when the whole cell ran one setting (the normal case), else the keys where
    the cell's settings differ, e.g. "trainer.max_steps=20". A table shows each variant as its own row, so runs of
    different settings are never averaged as seeds of one point. ``searched``: more config paths that a table
    chooses by validation like the learning rate (e.g. ``optim.schedule``)."""
    flat = []
    for r in records:
        setting = _flatten(r["config"])
        for key in (*NOT_A_SETTING, *searched):
            for k in [k for k in setting if k == key or k.startswith(key + ".")]:
                del setting[k]
        flat.append(setting)
    cells: dict[tuple, list[int]] = {}
    for i, setting in enumerate(flat):
        cells.setdefault(tuple(setting.get(a) for a in axes), []).append(i)
    out = [""] * len(records)
    for members in cells.values():
        keys = sorted({k for i in members for k in flat[i]})
        differing = [k for k in keys if len({flat[i].get(k) for i in members}) > 1]
        for i in members:
            out[i] = ", ".join(f"{k}={json.loads(flat[i][k]) if k in flat[i] else None}" for k in differing)
    return out


def best_by_validation(runs: pd.DataFrame, keys: list[str], higher_is_better: bool = True,
                       report: tuple[str, ...] = ("test",)) -> pd.DataFrame:
    """Per group of ``keys``: the lr with the best mean validation score (column ``val``, over seeds), and at that lr
    the mean and std over seeds of each ``report`` column (``test_mean``, ``test_std``, ...). Diverged runs (and
    runs with a NaN/Inf score) count in ``diverged``, and an lr with any diverged seed ranks below every lr whose
    seeds all finished."""
    runs = runs.assign(**{c: runs[c].map(finite) for c in ("val", *report)})
    runs.loc[runs[list(report)].isna().any(axis=1), "val"] = np.nan  # a non-finite reported score: diverged too
    rows = []
    for group, sub in runs.groupby(keys, sort=True, dropna=False):
        stats = {"val": ("val", "mean"), "seeds": ("seed", "nunique"), "finished": ("val", "count")}
        for c in report:
            stats.update({f"{c}_mean": (c, "mean"), f"{c}_std": (c, "std")})
        by_lr = sub.groupby("lr").agg(**stats)
        complete = by_lr[by_lr.finished == by_lr.seeds]
        pool = (complete if len(complete) else by_lr).dropna(subset=["val"])
        row: dict[str, Any] = {"best_lr": np.nan, "val": np.nan, "seeds": 0}
        row.update({f"{c}_{x}": np.nan for c in report for x in ("mean", "std")})
        if len(pool):
            lr = pool.val.idxmax() if higher_is_better else pool.val.idxmin()
            best = pool.loc[lr]
            row = {"best_lr": lr, "val": best.val, "seeds": int(best.finished)}
            for c in report:
                row.update({f"{c}_mean": best[f"{c}_mean"], f"{c}_std": 0.0 if best.seeds == 1 else best[f"{c}_std"]})
        keys_row = dict(zip(keys, group if isinstance(group, tuple) else (group,)))
        rows.append({**keys_row, **row, "diverged": int(sub.val.isna().sum())})
    return pd.DataFrame(rows)


def cell(mean: float, std: float, paper: float | None = None, seeds: int = 2, diverged: int = 0) -> str:
    """"0.52 ± 0.03 (0.11)": ours, the std over seeds (left out for one seed), the paper's value; "†" when runs
    of the cell diverged; "diverged" when no run of it finished with a finite score."""
    if not np.isfinite(mean):
        text = "diverged"
    else:
        text = f"{mean:.2f}" + (f" ± {std:.2f}" if seeds > 1 else "") + (" †" if diverged else "")
    if paper is not None and not np.isnan(paper):
        text += f" ({paper:.2f})"
    return text


def _tables() -> dict[str, Callable[[list[dict], Path], Artefact]]:
    from .ablations import ablation_gates, ablation_lstm_to_xlstm, ablation_mlstm_block
    from .evaluation import eval_downstream, eval_paloma
    from .formal_languages import formal_languages
    from .language_modelling import extrapolation, slimpajama, slimpajama_300b
    from .lra import lra
    from .memory import memory_size, memory_stabilizer, memory_type
    from .speed import speed
    from .mqar import mqar, mqar_extrapolation, mqar_long
    from .state_tracking import ablation_state_tracking, parity_diagnosis

    return {"formal_languages": formal_languages, "mqar": mqar, "mqar_long": mqar_long,
            "mqar_extrapolation": mqar_extrapolation, "slimpajama": slimpajama, "slimpajama_300b": slimpajama_300b,
            "extrapolation": extrapolation, "ablation_lstm_to_xlstm": ablation_lstm_to_xlstm,
            "ablation_gates": ablation_gates, "ablation_mlstm_block": ablation_mlstm_block,
            "memory_size": memory_size, "memory_type": memory_type, "memory_stabilizer": memory_stabilizer,
            "ablation_state_tracking": ablation_state_tracking, "parity_diagnosis": parity_diagnosis, "lra": lra,
            "eval_downstream": eval_downstream, "eval_paloma": eval_paloma, "speed": speed}


def table_builder(experiment: str) -> Callable[[list[dict], Path], Artefact]:
    tables = _tables()
    if experiment not in tables:
        raise ValueError(f"no table is defined for experiment {experiment!r}; valid: {', '.join(tables)}")
    return tables[experiment]


def rebuild(experiment: str, scale: str, results_dir: str | Path = ROOT / "results") -> Path:
    """Rebuild table.csv, table.md and the figures of one experiment at one scale; returns their folder. Every
    file is written through a rename, so processes that rebuild at the same time never leave a torn file."""
    build = table_builder(experiment)
    out = experiment_dir(results_dir, experiment, scale)
    records = load_records(results_dir, experiment, scale)
    if not records:
        raise ValueError(f"no records under {out / 'runs'}; run `python -m experiments.train "
                         f"experiment={experiment} scale={scale}` first")
    artefact = build(records, ROOT / "results" / "paper")
    write_atomic(out / "table.csv", artefact.table.to_csv(index=False, float_format="%.4f"))
    write_atomic(out / "table.md", artefact.markdown)
    for name, draw in artefact.figures.items():
        tmp = out / f".{Path(name).stem}.tmp{os.getpid()}{Path(name).suffix}"
        draw(tmp)
        os.replace(tmp, out / name)
    return out


class RebuildTables(Callback):
    """Hydra callback: rebuild the experiment's table at the run's scale after a multirun (and a single run)."""

    def _rebuild(self, config: DictConfig) -> None:
        experiment = config.get("experiment")
        if not experiment or not launched_as_rank_zero():
            return
        try:
            out = rebuild(experiment, config.scale.name, config.paths.results_dir)
        except ValueError as err:
            print(f"[tables] {err}")
            return
        print(f"[tables] {experiment}: wrote {out / 'table.md'}\n" + (out / "table.md").read_text())

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._rebuild(config)

    def on_run_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._rebuild(config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.tables")
    parser.add_argument("name", help=f"one of: {', '.join(_tables())}")
    parser.add_argument("--scale", default=None, help="smoke, small or paper (default: every scale with records)")
    parser.add_argument("--results-dir", default=str(ROOT / "results"))
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        table_builder(args.name)
        scales = [args.scale] if args.scale else scales_with_records(args.results_dir, args.name)
        if not scales:
            raise ValueError(f"no records under {Path(args.results_dir) / args.name}/<scale>/runs; run "
                             f"`python -m experiments.train experiment={args.name}` first")
        for scale in scales:
            out = rebuild(args.name, scale, args.results_dir)
            print((out / "table.md").read_text())
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
