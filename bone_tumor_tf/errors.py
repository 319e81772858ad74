"""Exceptions the toolkit raises for bad input.

Every message is one line that names the file (or option) and the problem, so that a CLI
can print it as-is instead of a traceback from deep inside TensorFlow.
"""

from __future__ import annotations


class BoneTumorError(Exception):
    """Base class: a problem a user can fix (bad file, bad option, missing weights)."""


class DataError(BoneTumorError):
    """A data file is missing, unreadable or inconsistent."""

    def __init__(self, file, problem: str):
        self.file = str(file)
        self.problem = problem
        super().__init__(f"{self.file}: {problem}")


class ModelConfigError(BoneTumorError, ValueError):
    """A model option is invalid or contradicts another (e.g. ResNet50 with CheXpert weights).

    Subclasses both :class:`BoneTumorError` (a CLI prints it as one line) and
    :class:`ValueError` (what a Python caller expects for a bad argument).
    """


class WeightsNotFoundError(BoneTumorError):
    """Pretrained weights are not on this machine; the message says how to get them."""


class ModelFileError(BoneTumorError):
    """A saved model cannot be loaded safely or contradicts the requested use."""


def one_line(error: BaseException) -> str:
    """The message of ``error`` with all whitespace runs (newlines included) collapsed; the
    exception's type name when it has no message. For wrapping third-party errors."""
    return " ".join(str(error).split()) or type(error).__name__
