"""MODELS: the one registry of models. Its key is the Hydra option name (``model=xlstm_7_1``), the run records'
``model`` field and the name ``build`` takes; the paper's row label and the config values that define an entry
(the xLSTM block ratio, an untied head) are fields of the entry. The registry's order is the tables' row order.
"""
from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from .backbone import Backbone
from .baselines.gla import GLA
from .baselines.h3 import H3
from .baselines.hgrn import HGRN, HGRN2
from .baselines.hyena import Hyena
from .baselines.lstm import LSTM, LSTMBlock
from .baselines.mamba import Mamba
from .baselines.retnet import RetNet
from .baselines.rwkv4 import RWKV4
from .baselines.rwkv5 import RWKV5
from .baselines.rwkv6 import RWKV6
from .baselines.transformer import GPT3, Llama
from .config import BackboneConfig
from .lm import LanguageModel
from .sizes import paper_size
from .config import xLSTMConfig
from .stack import xLSTM


@dataclass(frozen=True)
class ModelSpec:
    """One registry entry: the backbone class, the paper's row label, the config values that make this entry
    (applied over the class's config defaults) and the family whose paper sizes it takes (``xlstm.sizes``)."""

    backbone: type[Backbone]
    label: str
    family: str
    defaults: dict[str, Any] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()  # other names the paper gives the model (Figure 4 and 12 say "Retention")


# The paper's row order: Transformers, state-space and long-convolution models, the linear-attention RNNs (Table 1's
# order), the LSTM baselines, then the xLSTMs.
MODELS: dict[str, ModelSpec] = {
    "llama": ModelSpec(Llama, "Llama", "llama"),
    "gpt3": ModelSpec(GPT3, "GPT-3", "gpt3"),
    "h3": ModelSpec(H3, "H3", "h3"),
    "mamba": ModelSpec(Mamba, "Mamba", "mamba"),
    # a config variant of mamba: the MQAR experiments tie "Mamba" (Zoology's default) and keep this one untied
    "mamba_nowt": ModelSpec(Mamba, "Mamba (noWT)", "mamba", {"tie_embeddings": False}),
    "hyena": ModelSpec(Hyena, "Hyena", "hyena"),
    "rwkv4": ModelSpec(RWKV4, "RWKV-4", "rwkv4"),
    "rwkv5": ModelSpec(RWKV5, "RWKV-5", "rwkv5"),
    "rwkv6": ModelSpec(RWKV6, "RWKV-6", "rwkv6"),
    "retnet": ModelSpec(RetNet, "RetNet", "retnet", aliases=("Retention",)),
    "hgrn": ModelSpec(HGRN, "HGRN", "hgrn"),
    "gla": ModelSpec(GLA, "GLA", "gla"),
    "hgrn2": ModelSpec(HGRN2, "HGRN2", "hgrn2"),
    "lstm_block": ModelSpec(LSTMBlock, "LSTM (Block)", "lstm_block"),
    "lstm": ModelSpec(LSTM, "LSTM", "lstm"),
    **{f"xlstm_{a}_{b}": ModelSpec(xLSTM, f"xLSTM[{a}:{b}]", "xlstm", {"ratio": [a, b]})
       for a, b in ((0, 1), (1, 0), (1, 1), (7, 1))},
}


def canonical_name(name: str) -> str:
    """The registry key for either spelling people type: "xlstm[7:1]", "xLSTM[7:1]" and "xlstm_7_1" all give
    "xlstm_7_1"; "Llama" gives "llama"; the paper's labels and aliases work too ("RWKV-6", "LSTM (Block)",
    "Retention"). Unknown names raise ValueError listing the valid ones."""
    key = re.sub(r"^xlstm\[(\d+):(\d+)\]$", r"xlstm_\1_\2", str(name).strip().lower())
    if key not in MODELS:
        key = next((k for k, spec in MODELS.items() if key in {n.lower() for n in (spec.label, *spec.aliases)}), key)
    if key not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(MODELS)}")
    return key


def model_spec(name: str) -> ModelSpec:
    return MODELS[canonical_name(name)]


def paper_label(name: str) -> str:
    """The paper's row label, e.g. "xlstm_7_1" -> "xLSTM[7:1]", "lstm_block" -> "LSTM (Block)"."""
    return model_spec(name).label


def label_of_paper_name(paper_name: str) -> str:
    """The registry's label for a model name as a paper table or figure prints it ("Retention" -> "RetNet");
    names the registry does not know come back unchanged."""
    try:
        return MODELS[canonical_name(paper_name)].label
    except ValueError:
        return paper_name


def row_order(name: str) -> int:
    """Position of a model in the paper's tables (unknown names last)."""
    try:
        return list(MODELS).index(canonical_name(name))
    except ValueError:
        return len(MODELS)


def make_config(name: str, size: str | None = None, **overrides) -> BackboneConfig:
    """The model's config: class defaults, then the entry's defaults, then the paper's dims at ``size`` (if given),
    then ``overrides``; ``name`` is the registry key."""
    key = canonical_name(name)
    spec = MODELS[key]
    valid = {f.name for f in dataclasses.fields(spec.backbone.config_class)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"unknown config keys for model {key!r}: {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    sized = paper_size(spec.family, size) if size is not None else {}
    return spec.backbone.config_class(**{**copy.deepcopy(spec.defaults), **sized, **overrides, "name": key})


def paper_config(arch: str, size: str, **overrides) -> xLSTMConfig:
    """The paper's xLSTM language model at a size: Table 7 dims, 4 heads, vocab 50304, context 2048, the paper's
    sLSTM positions; ``arch`` in either spelling ("xlstm[7:1]" or "xlstm_7_1")."""
    key = canonical_name(arch)
    if MODELS[key].backbone is not xLSTM:
        raise ValueError(f"{arch!r} is not an xLSTM; valid: {', '.join(k for k, s in MODELS.items() if s.backbone is xLSTM)}")
    return make_config(key, size, **overrides)


def build_backbone(config: BackboneConfig) -> Backbone:
    config.check()
    return model_spec(config.name).backbone(config)


def build(name: str, size: str | None = None, **overrides) -> LanguageModel:
    """The language model of a registered model, e.g. ``build("xlstm[7:1]", "350M")`` (either spelling) or
    ``build("lstm", embedding_dim=64, vocab_size=100)``."""
    return LanguageModel(build_backbone(make_config(name, size, **overrides)))
