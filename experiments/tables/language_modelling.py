"""Language modelling: Table 1 (``slimpajama``), Table 3 with Figure 8 (``slimpajama_300b``) and Figure 7
(``extrapolation``), from the run records, beside the paper's numbers.

Every cell is validation perplexity (exp of the mean NLL over the validation tokens) at the learning rate with the
best validation perplexity, mean over seeds; test perplexity, tokens seen, training tokens/s and peak memory are
columns of table.csv. At the small scale the models, corpus and tokenizer differ from the paper's: the paper's
column is there to read the ranking against, not the values.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from xlstm import MODELS

from . import (DIVERGED_NOTE, Artefact, best_by_validation, cell, model_color, model_label,
               model_sort_key, panel_grid, provenance, save_figure, scale_of, variants)

AXES = ["model.name", "model_size"]
EXTRA = ("test_ppl", "tokens_seen", "tokens_per_s", "peak_memory_mb", "params_m")


def variant_row(record: dict) -> str:
    """The ablation row a record ran (``config.variant``'s last part; "" for none)."""
    return (record["config"].get("variant") or "").split("/")[-1]


def run_rows(records: list[dict], eval_key: str = "ppl") -> pd.DataFrame:
    """One row per run: its size, ablation row, parameters, validation perplexity (``val``), test perplexity,
    throughput."""
    rows = []
    for r, variant in zip(records, variants(records, AXES)):
        if r["status"] == "infeasible":
            continue
        finished = r["status"] == "finished"
        val, test = (r["metrics"]["val"], r["metrics"]["test"]) if finished else ({}, {})
        throughput = r.get("throughput") or {}
        rows.append({"model": r["model"], "variant": variant, "row": variant_row(r),
                     "size": r["config"].get("model_size") or "",
                     "lr": r["lr"], "seed": r["seed"], "val": val.get(eval_key, np.nan),
                     "test_ppl": test.get(eval_key, np.nan), "params_m": r["params"] / 1e6,
                     **{k: throughput.get(k, np.nan) for k in ("tokens_seen", "tokens_per_s", "peak_memory_mb")}})
    return pd.DataFrame(rows)


def _best(runs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    table = best_by_validation(runs, keys, higher_is_better=False, report=EXTRA)
    table = table.rename(columns={"val": "val_ppl"})
    table["model_label"] = [model_label(m) + (f" [{v}]" if v else "") for m, v in zip(table.model, table.variant)]
    table["order"] = table.model.map(model_sort_key)
    return table


def _paper(paper_dir: Path, name: str) -> pd.DataFrame:
    path = paper_dir / name
    return pd.read_csv(path) if path.exists() else pd.DataFrame()


def _run_label(record: dict) -> tuple[str, str]:
    """(legend label, colour) of a language-model run: the model, with its size where the grid has several."""
    label, size = model_label(record["model"]), record["config"].get("model_size")
    return label + (f" {size}" if size else ""), model_color(label)


def plot_curves(records: list[dict], path: Path, title: str, label_of=_run_label, sort_key=None) -> None:
    """Validation perplexity against tokens seen, one line per run that has a curve; ``label_of(record)`` gives
    each line's (label, colour)."""
    fig, (ax,) = panel_grid(1, 1, (6.0, 4.0))
    for r in sorted(records, key=sort_key or (lambda r: (model_sort_key(r["model"]), r["params"]))):
        curve = [p for p in r.get("curve") or [] if np.isfinite(p.get("ppl", np.nan))]
        if curve:
            label, color = label_of(r)
            ax.plot([p["tokens"] for p in curve], [p["ppl"] for p in curve], marker=".", color=color, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("validation perplexity")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, ncol=2)
    save_figure(fig, path)


def slimpajama(records: list[dict], paper_dir: Path) -> Artefact:
    """Table 1: one row per model of the paper's table (and per registered model), ours beside the paper's."""
    table = _best(run_rows(records), ["model", "variant"]).sort_values("order").drop(columns="order")
    paper = _paper(paper_dir, "table1_slimpajama15b.csv")
    registered = {model_label(name) for name in MODELS}
    ours_by_label = {label: row for label, row in zip(table.model_label, table.itertuples())}
    labels = list(dict.fromkeys([*paper.get("model", pd.Series(dtype=str)), *table.model_label]))
    lines = [f"# Table 1: language modelling, validation perplexity; {scale_of(records)} scale", "",
             "Validation perplexity (lower is better) at the best learning rate by validation; the paper's",
             "SlimPajama-15B value (350M class, NeurIPS version) in parentheses. Params in millions; the paper's",
             "in parentheses. \"not built\": a paper model not registered in the suite yet; \"not run\": registered,",
             "not in this grid.", "", provenance(records), "",
             "| model | params (M) | val ppl (paper) | test ppl | tokens seen | tokens/s | peak MB |",
             "|---|---|---|---|---|---|---|"]
    for label in labels:
        p = paper[paper.model == label] if len(paper) else paper
        paper_ppl = float(p.val_ppl.iloc[0]) if len(p) else None
        paper_params = f" ({p.params_m.iloc[0]:g})" if len(p) else ""
        row = ours_by_label.get(label)
        if row is None:
            missing = "not run" if label in registered else "not built"
            lines.append(f"| {label} | –{paper_params} | {missing} ({paper_ppl:.2f}) | | | | |")
            continue
        ppl = cell(row.val_ppl, 0.0, paper_ppl, seeds=1, diverged=row.diverged)
        lines.append(f"| {label} | {row.params_m_mean:.2f}{paper_params} | {ppl} | {row.test_ppl_mean:.2f} | "
                     f"{row.tokens_seen_mean:,.0f} | {row.tokens_per_s_mean:,.0f} | {row.peak_memory_mb_mean:,.0f} |")
    if table.diverged.any():
        lines += ["", DIVERGED_NOTE]
    figures = {"curves.png": lambda path: plot_curves(records, path, "Validation perplexity during training")}
    return Artefact(table.reset_index(drop=True), "\n".join(lines) + "\n", figures)


def slimpajama_300b(records: list[dict], paper_dir: Path) -> Artefact:
    """Table 3 and Figure 8: models x sizes; the plot is validation perplexity against parameters."""
    table = _best(run_rows(records), ["model", "variant", "size"])
    table = table.sort_values(["order", "params_m_mean"]).drop(columns="order").reset_index(drop=True)
    paper = _paper(paper_dir, "table3_slimpajama300b.csv")
    sizes = list(dict.fromkeys(table.sort_values("params_m_mean")["size"]))
    lines = [f"# Table 3 / Figure 8: validation perplexity across model sizes; {scale_of(records)} scale", "",
             "Validation perplexity (lower is better) at the best learning rate by validation, parameters in millions",
             "in brackets; the paper's SlimPajama-300B perplexity in parentheses where the size is one of the",
             "paper's.", "", provenance(records), "",
             "| model | " + " | ".join(sizes) + " |", "|---|" + "---|" * len(sizes)]
    for label in dict.fromkeys(table.model_label):
        cells = []
        for size in sizes:
            row = table[(table.model_label == label) & (table["size"] == size)]
            p = paper[(paper["size"] == size) & (paper.model == label)] if len(paper) else paper
            if not len(row):
                cells.append("")
                continue
            r = row.iloc[0]
            ppl = cell(r.val_ppl, 0.0, float(p.slimpajama_ppl.iloc[0]) if len(p) else None, seeds=1,
                       diverged=r.diverged)
            cells.append(f"{ppl} [{r.params_m_mean:.2f}M]")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if len(paper) and not set(sizes) & set(paper["size"]):
        paper_sizes = list(dict.fromkeys(paper["size"]))
        lines += ["", "The paper (Table 3, 300B tokens), validation perplexity [params]:", "",
                  "| model | " + " | ".join(paper_sizes) + " |", "|---|" + "---|" * len(paper_sizes)]
        for label in dict.fromkeys(paper.model):
            sub = paper[paper.model == label].set_index("size")
            lines.append(f"| {label} | " + " | ".join(f"{sub.slimpajama_ppl[s]:.2f} [{sub.params_m[s]:g}M]"
                                                    for s in paper_sizes) + " |")
    if table.diverged.any():
        lines += ["", DIVERGED_NOTE]
    figures = {"scaling.png": lambda path: _scaling_plot(table, paper, scale_of(records), path),
               "curves.png": lambda path: plot_curves(records, path, "Validation perplexity during training")}
    return Artefact(table, "\n".join(lines) + "\n", figures)


def _scaling_plot(table: pd.DataFrame, paper: pd.DataFrame, scale: str, path: Path) -> None:
    fig, axes = panel_grid(2 if len(paper) else 1, 2, (4.8, 3.6))
    panels = [(axes[0], table.rename(columns={"val_ppl": "ppl", "params_m_mean": "params"}), f"ours ({scale})")]
    if len(paper):
        panels.append((axes[1], paper.rename(columns={"slimpajama_ppl": "ppl", "params_m": "params",
                                                      "model": "model_label"}), "paper (Table 3, 300B tokens)"))
    for ax, data, title in panels:
        for label in dict.fromkeys(data.model_label):
            line = data[data.model_label == label].sort_values("params")
            ax.plot(line.params, line.ppl, marker="o", label=label, color=model_color(label))
        ax.set_xscale("log")
        ax.set_xlabel("parameters (M)")
        ax.set_ylabel("validation perplexity")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    save_figure(fig, path)


def extrapolation(records: list[dict], paper_dir: Path) -> Artefact:
    """Figure 7: validation perplexity at 1x..8x the training context; n/a where a model cannot read the length."""
    finished = [r for r in records if r["status"] != "infeasible"]
    lengths = sorted({n for r in finished for n in [r["config"]["task"]["context_length"],
                                                      *r["config"]["task"]["eval_context_lengths"]]})
    train = sorted({r["config"]["task"]["context_length"] for r in finished})
    per_length = []
    for length in lengths:
        runs = run_rows(records, f"ppl@{length}").assign(length=length)
        choose = run_rows(records, f"ppl@{train[0]}")["val"] if train else runs["val"]
        per_length.append(runs.assign(val=choose, ppl=runs["val"]))  # lr chosen at the training context
    runs = pd.concat(per_length, ignore_index=True)
    table = best_by_validation(runs, ["model", "variant", "length"], higher_is_better=False,
                               report=("ppl", "params_m"))
    table["model_label"] = [model_label(m) + (f" [{v}]" if v else "") for m, v in zip(table.model, table.variant)]
    table["order"] = table.model.map(model_sort_key)
    table = table.sort_values(["order", "length"]).drop(columns="order").reset_index(drop=True)
    lines = [f"# Figure 7: length extrapolation; {scale_of(records)} scale", "",
             f"Trained at context {', '.join(map(str, train))}; validation perplexity at each evaluation length on the",
             "same number of validation tokens per length (lower is better). n/a: the model cannot read sequences",
             "that long (GPT-3's learned positions end at its training context). The paper shows Figure 7 only as a",
             "plot (1.3B models trained at 2048, evaluated up to 16,384): no paper number stands beside ours.", "",
             provenance(records), "",
             "| model | " + " | ".join(f"{n}" for n in lengths) + " |", "|---|" + "---|" * len(lengths)]
    for label in dict.fromkeys(table.model_label):
        cells = []
        for length in lengths:
            row = table[(table.model_label == label) & (table.length == length)]
            value = row.ppl_mean.iloc[0] if len(row) else np.nan
            cells.append(f"{value:.2f}" if np.isfinite(value) else "n/a")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    figure = {"extrapolation.png": lambda path: _extrapolation_plot(table, finished, lengths, path)}
    return Artefact(table, "\n".join(lines) + "\n", figure)


def _extrapolation_plot(table: pd.DataFrame, records: list[dict], lengths: list[int], path: Path) -> None:
    """Left: perplexity against evaluation length. Right: mean NLL per position bucket at the longest length."""
    fig, (left, right) = panel_grid(2, 2, (4.8, 3.6))
    for label in dict.fromkeys(table.model_label):
        line = table[table.model_label == label].sort_values("length")
        left.plot(line.length, line.ppl_mean, marker="o", label=label, color=model_color(label))
    longest = lengths[-1]
    for r in sorted(records, key=lambda r: model_sort_key(r["model"])):
        if r["status"] != "finished":
            continue
        buckets = sorted((int(k.split("/pos")[1]), v) for k, v in r["metrics"]["val"].items()
                         if k.startswith(f"nll@{longest}/pos"))
        if buckets:
            right.plot([b for b, _ in buckets], [v for _, v in buckets], marker=".", label=model_label(r["model"]),
                       color=model_color(model_label(r["model"])))
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=7)
    left.set_yscale("log")
    left.set_xlabel("evaluation context")
    left.set_ylabel("validation perplexity")
    right.set_xlabel(f"position (bucket start) at context {longest}")
    right.set_ylabel("mean NLL in bucket")
    save_figure(fig, path)
