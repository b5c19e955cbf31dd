"""MODELS: the one registry of models, keyed by the names used in configs and ``build``."""
from __future__ import annotations

import dataclasses
import re

from .backbone import Backbone
from .baselines.lstm import LSTM, LSTMBlock
from .baselines.mamba import Mamba
from .baselines.rwkv4 import RWKV4
from .baselines.transformer import GPT3, Llama
from .config import BackboneConfig
from .lm import LanguageModel
from .stack import ARCHS, xLSTM

MODELS: dict[str, type[Backbone]] = {
    **{arch: xLSTM for arch in ARCHS},
    "llama": Llama,
    "gpt3": GPT3,
    "mamba": Mamba,
    "mamba_nowt": Mamba,
    "rwkv4": RWKV4,
    "lstm": LSTM,
    "lstm_block": LSTMBlock,
}


def option_name(name: str) -> str:
    """The Hydra option file for a registry key: "xlstm[1:0]" -> "xlstm_1_0" (brackets and colons do not
    survive Hydra's override grammar); other keys are their own option name."""
    return re.sub(r"[\[\]:]+", "_", name).strip("_")


def model_class(name: str) -> type[Backbone]:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    return MODELS[name]


def paper_label(name: str) -> str:
    """The paper's row label of a registry entry, e.g. "xlstm[7:1]" -> "xLSTM[7:1]", "lstm_block" -> "LSTM (Block)"."""
    return model_class(name).paper_label(name)


def make_config(name: str, size: str | None = None, **overrides) -> BackboneConfig:
    """The model's config: its defaults (or the paper's dims at ``size``), ``name`` set, ``overrides`` applied."""
    cls = model_class(name)
    valid = {f.name for f in dataclasses.fields(cls.config_class)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown config keys for model {name!r}: {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    base = cls.sized_config(name, size) if size is not None else cls.config_class(name=name)
    return dataclasses.replace(base, **{**overrides, "name": name})


def build_backbone(config: BackboneConfig) -> Backbone:
    return model_class(config.name)(config)


def build(name: str, size: str | None = None, **overrides) -> LanguageModel:
    """The language model of a registered model, e.g. ``build("xlstm[7:1]", "350M")`` or
    ``build("lstm", embedding_dim=64, vocab_size=100)``."""
    return LanguageModel(build_backbone(make_config(name, size, **overrides)))
