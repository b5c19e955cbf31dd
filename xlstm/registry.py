"""MODELS: the one registry of models, keyed by the names used in configs and ``build``."""
from __future__ import annotations

import dataclasses
import re

from .backbone import Backbone
from .baselines.lstm import LSTM, LSTMBlock
from .config import BackboneConfig
from .lm import LanguageModel

MODELS: dict[str, type[Backbone]] = {
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


def make_config(name: str, **overrides) -> BackboneConfig:
    """The model's config class with its defaults, ``name`` set and ``overrides`` applied (unknown keys raise)."""
    cls = model_class(name)
    valid = {f.name for f in dataclasses.fields(cls.config_class)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown config keys for model {name!r}: {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    return cls.config_class(**{**overrides, "name": name})


def build_backbone(config: BackboneConfig) -> Backbone:
    return model_class(config.name)(config)


def build(name: str, size: str | None = None, **overrides) -> LanguageModel:
    """The language model of a registered model, e.g. ``build("lstm", embedding_dim=64, vocab_size=100)``."""
    if size is not None:
        raise ValueError(f"no paper sizes are registered for model {name!r} yet")
    return LanguageModel(build_backbone(make_config(name, **overrides)))
