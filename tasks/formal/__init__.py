"""Formal languages: DeepMind's 15 Chomsky-hierarchy tasks and the paper's Majority, Majority Count, Repetition, Set."""
from .base import LEVELS, FormalLanguageTask, FormalTaskConfig, Language
from .cs import LANGUAGES as _CS
from .dcf import LANGUAGES as _DCF
from .extra import LANGUAGES as _EXTRA
from .regular import LANGUAGES as _REGULAR

LANGUAGES: dict[str, Language] = {**_REGULAR, **_DCF, **_CS, **_EXTRA}

__all__ = ["LANGUAGES", "LEVELS", "FormalLanguageTask", "FormalTaskConfig", "Language"]
