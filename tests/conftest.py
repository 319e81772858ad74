"""Shared fixtures: quiet TensorFlow and small synthetic BTXRD-format datasets."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def synthetic_btxrd(tmp_path_factory):
    """A synthetic BTXRD-format folder of 60 small images (shared, do not modify)."""
    from bone_tumor_tf.data.synthetic import generate_btxrd

    root = tmp_path_factory.mktemp("btxrd") / "BTXRD"
    generate_btxrd(root, n=60, seed=7, min_side=96, max_side=160)
    return root


@pytest.fixture()
def btxrd_copy(synthetic_btxrd, tmp_path):
    """A private copy of the synthetic dataset that a test may damage."""
    import shutil

    target = tmp_path / "BTXRD"
    shutil.copytree(synthetic_btxrd, target)
    return target
