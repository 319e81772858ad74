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


class WeightsNotFoundError(BoneTumorError):
    """Pretrained weights are not on this machine; the message says how to get them."""


class ModelFileError(BoneTumorError):
    """A saved model cannot be loaded safely or contradicts the requested use."""
