"""A trained language model back from its run: the record (``results/<experiment>/<scale>/runs/<run id>.json``) says
how the network was built and which tokenizer it reads; the checkpoint (``final.ckpt``, or any Lightning checkpoint
of the run) holds the weights.

``run`` is a run id or a record's path; ``checkpoint`` a checkpoint's path. Either is enough: a checkpoint lies in
``<checkpoint_dir>/<experiment>/<scale>/<run id>/``, so its folder names the run, and a record names its checkpoint.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from tasks.lm.task import tokenizer_path

from ..config import SuiteError
from ..results import ROOT, load_record


@dataclass
class Trained:
    model: torch.nn.Module  # token ids (B, S) -> logits (B, S, V); ``step`` decodes recurrently
    tokenizer: object  # tasks.lm.tokenizers: encode_batch, decode, eot_id, vocab_size
    record: dict  # the training run's record
    checkpoint: Path
    context_length: int  # the trained context


def find_record(run: str, results_dir: Path) -> Path:
    """A record's path from a run id (searched under every experiment and scale) or from the path itself."""
    if run.endswith(".json"):
        if not Path(run).is_file():
            raise SuiteError(f"no run record at {run}; pass run=<run id> or the path of a record under results/")
        return Path(run)
    found = sorted(results_dir.glob(f"*/*/runs/{run}.json"))
    if not found:
        raise SuiteError(f"no record of run {run!r} under {results_dir}/*/*/runs; pass run=<path of its record> or "
                         "results_dir=<where the records are>")
    if len(found) > 1:
        raise SuiteError(f"run {run!r} has records in {', '.join(map(str, found))}; pass run=<one record's path>")
    return found[0]


def locate(run: str | None, checkpoint: str | None, results_dir: Path, checkpoint_dir: Path) -> tuple[dict, Path]:
    """(the run's record, checkpoint path) from whichever of the two the user named."""
    if run is None and checkpoint is None:
        raise SuiteError("name the model to evaluate: run=<run id or record path> and/or checkpoint=<path.ckpt>")
    record = load_record(find_record(run if run is not None else Path(checkpoint).parent.name, results_dir))
    if checkpoint is not None:
        ckpt = Path(checkpoint)
    else:
        candidates = [Path(record["checkpoint"])] if record.get("checkpoint") else []
        candidates.append(checkpoint_dir / record["experiment"] / record["scale"] / record["run_id"] / "final.ckpt")
        ckpt = next((c for c in candidates if c.is_file()), candidates[-1])
    if not ckpt.is_file():
        raise SuiteError(f"no checkpoint at {ckpt}; pass checkpoint=<path of the run's final.ckpt> (or "
                         "checkpoint_dir=<the training's paths.checkpoint_dir>)")
    return record, ckpt


def network_of(record: dict) -> torch.nn.Module:
    """The run's network, freshly initialised, built exactly as the training built it."""
    from tasks.heads import TokenClassifier
    from xlstm import build_backbone, model_spec

    model = record["config"]["model"]
    schema = OmegaConf.structured(model_spec(model["name"]).backbone.config_class(name=model["name"]))
    return TokenClassifier(build_backbone(OmegaConf.to_object(OmegaConf.merge(schema, model))))


def load_weights(network: torch.nn.Module, ckpt: Path) -> None:
    """The network's weights from a Lightning checkpoint of ``experiments.module.SequenceModule`` (keys
    ``network.*``); every weight must be there and fit."""
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)["state_dict"]
    except Exception as err:  # truncated, not a zip, not a Lightning checkpoint
        raise SuiteError(f"{ckpt} is not a readable checkpoint of this suite ({type(err).__name__}: "
                         f"{str(err).splitlines()[0][:160] if str(err) else ''}); point checkpoint= at the run's "
                         "final.ckpt") from None
    weights = {k.removeprefix("network."): v for k, v in state.items() if k.startswith("network.")}
    try:
        network.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise SuiteError(f"{ckpt} does not fit the network its record describes: "
                         f"{str(err).splitlines()[0][:200]}; is it the checkpoint of this run?") from None


def check_tokenizer(tokenizer, config: dict, data_dir: str) -> None:
    """Where the run's training data is still there, its manifest names the tokenizer it was prepared with: the
    evaluation must read text with the same one (same hash)."""
    manifest = Path(data_dir) / config["task"]["train_data"] / "manifest.json"  # an absolute train_data stays
    if manifest.is_file():
        prepared = json.loads(manifest.read_text())["tokenizer"]
        if prepared["hash"] != tokenizer.hash:
            raise SuiteError(f"tokenizer {tokenizer.name} ({tokenizer.hash}) is not the one the run's training data "
                             f"was prepared with ({prepared['name']}, {prepared['hash']}); data_dir=<folder> must "
                             "hold the run's tokenizer")


def load_trained(run: str | None = None, checkpoint: str | None = None, *, results_dir: str | Path = ROOT / "results",
                 checkpoint_dir: str | Path = "checkpoints", data_dir: str | None = None) -> Trained:
    """The trained model (eval mode, on the CPU) and its tokenizer. ``data_dir`` overrides the training's
    ``paths.data_dir`` (where a trained tokenizer file lies)."""
    from tasks.lm.task import padded_vocab
    from tasks.lm.tokenizers import TokenizerError, load_tokenizer

    record, ckpt = locate(run, checkpoint, Path(results_dir), Path(checkpoint_dir))
    config = record["config"]
    if "tokenizer" not in config["task"]:
        raise SuiteError(f"run {record['run_id']} trained task {config['task']['name']!r}, not a language model; "
                         "evaluate a run of slimpajama, lm_local or another language-modelling task")
    network = network_of(record)
    load_weights(network, ckpt)
    try:
        tokenizer = load_tokenizer(tokenizer_path(config["task"]["tokenizer"], data_dir or config["paths"]["data_dir"]))
    except TokenizerError as err:
        raise SuiteError(f"{err} (the tokenizer of run {record['run_id']}; data_dir=<folder> points at it)") from None
    check_tokenizer(tokenizer, config, data_dir or config["paths"]["data_dir"])
    vocab = padded_vocab(tokenizer.vocab_size, config["task"]["vocab_multiple"])
    if vocab != config["model"]["vocab_size"]:
        raise SuiteError(f"tokenizer {tokenizer.name} ({tokenizer.vocab_size} tokens) does not match the model's "
                         f"vocabulary of {config['model']['vocab_size']}; data_dir=<folder> must hold the run's "
                         "tokenizer")
    return Trained(network.eval(), tokenizer, record, ckpt, int(config["task"]["context_length"]))
