"""Flip test-time augmentation of the segmenter, against a NumPy formula."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from helpers import save_chain_classifier  # noqa: E402

A, B = 0.02, -2.0  # the stand-in segmenter: p[i, j] = sigmoid(A * x[i, j + 1] + B)


def _right_neighbour_model(size=None):
    """Tumor probability from the right-hand neighbour pixel (zero beyond the edge): a map
    that a mirror changes, so flip averaging is visible."""
    inputs = keras.Input((size, size, 1))
    kernel = np.zeros((1, 3, 1, 1), np.float32)
    kernel[0, 2, 0, 0] = A
    x = keras.layers.Conv2D(1, (1, 3), padding="same", activation="sigmoid", name="shift",
                            kernel_initializer=keras.initializers.Constant(kernel),
                            bias_initializer=keras.initializers.Constant(B))(inputs)
    return keras.Model(inputs, x)


def _reference(images: np.ndarray, tta: str) -> np.ndarray:
    x = images.astype(np.float64)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1)))
    right, left = padded[:, :, 2:], padded[:, :, :-2]

    def sigmoid(v):
        return 1.0 / (1.0 + np.exp(-(A * v + B)))

    if tta == "none":
        return sigmoid(right)
    # the mirrored image's right neighbour is the original's left neighbour
    return (sigmoid(right) + sigmoid(left)) / 2


def test_flip_tta_is_the_mean_with_the_mirrored_map_of_the_mirrored_image():
    from bone_tumor_tf.inference.segmentation import predict_probability_maps

    model = _right_neighbour_model()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5, 8, 12), dtype=np.uint8)
    plain = predict_probability_maps(model, images, batch_size=2)
    flipped = predict_probability_maps(model, images[..., None], batch_size=2, tta="flip")
    assert plain.shape == flipped.shape == (5, 8, 12) and flipped.dtype == np.float32
    np.testing.assert_allclose(plain, _reference(images, "none"), atol=1e-5)
    np.testing.assert_allclose(flipped, _reference(images, "flip"), atol=1e-5)
    assert np.abs(flipped - plain).max() > 0.05  # the augmentation is not a no-op here
    with pytest.raises(ValueError, match="tta"):
        predict_probability_maps(model, images, tta="rotate")


def _save_segmenter(path):
    from bone_tumor_tf.models.contract import ModelContract, attach_contract, save_with_contract

    model = _right_neighbour_model(32)
    attach_contract(model, ModelContract(task="segmentation", class_names=("background", "tumor"),
                                         image_size=32, threshold=0.5, arch="unet"))
    return save_with_contract(model, path)


def test_the_chain_segments_with_its_tta_on_the_original_grid(tmp_path):
    from bone_tumor_tf.diagnosis.models import load_chain_models

    seg = _save_segmenter(tmp_path / "seg.keras")
    cls = save_chain_classifier(tmp_path / "cls.keras")
    image = np.random.default_rng(1).integers(0, 256, (32, 32), dtype=np.uint8)
    for tta in ("none", "flip"):
        chain = load_chain_models(seg, cls, tta=tta)
        assert chain.tta == tta
        (got,) = chain.segment_batch([image])  # 32 px in, 32 px model: no resampling
        np.testing.assert_allclose(got, _reference(image[None], tta)[0], atol=1e-5)
    with pytest.raises(ValueError, match="tta"):
        load_chain_models(seg, cls, tta="rotate")


def test_predict_writes_the_flip_averaged_mask(tmp_path, capsys):
    """``bone-tumor predict --tta flip``: a bright column at x = 10 is the right-hand
    neighbour of column 9 and, in the mirror image, the left-hand neighbour of column 11."""
    import cv2

    from bone_tumor_tf.cli import main

    seg = _save_segmenter(tmp_path / "seg.keras")
    image = np.zeros((32, 32), np.uint8)
    image[:, 10] = 250
    cv2.imwrite(str(tmp_path / "stripe.png"), image)
    columns = {}
    for tta in ("none", "flip"):
        out = tmp_path / tta
        assert main(["predict", "--model", str(seg), str(tmp_path / "stripe.png"), "--out",
                     str(out), "--tta", tta]) == 0
        mask = cv2.imread(str(out / "stripe_mask.png"), cv2.IMREAD_UNCHANGED)
        expected = (_reference(image[None], tta)[0] >= 0.5).astype(np.uint8) * 255
        np.testing.assert_array_equal(mask, expected)
        columns[tta] = sorted(set(np.nonzero(mask)[1]))
    assert columns == {"none": [9], "flip": [9, 11]}
    capsys.readouterr()
