"""Ablations on language modelling: Table 2 top (``ablation_lstm_to_xlstm``), Table 2 bottom (``ablation_gates``) and
Table 8 (``ablation_mlstm_block``). One row per variant (``configs/variant/<experiment>/``), in the paper's row order,
with our parameter count and validation perplexity beside the paper's; the figure is the validation curves of the
variants side by side. A run that diverged shows "diverged", never a number.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from . import Artefact, best_by_validation, cell, provenance, scale_of
from .language_modelling import plot_curves, run_rows, variant_row

# variant -> its row in the paper's CSV (same order)
ROWS = {
    "ablation_lstm_to_xlstm": ("table2_ablation_lstm_to_xlstm.csv", "modification",
                               ["vanilla_lstm", "resnet_backbone", "post_up_backbone", "exp_gating", "matrix_memory"]),
    "ablation_gates": ("table2_ablation_gates.csv", "variant",
                       ["no_gates_inf", "no_gates", "forget_gate", "input_gate", "forget_bias", "forget_input_bias",
                        "forget_gate_input_bias", "full"]),
    "ablation_mlstm_block": ("table8_mlstm_block_variants.csv", "variant", ["post_up", "pre_up_no_conv", "pre_up"]),
}
TITLES = {
    "ablation_lstm_to_xlstm": "Table 2 (top): from LSTM to xLSTM",
    "ablation_gates": "Table 2 (bottom): mLSTM gate ablations on xLSTM[1:0]",
    "ablation_mlstm_block": "Table 8: mLSTM block variants",
}
GATE_COLUMNS = ["fg_input_dependent", "fg_learnable_bias", "fg_bias_init", "ig_input_dependent", "ig_learnable_bias",
                "ig_bias_init"]


def ablation_table(records: list[dict], paper_dir: Path, experiment: str) -> Artefact:
    csv_name, label_column, order = ROWS[experiment]
    paper = pd.read_csv(paper_dir / csv_name).rename(columns={label_column: "row_label"})
    paper["variant_key"] = order[:len(paper)]
    runs = run_rows(records).assign(variant=lambda runs: runs.row)
    # params and tokens/s are properties of the run, not scores: a diverged run still has them
    table = best_by_validation(runs, ["variant"], higher_is_better=False, report=("test_ppl",))
    extra = runs.groupby("variant")[["params_m", "tokens_per_s", "model"]].first()
    table = table.join(extra, on="variant")
    table = table.merge(paper.rename(columns={"params_m": "paper_params_m", "val_ppl": "paper_val_ppl"}),
                        left_on="variant", right_on="variant_key", how="left")
    table["order"] = table.variant.map(lambda v: order.index(v) if v in order else len(order))
    table = table.sort_values("order").drop(columns=["order", "variant_key"]).reset_index(drop=True)
    gates = experiment == "ablation_gates"
    header = "| row | " + ("forget gate (input / learnable / init) | input gate (input / learnable / init) | "
                         if gates else "") + "params (M) (paper) | val ppl (paper) | test ppl |"
    lines = [f"# {TITLES[experiment]}; {scale_of(records)} scale", "",
             "Validation perplexity (lower is better) at the best learning rate by validation, the paper's",
             "SlimPajama-15B value at 350M in parentheses; parameters in millions (the paper's at 350M). At the small",
             "scale read the ordering of the rows, not the values.", "", provenance(records), "", header,
             "|---|" + ("---|---|" if gates else "") + "---|---|---|"]
    seen = set(table.variant)
    for _, p in paper.iterrows():
        key = p.variant_key
        label = p.row_label
        switches = (f"{p.fg_input_dependent} / {p.fg_learnable_bias} / {p.fg_bias_init} | "
                    f"{p.ig_input_dependent} / {p.ig_learnable_bias} / {p.ig_bias_init} | " if gates else "")
        paper_ppl = float(p.val_ppl)
        paper_text = f"({paper_ppl:.2f})" if np.isfinite(paper_ppl) else "(NaN)"
        paper_params = f" ({p.params_m:g})" if "params_m" in p and np.isfinite(p.params_m) else ""
        if key not in seen:
            lines.append(f"| {label} | {switches}–{paper_params} | not run {paper_text} | |")
            continue
        row = table[table.variant == key].iloc[0]
        ppl = cell(row.val, 0.0, seeds=1, diverged=row.diverged) + f" {paper_text}"
        test = f"{row.test_ppl_mean:.2f}" if np.isfinite(row.test_ppl_mean) else "diverged"
        lines.append(f"| {label} | {switches}{row.params_m:.2f}{paper_params} | {ppl} | {test} |")
    figure = {"curves.png": lambda path: _curves(records, order, path, TITLES[experiment])}
    return Artefact(table, "\n".join(lines) + "\n", figure)


def _curves(records: list[dict], order: list[str], path: Path, title: str) -> None:
    def place(r: dict) -> int:
        return order.index(variant_row(r)) if variant_row(r) in order else len(order)

    plot_curves(records, path, title, label_of=lambda r: (variant_row(r), f"C{place(r) % 10}"), sort_key=place)


ablation_lstm_to_xlstm = partial(ablation_table, experiment="ablation_lstm_to_xlstm")
ablation_gates = partial(ablation_table, experiment="ablation_gates")
ablation_mlstm_block = partial(ablation_table, experiment="ablation_mlstm_block")
