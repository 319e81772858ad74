"""Several segmenters in the chain: the mean of their maps, against a NumPy formula."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from helpers import save_chain_classifier  # noqa: E402

from bone_tumor_tf.errors import ModelFileError  # noqa: E402


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _save_segmenter(path, weights, bias, size=32, threshold=0.5):
    """p[i, j] = sigmoid(wl * x[i, j-1] + wc * x[i, j] + wr * x[i, j+1] + bias), zero padded:
    a map that a mirror changes, so each segmenter's flip averaging is visible."""
    from bone_tumor_tf.models.contract import ModelContract, attach_contract, save_with_contract

    inputs = keras.Input((size, size, 1))
    kernel = np.asarray(weights, np.float32).reshape(1, 3, 1, 1)
    x = keras.layers.Conv2D(1, (1, 3), padding="same", activation="sigmoid", name="row",
                            kernel_initializer=keras.initializers.Constant(kernel),
                            bias_initializer=keras.initializers.Constant(bias))(inputs)
    model = keras.Model(inputs, x)
    attach_contract(model, ModelContract(task="segmentation", class_names=("background", "tumor"),
                                         image_size=size, threshold=threshold, arch="unet"))
    return save_with_contract(model, path)


def _reference(image, weights, bias, tta):
    def one(x):
        padded = np.pad(x.astype(np.float64), ((0, 0), (1, 1)))
        wl, wc, wr = weights
        return _sigmoid(wl * padded[:, :-2] + wc * padded[:, 1:-1] + wr * padded[:, 2:] + bias)

    if tta == "none":
        return one(image)
    return (one(image) + one(image[:, ::-1])[:, ::-1]) / 2


SEGMENTERS = [((0.0, 0.01, 0.02), -2.0), ((0.03, -0.01, 0.0), -1.0)]


@pytest.fixture()
def saved(tmp_path):
    segs = [_save_segmenter(tmp_path / f"seg{k}.keras", w, b, threshold=0.3 + 0.4 * k)
            for k, (w, b) in enumerate(SEGMENTERS)]
    return segs, save_chain_classifier(tmp_path / "cls.keras")


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_the_ensemble_map_is_the_mean_of_each_segmenters_map(saved, tta):
    from bone_tumor_tf.diagnosis.models import load_chain_models

    segs, cls = saved
    image = np.random.default_rng(2).integers(0, 256, (32, 32), dtype=np.uint8)
    single = [load_chain_models(seg, cls, tta=tta).segment_batch([image])[0] for seg in segs]
    for got, (w, b) in zip(single, SEGMENTERS, strict=True):
        np.testing.assert_allclose(got, _reference(image, w, b, tta), atol=1e-5)
    chain = load_chain_models(segs, cls, tta=tta)
    (both,) = chain.segment_batch([image])
    expected = np.mean([_reference(image, w, b, tta) for w, b in SEGMENTERS], axis=0)
    np.testing.assert_allclose(both, expected, atol=1e-5)
    assert both.dtype == np.float32 and len(chain.segmenters) == 2
    assert np.abs(single[0] - single[1]).max() > 0.05  # the two maps differ: a real mean
    assert chain.paths["segmenter"] == str(segs[0]) and chain.paths["segmenter_2"] == str(segs[1])


def test_the_ensemble_threshold_defaults_to_the_first_segmenters_own(saved):
    from bone_tumor_tf.diagnosis.models import load_chain_models

    (first, second), cls = saved
    assert load_chain_models([first, second], cls).threshold == pytest.approx(0.3)
    assert load_chain_models([second, first], cls).threshold == pytest.approx(0.7)
    assert load_chain_models([second, first], cls, threshold=0.55).threshold == 0.55


def test_segmenters_that_cannot_be_averaged_are_refused_naming_the_file(saved, tmp_path):
    from bone_tumor_tf.diagnosis.models import load_chain_models

    (first, _), cls = saved
    other_size = _save_segmenter(tmp_path / "seg48.keras", *SEGMENTERS[1], size=48)
    with pytest.raises(ModelFileError, match=r"seg48\.keras: input size 48 differs"):
        load_chain_models([first, other_size], cls)
    with pytest.raises(ModelFileError, match=r"cls\.keras: is not a segmentation model"):
        load_chain_models([first, cls], cls)
