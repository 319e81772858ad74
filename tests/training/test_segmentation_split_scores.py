"""The per-split figures a segmentation run reports for choosing settings on validation."""

from __future__ import annotations

from types import SimpleNamespace

import keras
import numpy as np
import pytest

from bone_tumor_tf.training.segmentation import SegmentationSplit, split_scores


def test_split_scores_by_hand():
    """Tumor Dice and marked normals per split, from a model that outputs its input / 255."""
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Rescaling(1 / 255)(inputs))
    tumor = np.zeros((8, 8), np.uint8)
    tumor[2:6, 2:6] = 1  # 16 pixels
    half = tumor.copy()
    half[2:6, 4:6] = 0  # predicts 8 of the 16: Dice 2 * 8 / 24 = 2/3
    speck = np.zeros_like(tumor)
    speck[0, 0] = 1
    images = np.stack([tumor, half, np.zeros_like(tumor), speck]) * 255
    masks = np.stack([tumor, tumor, np.zeros_like(tumor), np.zeros_like(tumor)])
    records = [SimpleNamespace(label=label) for label in ("benign", "malignant", "normal",
                                                           "normal")]
    part = SegmentationSplit(images.astype(np.uint8), masks, [None] * 4, records)
    scores = split_scores(model, {"val": part}, threshold=0.5, batch_size=2)["val"]
    assert scores["tumor_dice_mean"] == pytest.approx((1 + 2 / 3) / 2)
    assert scores["normal_fp_image_rate"] == 0.5
    assert scores["dice_mean"] == pytest.approx((1 + 2 / 3 + 1 + 0) / 4)
    tumors_only = SegmentationSplit(images[:2].astype(np.uint8), masks[:2], [None] * 2,
                                    records[:2])
    assert split_scores(model, {"t": tumors_only}, 0.5, 2)["t"]["normal_fp_image_rate"] is None


def test_training_warnings_name_a_run_that_did_not_learn():
    import pandas as pd

    from bone_tumor_tf.training.segmentation import training_warnings

    learning = {"val": {"tumor_dice_mean": 0.15, "normal_fp_image_rate": 0.1}}
    # the real BTXRD failure: val_dice at the empty level in every epoch
    flat = pd.DataFrame({"epoch": range(12), "val_dice": [0.50178] * 12})
    warnings = training_warnings(flat, learning)
    assert len(warnings) == 1 and "epoch 1's" in warnings[0] and "12 epochs" in warnings[0]
    rising = pd.DataFrame({"epoch": range(3), "val_dice": [0.0, 0.0, 0.08]})
    assert training_warnings(rising, learning) == []
    assert training_warnings(flat.head(2), learning) == []  # too short to judge
    empty_val = {"val": {"tumor_dice_mean": 0.0, "normal_fp_image_rate": 0.0}}
    assert "no better than an empty mask" in training_warnings(rising, empty_val)[0]
    assert len(training_warnings(flat, empty_val)) == 2
    # no tumor images in val (None): no claim about emptiness
    assert training_warnings(pd.DataFrame(), {"val": {"tumor_dice_mean": None}}) == []
