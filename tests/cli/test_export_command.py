"""``bone-tumor export``: a SavedModel that gives the .keras model's outputs, and its contract."""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from bone_tumor_tf.cli import main  # noqa: E402
from bone_tumor_tf.models.contract import (  # noqa: E402
    ModelContract,
    attach_contract,
    save_with_contract,
)
from bone_tumor_tf.models.unet import build_unet  # noqa: E402


def tiny_classifier():
    """A 3-class classifier carrying its contract as the toolkit's models do."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 1), name="image")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs)
    return attach_contract(model, ModelContract(
        task="multiclass", class_names=("normal", "benign", "malignant"), image_size=32,
        crop_mode="gt-box", normalization="unit"))


def test_export_classifier_reloads_with_the_same_outputs(tmp_path, capsys):
    model = tiny_classifier()
    path = save_with_contract(model, tmp_path / "model.keras")
    out = tmp_path / "serving" / "1"
    assert main(["export", "--model", str(path), "--out", str(out)]) == 0

    served = tf.saved_model.load(str(out))
    batch = np.random.default_rng(1).uniform(0, 255, (5, 32, 32, 1)).astype(np.float32)
    expected = model.predict(batch, verbose=0)
    got = served.serve(tf.constant(batch)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    signature = served.signatures["serving_default"]
    assert signature.structured_input_signature[1]["image"].shape.as_list() == [None, 32, 32, 1]

    contract = json.loads((out / "contract.json").read_text())
    assert contract["task"] == "multiclass"
    assert contract["class_names"] == ["normal", "benign", "malignant"]
    assert contract["image_size"] == 32 and contract["crop_mode"] == "gt-box"

    # An existing export is never overwritten: one line, exit 2.
    capsys.readouterr()
    assert main(["export", "--model", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err


def test_export_unet_of_the_previous_version_takes_its_contract_from_the_sidecar(tmp_path):
    model = build_unet(image_size=32, base_filters=4, depth=2)
    path = tmp_path / "model.keras"
    model.save(path)  # the previous version: a plain save and model.json beside it
    (tmp_path / "model.json").write_text(json.dumps({
        "task": "segmentation", "image_size": 32, "threshold": 0.4, "arch": "unet",
        "crop_mode": "none"}))
    out = tmp_path / "unet-export"
    assert main(["-q", "export", "--model", str(path), "--out", str(out)]) == 0
    batch = np.random.default_rng(2).uniform(0, 255, (2, 32, 32, 1)).astype(np.float32)
    served = tf.saved_model.load(str(out))  # kept: its functions need the object alive
    got = served.serve(tf.constant(batch)).numpy()
    np.testing.assert_allclose(got, model.predict(batch, verbose=0), atol=1e-5)
    contract = json.loads((out / "contract.json").read_text())
    assert contract["task"] == "segmentation" and contract["threshold"] == 0.4
    assert contract["image_size"] == 32
