"""The xLSTM stack and the paper's baselines, in pure PyTorch (no Lightning, no Hydra)."""
from .backbone import Backbone
from .config import BackboneConfig
from .lm import LanguageModel
from .config import xLSTMConfig
from .registry import MODELS, build, build_backbone, make_config, model_class, option_name, paper_label
from .stack import paper_config, xLSTM, xLSTMLM

__all__ = ["Backbone", "BackboneConfig", "LanguageModel", "MODELS", "build", "build_backbone", "make_config",
           "model_class", "option_name", "paper_config", "paper_label", "xLSTM", "xLSTMConfig", "xLSTMLM"]
