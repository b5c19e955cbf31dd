"""Evaluation of trained language models (``python -m experiments.eval``): Table 3's downstream columns
(``eval_downstream``) and Table 4/9's PALOMA perplexities (``eval_paloma``), one row per evaluation record, with
the paper's table beside ours.

Our rows are labelled with the data they read (``data_label``): at the small scale that is fixtures or the local
corpus, which shows the pipeline end to end and how the small models rank, not the paper's values.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import Artefact, model_color, model_label, model_sort_key, panel_grid, provenance, save_figure, scale_of
from .language_modelling import _paper

DOWNSTREAM = (("lambada_openai", "perplexity", "lambada_ppl", "LAMBADA ppl"),
              ("lambada_openai", "acc", "lambada_acc", "LAMBADA acc"),
              ("hellaswag", "acc_norm", "hellaswag_acc_norm", "HellaSwag acc_norm"),
              ("piqa", "acc", "piqa_acc", "PIQA acc"), ("arc_easy", "acc", "arc_e_acc", "ARC-E acc"),
              ("arc_challenge", "acc_norm", "arc_c_acc_norm", "ARC-C acc_norm"),
              ("winogrande", "acc", "winogrande_acc", "WinoGrande acc"))
ACCURACIES = [column for _, metric, column, _ in DOWNSTREAM if metric != "perplexity"]


def _eval_commits(records: list[dict]) -> str:
    return ", ".join(sorted({r["git_commit"][:10] + ("+dirty" if r.get("git_dirty") else "") for r in records}))


def _base_row(r: dict) -> dict:
    return {"model": r["model"], "model_label": model_label(r["model"]), "size": r["config"].get("model_size") or "",
            "params_m": (r.get("params") or 0) / 1e6, "data": r.get("data_label") or "", "trained_run": r["trained_run"],
            "eval_id": r["run_id"], "order": model_sort_key(r["model"])}


def _fmt(value: float, digits: int = 2) -> str:
    return "–" if not np.isfinite(value) else f"{value:.{digits}f}"


def _our_rows(table: pd.DataFrame, columns: list[str]) -> list[str]:
    return [f"| {row['model_label']} | {row['params_m']:.2f} | {row['data']} | "
            + " | ".join(_fmt(row[c]) for c in columns) + " |" for row in table.to_dict("records")]


def _paper_block(paper: pd.DataFrame, columns: list[tuple[str, str]], title: str) -> list[str]:
    if not len(paper):
        return []
    lines = ["", title, "", "| size | model | " + " | ".join(h for _, h in columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for row in paper.to_dict("records"):
        lines.append(f"| {row['size']} | {row['model']} | " + " | ".join(_fmt(row[c]) for c, _ in columns) + " |")
    return lines


def _bars(table: pd.DataFrame, columns: list[str], titles: list[str], path: Path, log: bool = False) -> None:
    fig, axes = panel_grid(len(columns), 4, (3.2, 2.8))
    for ax, column, title in zip(axes, columns, titles):
        labels = [f"{m}\n{d}" if d else m for m, d in zip(table.model_label, table.data)]
        ax.bar(range(len(table)), table[column], color=[model_color(m) for m in table.model_label])
        ax.set_xticks(range(len(table)), labels, rotation=90, fontsize=6)
        ax.set_title(title, fontsize=8)
        if log:
            ax.set_yscale("log")
    save_figure(fig, path)


def eval_downstream(records: list[dict], paper_dir: Path) -> Artefact:
    rows = []
    for r in records:
        row = _base_row(r)
        for task, metric, column, _ in DOWNSTREAM:
            value = r["metrics"].get(task, {}).get(metric, np.nan)
            row[column] = value * 100 if metric != "perplexity" else value  # accuracies in %, as the paper
        row["avg_acc"] = np.mean([row[c] for c in ACCURACIES]) if all(np.isfinite(row[c]) for c in ACCURACIES) \
            else np.nan
        row["items"] = ", ".join(f"{t} {m.get('samples', '?')}" for t, m in r["metrics"].items())
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["order", "data"]).drop(columns="order").reset_index(drop=True)
    columns = [(c, h) for _, _, c, h in DOWNSTREAM] + [("avg_acc", "avg acc")]
    lines = [f"# Table 3 (downstream): lm-evaluation-harness, zero-shot; {scale_of(records)} scale", "",
             "Accuracies in %, LAMBADA perplexity (lower is better); avg acc is the mean of the six accuracies, as in",
             "the paper. \"data\" names what the tasks read; items per task are in table.csv.", "",
             f"{provenance(records)}; evaluated at: {_eval_commits(records)}", "",
             "| model | params (M) | data | " + " | ".join(h for _, h in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    lines += _our_rows(table, [c for c, _ in columns])
    paper = _paper(paper_dir, "table3_slimpajama300b.csv")
    lines += _paper_block(paper, columns, "The paper (Table 3, 300B tokens):")
    figures = {"downstream.png": lambda path: _bars(table, [c for c, _ in columns], [h for _, h in columns], path)}
    return Artefact(table, "\n".join(lines) + "\n", figures)


def eval_paloma(records: list[dict], paper_dir: Path) -> Artefact:
    from experiments.eval.paloma import AVERAGED, SOURCES

    known = [c for c, _ in SOURCES]
    present = {s for r in records for s in r["metrics"]}
    sources = [c for c in known if c in present] + sorted(present - set(known))
    rows = []
    for r in records:
        row = _base_row(r)
        for s in sources:
            row[s] = r["metrics"].get(s, {}).get("ppl", np.nan)
            row[f"{s}_tokens"] = r["metrics"].get(s, {}).get("tokens", 0)
        row["average_12"] = np.mean([row[s] for s in AVERAGED]) if all(
            np.isfinite(row.get(s, np.nan)) for s in AVERAGED) else np.nan
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["order", "data"]).drop(columns="order").reset_index(drop=True)
    shown = sources + (["average_12"] if table.average_12.notna().any() else [])
    lines = [f"# Table 4 / Table 9 (PALOMA): token perplexity per source; {scale_of(records)} scale", "",
             "exp(total NLL / total tokens) per source over its validation documents, in disjoint windows of the",
             "trained context (the last window filled with earlier tokens); average_12 is the mean of Table 4's 12",
             "sources, shown when all were evaluated. Tokens scored per source are in table.csv.", "",
             f"{provenance(records)}; evaluated at: {_eval_commits(records)}", "",
             "| model | params (M) | data | " + " | ".join(shown) + " |", "|---|---|---|" + "---|" * len(shown)]
    lines += _our_rows(table, shown)
    paper = _paper(paper_dir, "table4_paloma.csv")
    lines += _paper_block(paper, [(c, c) for c in [*known[:12], "average_12", *known[12:]]],
                          "The paper (Table 4 and Table 9, 300B tokens):")
    figures = {"paloma.png": lambda path: _bars(table, shown, shown, path, log=True)}
    return Artefact(table, "\n".join(lines) + "\n", figures)
