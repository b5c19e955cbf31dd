"""Formal languages of the Chomsky hierarchy and the paper's extra tasks."""
from .base import FormalLanguageTask, FormalTaskConfig, Language
from .regular import LANGUAGES as _REGULAR

LANGUAGES: dict[str, Language] = {**_REGULAR}

__all__ = ["LANGUAGES", "FormalLanguageTask", "FormalTaskConfig", "Language"]
