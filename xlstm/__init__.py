"""The xLSTM stack and the paper's baselines, in pure PyTorch (no Lightning, no Hydra)."""
from .backbone import Backbone
from .config import BackboneConfig, xLSTMConfig
from .lm import LanguageModel
from .registry import (MODELS, ModelSpec, build, build_backbone, canonical_name, make_config, model_spec, paper_config,
                       paper_label, row_order)
from .stack import xLSTM, xLSTMLM

__all__ = ["Backbone", "BackboneConfig", "LanguageModel", "MODELS", "ModelSpec", "build", "build_backbone",
           "canonical_name", "make_config", "model_spec", "paper_config", "paper_label", "row_order", "xLSTM",
           "xLSTMConfig", "xLSTMLM"]
