"""Shared fixtures: quiet TensorFlow and small synthetic BTXRD-format datasets."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _tf_functions_run_eagerly():
    """Run ``tf.function``s (Keras' train / predict steps) eagerly in this test process.

    Why: tracing a ResNet50 train step takes longer than training it on the tests' 60 tiny
    images (a 1 + 1 epoch run: 40 s eager vs 91 s traced, measured side by side). The same
    Python code runs either way. Graph mode stays covered: the training subprocesses of
    ``tests/e2e/test_reliability_runs.py`` and the attention U-Net run of
    ``tests/e2e/test_segmentation_training.py`` train traced, tests marked ``graph_mode``
    (the custom train steps of gradient accumulation and tf.distribute) run traced, and so
    do ``make demo`` and the benchmarks.
    """
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.fixture(autouse=True)
def _graph_mode_when_marked(request):
    if request.node.get_closest_marker("graph_mode") is None:
        yield
        return
    from helpers import traced_tf_functions

    with traced_tf_functions():
        yield


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


RESIZED_SIDE = 256


def write_resized_copy(source, target, sizes=None):
    """A redistributed-style copy of a BTXRD folder: every image resized (aspect ratio not
    kept) to ``RESIZED_SIDE`` x ``RESIZED_SIDE`` and re-encoded as PNG under its stem, with
    the original sheet and LabelMe files. ``sizes`` maps an image_id to another
    ``(height, width)``."""
    import shutil

    import cv2

    target.mkdir(parents=True)
    shutil.copytree(source / "Annotations", target / "Annotations")
    shutil.copy(source / "dataset.xlsx", target / "dataset.xlsx")
    (target / "images").mkdir()
    for path in sorted((source / "images").iterdir()):
        height, width = (sizes or {}).get(path.name, (RESIZED_SIDE, RESIZED_SIDE))
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(target / "images" / (path.stem + ".png")), resized)
    return target


@pytest.fixture(scope="session")
def resized_btxrd(synthetic_btxrd, tmp_path_factory):
    """``synthetic_btxrd`` as a 256 x 256 PNG copy with the original sheet and LabelMe files
    (shared, do not modify)."""
    return write_resized_copy(synthetic_btxrd, tmp_path_factory.mktemp("resized") / "BTXRD")
