"""Table 3's six downstream tasks as lm-evaluation-harness tasks on local JSONL files (zero-shot, as the paper).

Each task reads ``<eval data dir>/<task>.jsonl``: the rows of the upstream Hugging Face split, unchanged
(``python -m experiments.eval.export --out DIR`` writes them where the hub is reachable). The prompts follow the
harness's own definitions of these tasks, so the numbers are comparable with the paper's:

| task | upstream rows (split) | prompt -> scored continuation | paper's metric |
|---|---|---|---|
| lambada_openai | EleutherAI/lambada_openai (test) | passage without its last word -> " " + last word | ppl, acc |
| hellaswag | Rowan/hellaswag (validation) | "activity: ctx_a Ctx_b" -> " " + ending (4) | acc_norm |
| piqa | baber/piqa (validation) | "Question: goal\\nAnswer:" -> " " + solution (2) | acc |
| arc_easy | allenai/ai2_arc ARC-Easy (test) | "Question: q\\nAnswer:" -> " " + choice | acc |
| arc_challenge | allenai/ai2_arc ARC-Challenge (test) | as arc_easy | acc_norm |
| winogrande | allenai/winogrande winogrande_xl (validation) | sentence up to "_" with an option -> " " + rest | acc |

``acc_norm`` ranks the choices by log-likelihood per character of the continuation. WinoGrande scores one
continuation after two contexts (partial scoring).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..config import SuiteError


@dataclass(frozen=True)
class Downstream:
    hub: tuple[str, str | None, str]  # (dataset path, config name, split) of the upstream rows
    fields: tuple[str, ...]  # the fields a row must have
    config: Callable[[], dict[str, Any]]  # the harness's task config, without the data


def _hellaswag_clean(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)  # WikiHow's bracketed markup
    return text.replace("  ", " ")


def _hellaswag_docs(dataset):
    def fix(doc):
        context = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        return {"query": _hellaswag_clean(doc["activity_label"] + ": " + context),
                "choices": [_hellaswag_clean(e) for e in doc["endings"]], "gold": int(doc["label"])}
    return dataset.map(fix)


def _blank(doc) -> int:
    return doc["sentence"].index("_")


ACC = {"metric": "acc", "aggregation": "mean", "higher_is_better": True}
ACC_NORM = {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}


def _choice(**config) -> dict[str, Any]:
    return {"output_type": "multiple_choice", "metric_list": [ACC, ACC_NORM], **config}


def _arc() -> dict[str, Any]:
    return _choice(doc_to_text=lambda d: f"Question: {d['question']}\nAnswer:",
                   doc_to_choice=lambda d: list(d["choices"]["text"]),
                   doc_to_target=lambda d: list(d["choices"]["label"]).index(d["answerKey"]))


TASKS: dict[str, Downstream] = {
    "lambada_openai": Downstream(("EleutherAI/lambada_openai", "default", "test"), ("text",), lambda: {
        "output_type": "loglikelihood",
        "doc_to_text": lambda d: d["text"].rsplit(" ", 1)[0],
        "doc_to_target": lambda d: " " + d["text"].rsplit(" ", 1)[1],
        "metric_list": [{"metric": "perplexity", "aggregation": "perplexity", "higher_is_better": False}, ACC]}),
    "hellaswag": Downstream(("Rowan/hellaswag", None, "validation"),
                            ("activity_label", "ctx_a", "ctx_b", "endings", "label"), lambda: _choice(
        process_docs=_hellaswag_docs, doc_to_text=lambda d: d["query"], doc_to_choice=lambda d: d["choices"],
        doc_to_target=lambda d: d["gold"])),
    "piqa": Downstream(("baber/piqa", None, "validation"), ("goal", "sol1", "sol2", "label"), lambda: _choice(
        doc_to_text=lambda d: f"Question: {d['goal']}\nAnswer:", doc_to_choice=lambda d: [d["sol1"], d["sol2"]],
        doc_to_target=lambda d: int(d["label"]))),
    "arc_easy": Downstream(("allenai/ai2_arc", "ARC-Easy", "test"), ("question", "choices", "answerKey"), _arc),
    "arc_challenge": Downstream(("allenai/ai2_arc", "ARC-Challenge", "test"), ("question", "choices", "answerKey"),
                                _arc),
    "winogrande": Downstream(("allenai/winogrande", "winogrande_xl", "validation"),
                             ("sentence", "option1", "option2", "answer"), lambda: _choice(
        doc_to_text=lambda d: int(d["answer"]) - 1,  # which of the contexts is right
        doc_to_choice=lambda d: [d["sentence"][:_blank(d)] + d[f"option{i}"] for i in (1, 2)],
        doc_to_target=lambda d: d["sentence"][_blank(d) + 1:].strip())),
}

# Table 3's columns: (task, the harness's metric) in the paper's order
PAPER_METRICS = (("lambada_openai", "perplexity", "lambada_ppl"), ("lambada_openai", "acc", "lambada_acc"),
                 ("hellaswag", "acc_norm", "hellaswag_acc_norm"), ("piqa", "acc", "piqa_acc"),
                 ("arc_easy", "acc", "arc_e_acc"), ("arc_challenge", "acc_norm", "arc_c_acc_norm"),
                 ("winogrande", "acc", "winogrande_acc"))


def data_file(data_dir: str | Path, task: str) -> Path:
    return Path(data_dir) / f"{task}.jsonl"


def check_rows(path: Path, fields: tuple[str, ...]) -> int:
    """The number of rows of a task file; one error line for a missing, empty or malformed file."""
    import json

    if not path.is_file():
        raise SuiteError(f"no data at {path}; write the task's rows there (python -m experiments.eval.export --out "
                         f"{path.parent}, where the Hugging Face hub is reachable) or set eval_data_dir")
    rows = 0
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise SuiteError(f"{path}:{line_no} is not JSON ({err.msg}); export the task's rows again") from None
            missing = [k for k in fields if k not in row]
            if missing:
                raise SuiteError(f"{path}:{line_no} lacks {', '.join(missing)}; is it the {path.stem} data in "
                                 "the upstream format?")
            rows += 1
    if rows == 0:
        raise SuiteError(f"{path} has no rows; export the task's rows again")
    return rows


def build_tasks(names: list[str], data_dir: str | Path) -> dict[str, Any]:
    """The harness's task objects, reading ``<data_dir>/<name>.jsonl`` (no network)."""
    from lm_eval.api.task import ConfigurableTask

    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise SuiteError(f"unknown downstream task {', '.join(unknown)}; valid: {', '.join(TASKS)}")
    out = {}
    for name in names:
        spec = TASKS[name]
        path = data_file(data_dir, name).resolve()
        check_rows(path, spec.fields)
        config = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(path)}},
                  "test_split": "test", "num_fewshot": 0, **spec.config()}
        out[name] = ConfigurableTask(config=config)
    return out
