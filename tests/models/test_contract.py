"""The model contract: validation, the inference file, plain-Keras loading, older models."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile

import h5py
import keras
import numpy as np
import pytest
from helpers import save_and_reload

from bone_tumor_tf.errors import ModelConfigError, ModelFileError
from bone_tumor_tf.models import (
    ModelContract,
    build_classifier,
    is_segmentation_model,
    load_model,
    read_contract,
    save_with_contract,
)
from bone_tumor_tf.models.contract import CONTRACT_KEY, infer_contract
from bone_tumor_tf.models.legacy import ModelMetadata
from bone_tumor_tf.models.losses import BCEDiceLoss
from bone_tumor_tf.models.metrics import DiceCoefficient
from bone_tumor_tf.models.unet import build_unet

SIZE = 32


def images(n=3, size=SIZE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 1)).astype("float32")


def archive_member(path, name) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(name)


# --------------------------------------------------------------------------- the dataclass


def test_contract_dict_round_trip_and_defaults():
    contract = ModelContract(task="multiclass", class_names=["normal", "benign", "malignant"],
                             image_size=64, crop_mode="gt-box", normalization="torch",
                             weights_source="imagenet:x.h5", arch="densenet121",
                             details={"gradcam_layer": "relu"})
    data = contract.to_dict()
    assert json.loads(json.dumps(data)) == data and data["format_version"] == 1
    assert ModelContract.from_dict(data) == contract
    assert contract.class_names == ("normal", "benign", "malignant")
    assert contract.threshold is None and contract.input_shape == (64, 64, 1)
    assert contract.input_range == (0.0, 255.0)
    # binary and segmentation get a 0.5 threshold and their default class names
    binary = ModelContract.from_dict({"task": "binary", "image_size": 32})
    assert binary.threshold == 0.5 and binary.class_names == ("normal", "tumor")
    mask = ModelContract.from_dict({"task": "segmentation", "image_size": 32, "threshold": 0.3,
                                    "encoder": "none"})
    assert mask.class_names == ("background", "tumor") and mask.threshold == 0.3
    assert mask.details == {"encoder": "none"}  # keys that are not fields
    assert mask.replace(depth=3).details == {"encoder": "none", "depth": 3}


@pytest.mark.parametrize(("changes", "match"), [
    ({"task": "regression"}, "task='regression'"),
    ({"class_names": ["a"]}, "class_names"),
    ({"class_names": ["a", "a"]}, "distinct"),
    ({"task": "binary", "class_names": ["a", "b", "c"]}, "exactly 2"),
    ({"image_size": 0}, "image_size=0"),
    ({"channels": 2.5}, "channels"),
    ({"input_range": (255, 0)}, "low must be < high"),
    ({"crop_mode": "bbox_pad"}, "crop_mode='bbox_pad'"),
    ({"normalization": "zscore"}, "normalization='zscore'"),
    ({"threshold": 1.5}, "threshold=1.5"),
    ({"details": {"bad": object()}}, "JSON"),
])
def test_invalid_contracts_are_one_line_errors(changes, match):
    values = {"task": "multiclass", "class_names": ["a", "b", "c"], "image_size": 32, **changes}
    with pytest.raises(ModelConfigError, match=match) as info:
        ModelContract(**values)
    assert "\n" not in str(info.value) and isinstance(info.value, ValueError)
    with pytest.raises(ModelConfigError, match="missing image_size"):
        ModelContract.from_dict({"task": "binary"})
    with pytest.raises(ModelConfigError, match="newer"):
        ModelContract.from_dict({"task": "binary", "image_size": 8, "format_version": 99})


def test_contract_of_models_from_elsewhere_comes_from_their_shapes():
    image = keras.Input((SIZE, SIZE, 1))
    features = keras.layers.Conv2D(2, 3, padding="same")(image)
    mask = keras.Model(image, keras.layers.Conv2D(1, 1, activation="sigmoid")(features))
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    three = keras.Model(image, keras.layers.Dense(3, activation="softmax")(pooled))
    odd = keras.Model(image, keras.layers.Conv2D(4, 1)(features))
    assert is_segmentation_model(mask) and read_contract(mask).task == "segmentation"
    assert read_contract(three).class_names == ("class_0", "class_1", "class_2")
    assert not is_segmentation_model(three) and not is_segmentation_model(odd)
    with pytest.raises(ModelFileError, match="neither class probabilities") as info:
        infer_contract(odd)
    assert "\n" not in str(info.value)
    # the contract, not the shape, decides for a model that carries one
    assert is_segmentation_model(build_unet(image_size=SIZE, base_filters=2, depth=1))
    assert not is_segmentation_model(build_classifier("resnet50", "binary", image_size=SIZE,
                                                      weights="none"))


# --------------------------------------------------------------------------- the inference file


def test_inference_file_has_the_contract_and_no_compile_state(tmp_path):
    model = build_unet(image_size=SIZE, base_filters=4, attention=True)
    model.compile(optimizer="adam", loss=BCEDiceLoss(), metrics=[DiceCoefficient()])
    model.optimizer.build(model.trainable_variables)  # the state a training run has
    checkpoint = tmp_path / "checkpoint.keras"
    model.save(checkpoint)
    path = save_with_contract(model, tmp_path / "copy" / "model.keras")
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.keras"]  # no temp left

    with h5py.File(io.BytesIO(archive_member(checkpoint, "model.weights.h5"))) as weights:
        assert "optimizer" in weights  # the check below can fail
    with h5py.File(io.BytesIO(archive_member(path, "model.weights.h5"))) as weights:
        assert "optimizer" not in weights
    config = archive_member(path, "config.json").decode()
    assert json.loads(config)["compile_config"] in (None, {})
    assert "bone_tumor_tf" not in config  # nothing to import from this toolkit
    assert path.stat().st_size < checkpoint.stat().st_size
    # three members, as Keras writes them: more would make Keras extract the whole
    # archive to a temporary folder on every load
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["config.json", "metadata.json",
                                              "model.weights.h5"]
    metadata = json.loads(archive_member(path, "metadata.json"))
    assert metadata[CONTRACT_KEY]["task"] == "segmentation"

    # the contract survives copying the single file
    copy = shutil.copy(path, tmp_path / "elsewhere.keras")
    assert read_contract(copy) == read_contract(path)
    assert read_contract(copy).versions["keras"] == keras.__version__
    with pytest.raises(ModelConfigError, match="does not match"):
        save_with_contract(model, tmp_path / "x.keras",
                           read_contract(model).replace(image_size=64))


PLAIN_KERAS = textwrap.dedent("""
    import sys

    class BlockToolkit:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "bone_tumor_tf":
                raise ImportError("bone_tumor_tf is blocked in this process")

    sys.meta_path.insert(0, BlockToolkit())
    try:
        import bone_tumor_tf  # noqa: F401
    except ImportError:
        print("toolkit blocked")
    else:
        raise SystemExit("the blocker did not work: bone_tumor_tf imported")

    import keras
    import numpy as np

    for name in ("classifier", "unet"):
        model = keras.saving.load_model(f"{name}.keras")
        outputs = model(np.load("x.npy"), training=False)  # eager: no graph to trace
        np.save(f"{name}_out.npy", keras.ops.convert_to_numpy(outputs))
    assert not any(m.split(".")[0] == "bone_tumor_tf" for m in sys.modules)
""")


def test_plain_keras_loads_toolkit_models_without_the_toolkit(tmp_path):
    """The issue's promise: a Python with only Keras opens a classifier and a U-Net saved
    by the toolkit and gets the toolkit's outputs."""
    keras.utils.set_random_seed(0)
    classifier = build_classifier("resnet50", "multiclass", image_size=SIZE, weights="none")
    unet = build_unet(image_size=SIZE, base_filters=4, attention=True, dropout=0.1)
    x = images(seed=1)
    np.save(tmp_path / "x.npy", x)
    expected = {}
    for name, model in (("classifier", classifier), ("unet", unet)):
        loaded, _ = save_and_reload(model, tmp_path / f"{name}.keras")
        # one input tensor, as built (not a list of one): model(x) takes the array itself
        assert not isinstance(loaded.input, list | tuple)
        expected[name] = np.asarray(loaded(x, training=False))
        np.testing.assert_allclose(expected[name], np.asarray(model(x, training=False)),
                                   atol=1e-6)

    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    result = subprocess.run([sys.executable, "-I", "-c", PLAIN_KERAS], cwd=tmp_path,
                            env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "toolkit blocked" in result.stdout
    for name in ("classifier", "unet"):
        np.testing.assert_allclose(np.load(tmp_path / f"{name}_out.npy"), expected[name],
                                   atol=1e-6)


# --------------------------------------------------------------------------- older models


def legacy_classifier(path, metadata):
    """A classifier as the previous version saved it: a ``ModelMetadata`` identity layer
    named ``"metadata"`` after the input, compiled, saved with ``model.save``."""
    image = keras.Input((SIZE, SIZE, 1), name="image")
    x = ModelMetadata(name="metadata", dtype="float32",
                      metadata_json=json.dumps(metadata))(image)
    x = keras.layers.Rescaling(1 / 255, name="preprocess_rescale")(x)
    x = keras.layers.Conv2D(4, 3, name="conv1_conv")(x)
    x = keras.layers.Activation("relu", name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="head_gap")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="predictions")(x)
    model = keras.Model(image, outputs, name="densenet121_binary")
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.save(path)
    return model


def test_classifier_of_the_previous_version_loads_and_resaves_plain(tmp_path):
    metadata = {"class_names": ["normal", "tumor"], "task": "binary", "image_size": SIZE,
                "channels": 1, "arch": "densenet121", "weights_source": "none",
                "crop_mode": None, "normalization": "torch", "backbone_channels": 3,
                "gradcam_layer": "relu", "data_source": "/data", "synthetic_data": True}
    old = legacy_classifier(tmp_path / "old.keras", metadata)
    contract = read_contract(tmp_path / "old.keras")
    assert contract.task == "binary" and contract.crop_mode == "none"
    assert contract.normalization == "torch" and contract.details["gradcam_layer"] == "relu"
    assert contract.details["data_source"] == "/data"

    loaded = load_model(tmp_path / "old.keras")
    assert read_contract(loaded) == contract
    x = images(seed=2)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), old.predict(x, verbose=0),
                               atol=1e-6)
    # saved again, the legacy layer becomes a standard Identity: loadable without the toolkit
    resaved, path = save_and_reload(loaded, tmp_path / "new.keras")
    assert "ModelMetadata" not in archive_member(path, "config.json").decode()
    plain = keras.saving.load_model(path)
    assert type(plain.get_layer("metadata")) is keras.layers.Identity
    np.testing.assert_allclose(plain.predict(x, verbose=0), old.predict(x, verbose=0),
                               atol=1e-6)
    assert read_contract(resaved).replace(versions={}) == contract


def test_unet_of_the_previous_version_reads_its_model_json(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    model = build_unet(image_size=SIZE, base_filters=4, depth=2)
    model.compile(optimizer="adam", loss=BCEDiceLoss())
    model.save(run / "model.keras")  # the previous version: plain save + model.json
    (run / "model.json").write_text(json.dumps({
        "task": "segmentation", "image_size": SIZE, "channels": 1, "crop_mode": "none",
        "input_range": [0, 255], "input": "image", "output": "mask", "threshold": 0.35,
        "arch": "unet", "encoder": "none", "base_filters": 4, "depth": 2}))
    loaded = load_model(run / "model.keras")
    contract = read_contract(loaded)
    assert contract == read_contract(run / "model.keras")
    assert contract.task == "segmentation" and contract.threshold == 0.35
    assert contract.normalization == "unit" and contract.details["depth"] == 2
    assert is_segmentation_model(loaded)

    (run / "model.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="model.json: unreadable model sidecar") as info:
        load_model(run / "model.keras")
    assert "\n" not in str(info.value)
