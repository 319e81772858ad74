"""Classifiers: flat graphs, heads, in-graph normalisation, weights sources, contract, freezing."""

from __future__ import annotations

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import save_and_reload

from bone_tumor_tf.errors import ModelFileError, WeightsNotFoundError
from bone_tumor_tf.models import (
    ModelConfigError,
    attach_contract,
    backbone_layer_names,
    build_classifier,
    head_layer_names,
    last_conv_layer_name,
    load_model,
    read_contract,
    save_with_contract,
    set_head_l2,
    set_trainable_for_phase,
    update_contract,
)
from bone_tumor_tf.models.chexpert import densenet121_weighted_layers
from bone_tumor_tf.models.weights import DEFAULT_CHEXPERT_WEIGHTS, save_layer_weights

SIZE = 32  # smallest input keras.applications accepts; keeps every build fast


def gray_images(n=2, size=SIZE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 1)).astype("float32")


_CACHE: dict = {}


@pytest.fixture(scope="module")
def built():
    """Lazily built random-weight classifiers, keyed by (arch, task); shared by tests that
    reset whatever state they depend on."""

    def get(arch, task):
        if (arch, task) not in _CACHE:
            _CACHE[arch, task] = build_classifier(arch, task, image_size=SIZE, weights="none")
        return _CACHE[arch, task]

    yield get
    _CACHE.clear()


def weighted(model):
    return [layer.name for layer in model.layers if layer.weights]


# --------------------------------------------------------------------------- graph and heads


@pytest.mark.parametrize(
    ("arch", "gradcam", "inner"),
    [("resnet50", "conv5_block3_out", ["conv1_conv", "conv5_block3_3_conv"]),
     ("densenet121", "relu", ["conv1_conv", "conv5_block16_2_conv", "bn"])],
)
def test_graph_is_flat_and_gradcam_layer_reachable(built, arch, gradcam, inner):
    model = built(arch, "binary")
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    names = [layer.name for layer in model.layers]
    for name in inner + [gradcam, "image", "gray_to_rgb", "predictions"]:
        assert name in names
    # standard Keras layers only: the saved file loads where bone_tumor_tf is not installed
    assert all(type(layer).__module__.startswith("keras.") for layer in model.layers)
    assert last_conv_layer_name(model) == gradcam
    assert model.get_layer(gradcam).output.shape == (None, 1, 1, 2048 if arch == "resnet50"
                                                     else 1024)
    backbone = backbone_layer_names(model)
    assert backbone[0] not in ("image", "metadata") and gradcam == backbone[-1]
    assert not any(n.startswith(("head_", "preprocess_")) for n in backbone)

    # Grad-CAM plumbing: feature map and prediction from one model, non-zero gradients.
    grad_model = keras.Model(model.input, [model.get_layer(gradcam).output, model.output])
    x = tf.constant(gray_images(size=SIZE))
    with tf.GradientTape() as tape:
        fmap, preds = grad_model(x, training=False)
        score = tf.reduce_sum(preds[:, 0])
    grads = tape.gradient(score, fmap)
    assert grads.shape == fmap.shape and float(tf.reduce_max(tf.abs(grads))) > 0


@pytest.mark.parametrize(
    ("arch", "task", "head"),
    [
        ("resnet50", "binary",
         [("head_gap", "GlobalAveragePooling2D"), ("head_dense", "Dense", 256, "relu"),
          ("head_dropout", "Dropout"), ("predictions", "Dense", 1, "sigmoid")]),
        ("resnet50", "multiclass",
         [("head_gap", "GlobalAveragePooling2D"), ("head_dense", "Dense", 256, "relu"),
          ("head_dropout", "Dropout"), ("predictions", "Dense", 3, "softmax")]),
        ("densenet121", "multiclass",
         [("head_gap", "GlobalAveragePooling2D"), ("head_dense1", "Dense", 512, "linear"),
          ("head_bn", "BatchNormalization"), ("head_relu", "Activation"),
          ("head_dropout", "Dropout"), ("head_dense2", "Dense", 256, "relu"),
          ("predictions", "Dense", 3, "softmax")]),
        ("densenet121", "binary",
         [("head_gap", "GlobalAveragePooling2D"), ("head_dense1", "Dense", 512, "linear"),
          ("head_bn", "BatchNormalization"), ("head_relu", "Activation"),
          ("head_dropout", "Dropout"), ("head_dense2", "Dense", 256, "relu"),
          ("predictions", "Dense", 1, "sigmoid")]),
    ],
)
def test_heads(built, arch, task, head):
    model = built(arch, task)
    assert head_layer_names(model) == [h[0] for h in head]
    for spec in head:
        layer = model.get_layer(spec[0])
        assert type(layer).__name__ == spec[1]
        if spec[1] == "Dense":
            assert layer.units == spec[2] and layer.activation.__name__ == spec[3]
    assert model.get_layer("head_dropout").rate == 0.5
    assert model.get_layer("predictions").dtype_policy.name == "float32"
    out = model(gray_images(), training=False)
    assert out.dtype == tf.float32 and out.shape == (2, 1 if task == "binary" else 3)
    out = np.asarray(out)
    assert np.all((out >= 0) & (out <= 1))
    if task == "multiclass":
        np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    contract = read_contract(model)
    assert contract.arch == arch and contract.task == task and contract.image_size == SIZE
    assert contract.channels == 1 and contract.weights_source == "none"
    assert list(contract.class_names) == (["normal", "tumor"] if task == "binary"
                                          else ["normal", "benign", "malignant"])


def test_mixed_precision_keeps_output_and_preprocessing_float32():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_classifier("densenet121", "multiclass", image_size=SIZE, weights="none")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("conv1_conv").compute_dtype == "float16"
    for name in ("gray_to_rgb", "preprocess_rescale", "preprocess_normalize", "predictions"):
        assert model.get_layer(name).compute_dtype == "float32"
    assert model(gray_images(), training=False).dtype == tf.float32


def test_bad_options_are_one_line_errors():
    cases = [
        dict(arch="vgg16"),
        dict(task="regression"),
        dict(task="binary", num_classes=3),
        dict(num_classes=4, class_names=["a", "b"]),
        dict(image_size=16),
        dict(arch="resnet50", dense_units=(512, 256)),
        dict(arch="resnet50", weights="chexpert"),
        dict(dropout=1.5),
    ]
    for kwargs in cases:
        with pytest.raises(ModelConfigError) as info:
            build_classifier(**{"weights": "none", "image_size": SIZE, **kwargs})
        assert "\n" not in str(info.value)
        assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("arch", "last_preprocess", "reference"),
    [("resnet50", "preprocess_caffe", keras.applications.resnet50.preprocess_input),
     ("densenet121", "preprocess_normalize", keras.applications.densenet.preprocess_input)],
)
def test_in_graph_normalisation_matches_keras_preprocess_input(
    built, arch, last_preprocess, reference
):
    model = built(arch, "binary")
    x = gray_images(n=3, seed=5)
    x[0, :4, :4, 0] = 0.0
    x[0, -4:, -4:, 0] = 255.0
    sub = keras.Model(model.input, model.get_layer(last_preprocess).output)
    ours = np.asarray(sub(x, training=False))
    expected = reference(np.repeat(x, 3, axis=-1).copy())
    assert ours.shape == expected.shape == (3, SIZE, SIZE, 3)
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-4)
    # and the backbone really consumes that tensor
    first_conv = model.get_layer("conv1_conv")
    assert first_conv.input.shape[-1] == 3


# --------------------------------------------------------------------------- weights sources


def write_keras_applications_h5(model, path):
    """Write ``model``'s weights the way the Keras Applications "notop" files are laid out
    (legacy HDF5: root attr ``layer_names``; per layer ``weight_names`` + datasets, in
    trainable-then-non-trainable order), which ``keras.applications.X(weights=path)`` reads
    by layer order."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = b"2.2.4"
        for layer in model.layers:
            group = f.create_group(layer.name)
            variables = layer.trainable_weights + layer.non_trainable_weights
            names = [f"{layer.name}/{v.name}:0".encode() for v in variables]
            group.attrs["weight_names"] = names
            for name, variable in zip(names, variables):
                group.create_dataset(name, data=np.asarray(variable))


def assert_same_backbone_weights(source, model):
    names = weighted(source)
    assert set(names) <= set(backbone_layer_names(model))
    assert set(weighted(model)) - set(names) == set(head_layer_names(model)) - {"head_gap",
                                                                                 "head_relu",
                                                                                 "head_dropout"}
    for name in names:
        for a, b in zip(source.get_layer(name).get_weights(), model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_missing_imagenet_weights_never_download(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    for arch, folder in (("resnet50", "resnet"), ("densenet121", "densenet")):
        with pytest.raises(WeightsNotFoundError) as info:
            build_classifier(arch, image_size=SIZE, weights="imagenet")
        message = str(info.value)
        filename = f"{arch}_weights_tf_dim_ordering_tf_kernels_notop.h5"
        assert str(tmp_path / "models" / filename) in message
        assert (f"https://storage.googleapis.com/tensorflow/keras-applications/{folder}/"
                f"{filename}") in message
        assert "\n" not in message
    assert not (tmp_path / "models").exists()  # nothing was downloaded or created


def test_missing_files_give_clear_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("BONE_TUMOR_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=DEFAULT_CHEXPERT_WEIGHTS):
        build_classifier("densenet121", image_size=SIZE, weights="chexpert")
    with pytest.raises(WeightsNotFoundError, match="no_such.h5"):
        build_classifier("densenet121", image_size=SIZE, weights=str(tmp_path / "no_such.h5"))
    with pytest.raises(WeightsNotFoundError, match="other.h5"):
        build_classifier("resnet50", image_size=SIZE, weights=f"imagenet:{tmp_path}/other.h5")


def test_fake_imagenet_file_reaches_the_classifier(monkeypatch, tmp_path):
    source = keras.applications.ResNet50(include_top=False, weights=None,
                                         input_shape=(SIZE, SIZE, 3))
    # non-trivial BN statistics, so moving stats are checked too
    rng = np.random.default_rng(0)
    for layer in source.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma, beta, rng.normal(size=mean.shape).astype("float32"),
                               rng.uniform(0.5, 2, var.shape).astype("float32")])
    folder = tmp_path / "models"
    folder.mkdir()
    write_keras_applications_h5(source, folder / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))

    model = build_classifier("resnet50", "binary", image_size=SIZE, weights="imagenet")
    assert_same_backbone_weights(source, model)
    assert read_contract(model).weights_source == (
        "imagenet:resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")

    # A file that does not fit the architecture is refused in one line.
    wrong = folder / "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"
    wrong.write_bytes((folder / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
                      .read_bytes())
    with pytest.raises(ModelFileError) as info:
        build_classifier("densenet121", image_size=SIZE, weights="imagenet")
    assert str(wrong) in str(info.value) and "\n" not in str(info.value)


def test_keras3_weights_file_as_plain_path(tmp_path):
    source = keras.applications.DenseNet121(include_top=False, weights=None,
                                            input_shape=(SIZE, SIZE, 3))
    path = tmp_path / "backbone.weights.h5"
    source.save_weights(path)
    model = build_classifier("densenet121", image_size=SIZE, weights=str(path))
    assert_same_backbone_weights(source, model)
    contract = read_contract(model)
    assert contract.weights_source == "file:backbone.weights.h5"
    assert contract.normalization == "torch" and contract.details["backbone_channels"] == 3


def test_saved_classifier_of_an_earlier_run_initialises_the_backbone(built, tmp_path):
    """A run's model.keras as --weights: same backbone weights at another size and task,
    with a fresh head and the saved model's normalisation."""
    source = built("resnet50", "multiclass")
    path = save_with_contract(source, tmp_path / "gt-box-run.keras")
    model = build_classifier("resnet50", "binary", image_size=2 * SIZE, weights=str(path))
    copied = [n for n in weighted(model) if n in weighted(source)
              and not n.startswith("head_") and n != "predictions"]
    assert "conv1_conv" in copied and "conv5_block3_3_bn" in copied
    for name in copied:
        for a, b in zip(source.get_layer(name).get_weights(),
                        model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert model.get_layer("predictions").get_weights()[0].shape[-1] == 1
    contract = read_contract(model)
    assert contract.weights_source == "model:gt-box-run.keras"
    assert contract.normalization == "caffe" and contract.image_size == 2 * SIZE
    with pytest.raises(ModelConfigError, match="resnet50 classifier cannot initialise a "
                                               "densenet121"):
        build_classifier("densenet121", image_size=SIZE, weights=str(path))
    foreign = tmp_path / "foreign.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]).save(foreign)
    with pytest.raises(ModelConfigError,
                       match="not a classifier or encoder U-Net saved by bone_tumor_tf"):
        build_classifier("resnet50", image_size=SIZE, weights=str(foreign))


def test_encoder_unet_of_an_earlier_run_initialises_the_backbone(tmp_path):
    """Mask pretraining: a U-Net run with --encoder densenet121 as --weights gives the
    classifier the U-Net's encoder, so both compute the same backbone features."""
    from bone_tumor_tf.models.unet import build_unet

    unet = build_unet(image_size=SIZE, attention=True, base_filters=4,
                      encoder="densenet121", encoder_weights="none")
    path = save_with_contract(unet, tmp_path / "encoder-unet.keras")
    model = build_classifier("densenet121", "multiclass", image_size=SIZE, weights=str(path))
    fresh = build_classifier("densenet121", "multiclass", image_size=SIZE, weights="none")
    kernel = "conv5_block16_2_conv"
    assert not np.allclose(fresh.get_layer(kernel).get_weights()[0],
                           unet.get_layer(kernel).get_weights()[0])
    for name in ("conv1_conv", kernel, "bn"):
        for a, b in zip(unet.get_layer(name).get_weights(),
                        model.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    # Same input normalisation (U-Net: rescale, gray_to_rgb, imagenet_norm; classifier:
    # gray_to_rgb, rescale, normalize): the last backbone feature maps agree.
    images = gray_images(2)
    features = [keras.Model(m.input, m.get_layer("relu").output)(images, training=False)
                for m in (unet, model)]
    np.testing.assert_allclose(np.asarray(features[0]), np.asarray(features[1]),
                               rtol=1e-4, atol=1e-4)
    contract = read_contract(model)
    assert contract.weights_source == "model:encoder-unet.keras"
    assert contract.normalization == "torch"
    plain = save_with_contract(build_unet(image_size=SIZE, base_filters=2, depth=2),
                               tmp_path / "plain-unet.keras")
    with pytest.raises(ModelConfigError, match="encoder none cannot initialise a densenet121 "
                                               "backbone; train the U-Net with --encoder"):
        build_classifier("densenet121", image_size=SIZE, weights=str(plain))
    with pytest.raises(ModelConfigError, match="encoder densenet121 cannot initialise a "
                                               "resnet50"):
        build_classifier("resnet50", image_size=SIZE, weights=str(path))


def test_chexpert_weights_one_channel_backbone(monkeypatch, tmp_path):
    source = keras.applications.DenseNet121(include_top=False, weights=None,
                                            input_shape=(SIZE, SIZE, 1))
    rng = np.random.default_rng(1)
    arrays = {}
    for name in densenet121_weighted_layers():
        arrays[name] = [rng.normal(size=w.shape).astype("float32") * 0.1
                        for w in source.get_layer(name).weights]
        if name.endswith("bn"):
            arrays[name][3] = np.abs(arrays[name][3]) + 0.5
        source.get_layer(name).set_weights(arrays[name])
    save_layer_weights(tmp_path / DEFAULT_CHEXPERT_WEIGHTS, arrays, channels=1,
                       bn_epsilon=1.001e-5)
    monkeypatch.setenv("BONE_TUMOR_WEIGHTS_DIR", str(tmp_path))

    for weights in ("chexpert", str(tmp_path / DEFAULT_CHEXPERT_WEIGHTS)):
        model = build_classifier("densenet121", "multiclass", image_size=SIZE, weights=weights)
        assert_same_backbone_weights(source, model)
        assert "gray_to_rgb" not in [layer.name for layer in model.layers]
        assert model.get_layer("conv1_conv").kernel.shape == (7, 7, 1, 64)
        contract = read_contract(model)
        assert contract.weights_source == f"chexpert:{DEFAULT_CHEXPERT_WEIGHTS}"
        assert contract.normalization == "xrv" and contract.details["backbone_channels"] == 1
        assert last_conv_layer_name(model) == "relu"

    x = gray_images(seed=2)
    sub = keras.Model(model.input, model.get_layer("preprocess_xrv").output)
    np.testing.assert_allclose(np.asarray(sub(x)), x / 255.0 * 2048.0 - 1024.0,
                               rtol=1e-6, atol=1e-3)
    # the flat classifier's backbone computes what the standalone backbone computes
    feats = keras.Model(model.input, model.get_layer("relu").output)
    np.testing.assert_allclose(np.asarray(feats(x)), np.asarray(source(x / 255 * 2048 - 1024)),
                               rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- contract


def test_contract_round_trips_through_keras_file(built, tmp_path):
    model = built("densenet121", "binary")
    original = read_contract(model)
    try:
        contract = update_contract(model, crop_mode="gt-box", class_names=("normal", "tumor"),
                                   extra={"seed": 7})
        assert contract.crop_mode == "gt-box" and contract.class_names == ("normal", "tumor")
        assert contract.details["extra"] == {"seed": 7}
        loaded, path = save_and_reload(model, tmp_path / "model.keras")
    finally:
        attach_contract(model, original)  # the model is shared by other tests

    saved = read_contract(path)  # read from the archive, no model built
    assert saved.replace(versions={}) == contract
    assert saved.versions["keras"] == keras.__version__ and "bone_tumor_tf" in saved.versions
    assert read_contract(loaded) == saved
    plain = keras.saving.load_model(path, safe_mode=True)
    assert not any(isinstance(layer, keras.Model) for layer in plain.layers)
    assert last_conv_layer_name(loaded) == "relu"
    x = gray_images(seed=3)
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(plain(x)), np.asarray(model(x)), rtol=1e-6, atol=1e-6)

    with pytest.raises(ModelConfigError):
        update_contract(model, bad=object())
    junk = tmp_path / "junk.keras"
    junk.write_text("not a zip")
    with pytest.raises(ModelFileError, match="not a .keras model archive"):
        read_contract(junk)
    with pytest.raises(ModelFileError, match="cannot load model"):
        load_model(junk)
    with pytest.raises(ModelFileError, match="not a square image batch"):
        update_contract(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]), a=1)


# --------------------------------------------------------------------------- freezing


@pytest.mark.parametrize("arch", ["resnet50", "densenet121"])
def test_two_phase_freezing(built, arch):
    model = built(arch, "multiclass")
    head = [n for n in head_layer_names(model) if model.get_layer(n).weights]
    names = weighted(model)

    phase1 = set_trainable_for_phase(model, 1)
    assert phase1 == head
    assert {v.path.split("/")[0] for v in model.trainable_weights} == set(head)

    phase2 = set_trainable_for_phase(model, 2)
    last_block = [n for n in names if n.startswith("conv5_")
                  and not isinstance(model.get_layer(n), keras.layers.BatchNormalization)]
    assert phase2 == [n for n in names if n in set(last_block) | set(head)]
    assert all(n.endswith("_conv") for n in last_block)
    assert "bn" not in phase2 and not any(n.startswith("conv4_") for n in phase2)
    assert model.get_layer("head_dense1" if arch == "densenet121" else "head_dense").trainable

    # Every backbone BN is frozen => inference mode even when called with training=True.
    bn_layers = [layer for layer in model.layers
                 if isinstance(layer, keras.layers.BatchNormalization)
                 and layer.name in set(backbone_layer_names(model))]
    assert bn_layers and not any(layer.trainable for layer in bn_layers)
    probe = "bn" if arch == "densenet121" else "conv5_block3_3_bn"
    layer = model.get_layer(probe)
    gamma, beta, mean, var = layer.get_weights()
    layer.set_weights([gamma, beta, mean + 0.3, var * 1.7])
    x = np.random.default_rng(4).normal(size=(4, 2, 2, layer.input.shape[-1])).astype("float32")
    np.testing.assert_array_equal(np.asarray(layer(x, training=True)),
                                  np.asarray(layer(x, training=False)))
    layer.set_weights([gamma, beta, mean, var])

    # A training-mode forward pass leaves backbone statistics alone, updates head_bn's.
    features = keras.Model(model.input, model.get_layer(last_conv_layer_name(model)).output)
    x = gray_images(n=4, seed=6)
    np.testing.assert_allclose(np.asarray(features(x, training=True)),
                               np.asarray(features(x, training=False)), rtol=1e-6, atol=1e-6)
    before = {bn.name: np.asarray(bn.moving_mean).copy() for bn in bn_layers}
    model(x, training=True)
    for bn in bn_layers:
        np.testing.assert_array_equal(np.asarray(bn.moving_mean), before[bn.name])
    if arch == "densenet121":
        head_bn = model.get_layer("head_bn")
        assert head_bn.trainable and np.any(np.asarray(head_bn.moving_mean) != 0)

    assert set_trainable_for_phase(model, 1) == head  # and back
    with pytest.raises(ModelConfigError):
        set_trainable_for_phase(model, 3)


def test_head_l2(built, tmp_path):
    model = build_classifier("resnet50", "binary", image_size=SIZE, weights="none",
                             head_l2=0.01)
    assert len(model.losses) == 2  # head_dense + predictions
    assert set_head_l2(model, 0.0) == ["head_dense", "predictions"]
    assert len(model.losses) == 0

    other = built("densenet121", "multiclass")
    try:
        assert set_head_l2(other, 0.05) == ["head_dense1", "head_dense2", "predictions"]
        assert len(other.losses) == 3
        assert other.get_layer("head_dense2").get_config()["kernel_regularizer"] is not None
    finally:
        set_head_l2(other, 0.0)
