"""Speed (``experiment=speed``): Figure 9's generation time against length and decoding throughput against batch
size, and training throughput against context, from the speed records (one per model and measurement).

The paper gives Figure 9's values only as plots, so there is no paper column; the README compares the shapes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import Artefact, model_color, model_label, model_sort_key, panel_grid, provenance, save_figure, scale_of

# measure -> (x key, value key, value header, figure title)
MEASURES = {"generation": ("length", "seconds", "seconds to generate (batch 1)", "Generation time"),
            "decoding": ("batch", "tokens_per_s", "decoding tokens/s", "Decoding throughput"),
            "training": ("context", "tokens_per_s", "training tokens/s (fwd+bwd+AdamW)", "Training throughput")}


def newest_per_measure(records: list[dict]) -> list[dict]:
    """One record per model and measurement, the last finished: a changed ``speed`` setting gives a measurement a new
    run id, and the record it replaces stays in runs/ (shown by neither the table nor its provenance line)."""
    newest: dict[tuple[str, str], dict] = {}
    for r in sorted(records, key=lambda r: r.get("finished_at") or ""):
        newest[(r["model"], r["config"]["speed"]["measure"])] = r
    return list(newest.values())


def points(records: list[dict]) -> pd.DataFrame:
    rows = []
    for r in records:
        measure = r["config"]["speed"]["measure"]
        x_key, value_key, _, _ = MEASURES[measure]
        for p in r["metrics"].get("points", []):
            rows.append({"model": r["model"], "model_label": model_label(r["model"]), "measure": measure,
                         "x": p[x_key], "value": p.get(value_key, np.nan), "state_mb": p.get("state_mb", np.nan),
                         "peak_mb": p.get("peak_mb") if p.get("peak_mb") is not None else np.nan, "status": p["status"],
                         "params_m": r["params"] / 1e6, "order": model_sort_key(r["model"])})
    return pd.DataFrame(rows)


def _cell(row: pd.Series, measure: str) -> str:
    if row.status == "oom":
        return "OOM"
    value = f"{row.value:.2f}" if measure == "generation" else f"{row.value:,.0f}"
    return value + (f" [{row.state_mb:.1f} MB]" if measure != "training" and np.isfinite(row.state_mb) else "")


def _figure(table: pd.DataFrame, path: Path) -> None:
    measures = [m for m in MEASURES if m in set(table.measure)]
    fig, axes = panel_grid(len(measures), 3, (4.2, 3.4))
    for ax, measure in zip(axes, measures):
        x_key, _, header, title = MEASURES[measure]
        sub = table[(table.measure == measure) & (table.status == "ok")]
        for label in dict.fromkeys(sub.sort_values("order").model_label):
            line = sub[sub.model_label == label].sort_values("x")
            ax.plot(line.x, line.value, marker="o", label=label, color=model_color(label))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(x_key)
        ax.set_ylabel(header, fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=6)
    save_figure(fig, path)


def speed(records: list[dict], paper_dir: Path) -> Artefact:
    records = newest_per_measure(records)
    table = points(records).sort_values(["measure", "order", "x"]).reset_index(drop=True)
    lines = [f"# Figure 9 and training throughput: speed; {scale_of(records)} scale", "",
             "Random weights and tokens. Generation: seconds from the prompt to each generated length (batch 1,",
             "greedy, through the model's recurrent step or KV cache). Decoding: tokens/s at each batch size.",
             "Training: tokens/s of full optimizer steps at a fixed number of tokens per step. In brackets: the",
             "decoding state's size at that point (KV cache or recurrent state). OOM: out of memory (recorded).", "",
             provenance(records), ""]
    for measure, (x_key, _, header, title) in MEASURES.items():
        sub = table[table.measure == measure]
        if not len(sub):
            continue
        xs = sorted(set(sub.x))
        lines += [f"## {title}: {header}", "", "| model | params (M) | " + " | ".join(f"{x_key} {x}" for x in xs)
                  + " |", "|---|---|" + "---|" * len(xs)]
        for label in dict.fromkeys(sub.model_label):
            rows = sub[sub.model_label == label].set_index("x")
            cells = [_cell(rows.loc[x], measure) if x in rows.index else "" for x in xs]
            lines.append(f"| {label} | {rows.params_m.iloc[0]:.2f} | " + " | ".join(cells) + " |")
        lines.append("")
    figures = {"speed.png": lambda path: _figure(table, path)}
    return Artefact(table.drop(columns="order"), "\n".join(lines), figures)
