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


def save_bright_segmenter(path, size=32):
    """A U-Net stand-in from standard layers, saved with its contract: tumor probability
    rises with brightness (the diagnosis chain's tests and benchmark smoke test)."""
    import keras

    from bone_tumor_tf.models.contract import ModelContract, attach_contract, save_with_contract

    inputs = keras.Input((size, size, 1))
    x = keras.layers.Conv2D(1, 1, activation="sigmoid", name="bright",
                            kernel_initializer=keras.initializers.Constant(0.08),
                            bias_initializer=keras.initializers.Constant(-12.0))(inputs)
    model = keras.Model(inputs, x)
    attach_contract(model, ModelContract(task="segmentation",
                                         class_names=("background", "tumor"),
                                         image_size=size, threshold=0.5, arch="unet"))
    return save_with_contract(model, path)


def save_chain_classifier(path, crop_mode="gt-box", classes=("normal", "benign", "malignant"),
                          size=32, seed=0):
    """A tiny grey-input classifier saved with its contract (crop mode, class names)."""
    import keras

    from bone_tumor_tf.models.contract import ModelContract, attach_contract, save_with_contract

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    units, activation = (1, "sigmoid") if len(classes) == 2 else (len(classes), "softmax")
    outputs = keras.layers.Dense(units, activation=activation, name="predictions")(x)
    model = keras.Model(inputs, outputs)
    attach_contract(model, ModelContract(
        task="binary" if len(classes) == 2 else "multiclass", class_names=tuple(classes),
        image_size=size, crop_mode=crop_mode, normalization="unit",
        details={"gradcam_layer": "conv"}))
    return save_with_contract(model, path)


_HOLD_LOCK = ("import sys, time\n"
              "from bone_tumor_tf.io import folder_lock\n"
              "with folder_lock(sys.argv[1]):\n"
              "    print('held', flush=True)\n"
              "    time.sleep(120)\n")


@contextmanager
def folder_locked_by_another_process(folder: str | Path):
    """Another process holds ``folder``'s :func:`bone_tumor_tf.io.folder_lock` in the block
    (a run still writing it); it is killed (SIGKILL, no clean exit) when the block ends."""
    import signal
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(folder)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        yield process
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
