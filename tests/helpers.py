"""Helpers shared by the test modules (``from helpers import ...``; pytest puts this folder,
the one holding the root ``conftest.py``, on ``sys.path``)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path


def save_and_reload(model, path: str | Path):
    """Save ``model`` the way the toolkit saves an inference file and load it back the way
    the toolkit loads one.

    Returns:
        ``(loaded model, path)``: the model from
        :func:`bone_tumor_tf.models.loading.load_model` (``safe_mode=True``, contract
        attached) and the ``.keras`` file written by
        :func:`bone_tumor_tf.models.contract.save_with_contract`.
    """
    from bone_tumor_tf.models import load_model, save_with_contract

    path = save_with_contract(model, path)
    return load_model(path), path


@contextmanager
def traced_tf_functions():
    """Run ``tf.function``s traced inside the block, as users run them (the suite runs them
    eagerly for speed: ``tests/conftest.py``)."""
    import tensorflow as tf

    before = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(False)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(before)
