"""Tests for bone_tumor_tf.models.unet (tiny models: 32-96 px, base_filters 4)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from helpers import save_and_reload

from bone_tumor_tf.errors import WeightsNotFoundError
from bone_tumor_tf.models import read_contract, unet
from bone_tumor_tf.models.losses import BCEDiceLoss
from bone_tumor_tf.models.metrics import DiceCoefficient
from bone_tumor_tf.models.unet import (
    IMAGENET_WEIGHT_FILES,
    apply_attention_gate,
    attention_layer_names,
    build_unet,
    resolve_encoder_weights,
)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _gate_model(x_shape=(16, 16, 8), g_shape=(8, 8, 16), inter=4):
    x_l = keras.Input(x_shape, name="x_l")
    g = keras.Input(g_shape, name="g")
    out = apply_attention_gate(x_l, g, inter, name="gate")
    return keras.Model([x_l, g], out)


def _images(n, size, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 1)).astype("float32")


# --------------------------------------------------------------------------------------
# Attention gate
# --------------------------------------------------------------------------------------


def test_attention_gate_shape_and_alpha_range():
    model = _gate_model()
    rng = np.random.default_rng(0)
    x_l = rng.normal(size=(2, 16, 16, 8)).astype("float32")
    g = rng.normal(size=(2, 8, 8, 16)).astype("float32")
    probe = keras.Model(
        model.inputs,
        [model.output, model.get_layer("gate_alpha").output, model.get_layer("gate_alpha_up").output],
    )
    out, alpha, alpha_up = probe.predict([x_l, g], verbose=0)
    assert out.shape == x_l.shape
    assert alpha.shape == (2, 8, 8, 1)
    assert alpha_up.shape == (2, 16, 16, 1)
    for a in (alpha, alpha_up):
        assert a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_allclose(out, x_l * alpha_up, rtol=1e-5, atol=1e-6)
    # W_x is strided to the gating grid (f = 2): 2x2 kernel, stride 2, no bias
    W_x = model.get_layer("gate_W_x")
    assert W_x.kernel.shape == (2, 2, 8, 4) and W_x.strides == (2, 2) and not W_x.use_bias


def test_attention_gate_zero_gating_gives_known_constant_weight():
    model = _gate_model()
    b_g = np.array([0.5, -1.0, 2.0, 0.3], dtype="float32")
    w_psi = np.array([0.7, 1.5, -0.4, 2.0], dtype="float32")
    b_psi = np.float32(-0.25)
    W_x = model.get_layer("gate_W_x")
    W_x.set_weights([np.zeros_like(W_x.get_weights()[0])])
    W_g = model.get_layer("gate_W_g")
    W_g.set_weights([np.random.default_rng(1).normal(size=W_g.kernel.shape).astype("float32"), b_g])
    model.get_layer("gate_psi").set_weights([w_psi.reshape(1, 1, 4, 1), np.array([b_psi])])

    rng = np.random.default_rng(2)
    x_l = rng.normal(size=(3, 16, 16, 8)).astype("float32")
    g = np.zeros((3, 8, 8, 16), dtype="float32")
    out = model.predict([x_l, g], verbose=0)

    # by hand: q = b_psi + psi . ReLU(b_g) = -0.25 + 0.7*0.5 + 1.5*0 - 0.4*2 + 2*0.3 = -0.1
    q = b_psi + float(w_psi @ np.maximum(b_g, 0.0))
    assert q == pytest.approx(-0.1, abs=1e-6)
    np.testing.assert_allclose(out, x_l * _sigmoid(q), rtol=1e-5, atol=1e-6)


def test_attention_gate_alpha_matches_paper_formula():
    """alpha on the gating grid equals sigmoid(psi^T ReLU(W_x^T x + W_g^T g + b_g) + b_psi)."""
    model = _gate_model(x_shape=(8, 8, 3), g_shape=(4, 4, 5), inter=6)
    rng = np.random.default_rng(3)
    for layer_name in ("gate_W_x", "gate_W_g", "gate_psi"):
        layer = model.get_layer(layer_name)
        layer.set_weights([rng.normal(size=w.shape).astype("float32") for w in layer.get_weights()])
    x_l = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    g = rng.normal(size=(2, 4, 4, 5)).astype("float32")
    alpha = keras.Model(model.inputs, model.get_layer("gate_alpha").output).predict([x_l, g], verbose=0)

    K_x = model.get_layer("gate_W_x").get_weights()[0]  # (2, 2, 3, 6)
    K_g, b_g = model.get_layer("gate_W_g").get_weights()
    K_psi, b_psi = model.get_layer("gate_psi").get_weights()
    # non-overlapping 2x2 patches: (N, 4, 2, 4, 2, C) -> W_x^T x on the gating grid
    patches = x_l.reshape(2, 4, 2, 4, 2, 3)
    wx = np.einsum("nuavbc,abck->nuvk", patches, K_x)
    wg = g @ K_g[0, 0] + b_g
    q = np.maximum(wx + wg, 0.0) @ K_psi[0, 0] + b_psi
    np.testing.assert_allclose(alpha, _sigmoid(q), rtol=1e-4, atol=1e-5)


def test_attention_gate_rejects_incompatible_shapes():
    x_l = keras.Input((12, 12, 4))
    g = keras.Input((5, 5, 4))
    with pytest.raises(ValueError, match="integer multiple"):
        apply_attention_gate(x_l, g, 2, name="bad")


# --------------------------------------------------------------------------------------
# U-Net builders
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [32, 64, 96])
@pytest.mark.parametrize("attention", [False, True])
def test_unet_output_shape(size, attention):
    model = build_unet(image_size=size, base_filters=4, attention=attention)
    assert model.name == ("attention_unet" if attention else "unet")
    out = model.predict(_images(2, size), verbose=0)
    assert out.shape == (2, size, size, 1)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert model.get_layer("mask").dtype == "float32"
    gates = attention_layer_names(model)
    assert gates == (["dec1_att_alpha", "dec2_att_alpha", "dec3_att_alpha", "dec4_att_alpha"] if attention else [])


def test_unet_layer_names_and_filters():
    model = build_unet(image_size=32, base_filters=4, depth=4, dropout=0.2)
    assert model.get_layer("enc1_1_conv").filters == 4
    assert model.get_layer("enc4_2_conv").filters == 32
    assert model.get_layer("bottleneck_1_conv").filters == 64
    assert model.get_layer("dec1_upconv").filters == 4
    assert model.get_layer("bottleneck_dropout").rate == pytest.approx(0.2)
    assert model.get_layer("rescale").scale == pytest.approx(1 / 255)


def test_unet_other_depth():
    model = build_unet(image_size=24, base_filters=4, depth=3)
    assert model.predict(_images(1, 24), verbose=0).shape == (1, 24, 24, 1)
    # depth 3: three encoder levels and three pools, a bottleneck at 24 / 2**3 = 3 px with
    # 4 * 2**3 filters, and three decoder levels back up to full resolution
    names = [layer.name for layer in model.layers]
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert [layer.name for layer in pools] == ["enc1_pool", "enc2_pool", "enc3_pool"]
    assert not any(name.startswith(("enc4", "dec4")) for name in names)
    bottleneck = model.get_layer("bottleneck_2_relu").output
    assert tuple(bottleneck.shape) == (None, 3, 3, 32)
    assert [model.get_layer(f"dec{i}_upconv").output.shape[1] for i in (3, 2, 1)] == [6, 12, 24]
    assert read_contract(model).details["depth"] == 3


@pytest.mark.parametrize("encoder", ["resnet50", "densenet121"])
def test_encoder_unet_output_shape_and_flat_graph(encoder):
    model = build_unet(image_size=64, base_filters=4, attention=True, encoder=encoder)
    assert model.name == f"attention_unet_{encoder}"
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    for layer_name in unet.ENCODER_LAYERS[encoder]["skips"]:
        model.get_layer(layer_name)
    out = np.asarray(model(_images(1, 64), training=False))  # eager: no tf.function trace
    assert out.shape == (1, 64, 64, 1)
    assert out.min() >= 0.0 and out.max() <= 1.0
    # dec1 (full resolution) has no skip, so no gate
    assert attention_layer_names(model) == [f"dec{i}_att_alpha" for i in range(2, 6)]


def test_encoder_normalisation_matches_keras_preprocessing():
    model = build_unet(image_size=32, base_filters=4, encoder="resnet50")
    probe = keras.Model(model.input, model.get_layer("imagenet_norm").output)
    x = _images(1, 32)
    got = probe.predict(x, verbose=0)
    rgb = np.repeat(x, 3, axis=-1)
    expected = keras.applications.resnet.preprocess_input(rgb.copy())
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
@pytest.mark.parametrize("encoder", ["none", "resnet50"])
def test_save_load_attention_unet_same_output(tmp_path, encoder):
    size = 32 if encoder == "none" else 64
    model = build_unet(image_size=size, base_filters=4, attention=True, encoder=encoder, dropout=0.1)
    model.compile(optimizer="adam", loss=BCEDiceLoss(alpha=0.3), metrics=[DiceCoefficient()])
    loaded, path = save_and_reload(model, tmp_path / "attention_unet.keras")
    x = _images(2, size, seed=5)
    np.testing.assert_allclose(
        np.asarray(loaded(x, training=False)), np.asarray(model(x, training=False)), atol=1e-6
    )
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    contract = read_contract(loaded)
    assert contract == read_contract(path) and contract.task == "segmentation"
    assert contract.normalization == ("unit" if encoder == "none" else "caffe")
    assert not loaded.compiled  # the inference file holds no loss, metric or optimizer
    # a training checkpoint (plain model.save) keeps the compile state
    checkpoint = tmp_path / "checkpoint.keras"
    model.save(checkpoint)
    restored = keras.models.load_model(checkpoint, safe_mode=True)
    assert isinstance(restored.loss, BCEDiceLoss) and restored.loss.alpha == pytest.approx(0.3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image_size": 8}, "multiple of 16"),
        ({"image_size": 40}, "multiple of 16"),
        ({"image_size": 0}, ">= 1"),
        ({"image_size": 48, "encoder": "resnet50"}, "multiple of 32"),
        ({"image_size": 64, "encoder": "vgg"}, "encoder must be one of"),
        ({"image_size": 64, "encoder": "resnet50", "depth": 3}, "depth=3"),
        ({"image_size": 64, "encoder_weights": "imagenet"}, "needs an encoder"),
        ({"image_size": 64, "dropout": 1.0}, "dropout"),
    ],
)
def test_bad_options_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_unet(base_filters=4, **kwargs)


# --------------------------------------------------------------------------------------
# Encoder weights (never downloads)
# --------------------------------------------------------------------------------------


def test_imagenet_weights_missing_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=str(tmp_path / "models")) as info:
        build_unet(image_size=64, base_filters=4, encoder="resnet50", encoder_weights="imagenet")
    message = str(info.value)
    assert "\n" not in message
    assert IMAGENET_WEIGHT_FILES["resnet50"] in message and "https://" in message


def test_imagenet_weights_found_in_keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    target = tmp_path / "models" / IMAGENET_WEIGHT_FILES["densenet121"]
    target.parent.mkdir()
    target.write_bytes(b"")  # only the lookup is tested here
    assert resolve_encoder_weights("densenet121", "imagenet") == str(target)
    assert resolve_encoder_weights("densenet121", "none") is None


def test_missing_weights_path_raises(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="not found"):
        build_unet(image_size=64, base_filters=4, encoder="densenet121",
                   encoder_weights=str(tmp_path / "nope.h5"))


def test_encoder_weights_loaded_from_file(tmp_path):
    reference = keras.applications.DenseNet121(include_top=False, weights=None, input_shape=(64, 64, 3))
    path = tmp_path / "densenet121.weights.h5"
    reference.save_weights(path)
    model = build_unet(image_size=64, base_filters=4, encoder="densenet121", encoder_weights=str(path))
    for layer_name in ("conv1_conv", "conv5_block16_2_conv", "bn"):
        for got, expected in zip(model.get_layer(layer_name).get_weights(),
                                 reference.get_layer(layer_name).get_weights()):
            np.testing.assert_array_equal(got, expected)
