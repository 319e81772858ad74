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
    # the real BTXRD budget run: threshold 0.97, val tumor Dice 0.0002, 0.7% of normals marked
    strict_budget = {"val": {"tumor_dice_mean": 0.0002, "normal_fp_image_rate": 0.007}}
    (warning,) = training_warnings(rising, strict_budget)
    assert "tumor Dice is 0.0002" in warning and "miss the tumors" in warning
    assert training_warnings(rising, {"val": {"tumor_dice_mean": 0.012,
                                              "normal_fp_image_rate": 0.007}}) == []
    # no tumor images in val (None): no claim about emptiness
    assert training_warnings(pd.DataFrame(), {"val": {"tumor_dice_mean": None}}) == []


def _threshold_case():
    """Two tumor images (mask: the top-left 2 x 2) and two normal images, 4 x 4 maps."""
    mask = np.zeros((4, 4), np.uint8)
    mask[:2, :2] = 1
    sure = np.where(mask, 0.9, 0.3)  # tumor found at every threshold below 0.9
    faint = np.where(mask, 0.6, 0.0)  # found below 0.6 only
    bright_speck, faint_speck = np.zeros((4, 4)), np.zeros((4, 4))
    bright_speck[3, 3], faint_speck[3, 3] = 0.92, 0.5
    probs = np.stack([sure, faint, bright_speck, faint_speck])
    masks = np.stack([mask, mask, np.zeros_like(mask), np.zeros_like(mask)])
    return probs, masks, np.array([False, False, True, True])


def test_threshold_choice_by_hand():
    """Per threshold (tumor Dice mean, normals marked): 0.4 (1, 1), 0.7 (0.5, 0.5), 0.95 (0, 0).

    Over all images (a normal image 1 when left empty) every threshold scores 0.5, so the
    default objective takes the largest, which marks nothing; under a budget the best tumor
    Dice among the thresholds within it wins.
    """
    from bone_tumor_tf.training.segmentation import threshold_choice

    probs, masks, normal = _threshold_case()
    grid = (0.4, 0.7, 0.95)
    plain = threshold_choice(probs, masks, normal, grid, start=0.4)
    assert plain["dice_mean"] == pytest.approx([0.5, 0.5, 0.5])
    assert plain["tumor_dice_mean"] == pytest.approx([1.0, 0.5, 0.0])
    assert plain["normal_marked"] == pytest.approx([1.0, 0.5, 0.0])
    assert plain["chosen"] == 0.95 and plain["budget_met"] is None

    half = threshold_choice(probs, masks, normal, grid, start=0.4, max_normal_marked=0.5)
    assert half["chosen"] == 0.7 and half["budget_met"] is True
    assert half["best_dice"] == pytest.approx(0.5) and half["dice_at_start"] == pytest.approx(1)
    assert threshold_choice(probs, masks, normal, grid, max_normal_marked=1.0)["chosen"] == 0.4
    # start outside the grid: scored, not added to the candidates
    off_grid = threshold_choice(probs, masks, normal, grid, start=0.5, max_normal_marked=0.5)
    assert off_grid["candidates"] == list(grid) and off_grid["dice_at_start"] == pytest.approx(1)

    # no threshold keeps to the budget: the one marking the fewest normal images
    missed = threshold_choice(probs, masks, normal, (0.4, 0.7), max_normal_marked=0.25)
    assert missed["chosen"] == 0.7 and missed["budget_met"] is False


def test_a_budget_needs_normal_images():
    from bone_tumor_tf.errors import BoneTumorError
    from bone_tumor_tf.training.segmentation import threshold_choice

    probs, masks, normal = _threshold_case()
    with pytest.raises(BoneTumorError, match="normal and tumor images"):
        threshold_choice(probs[:2], masks[:2], normal[:2], max_normal_marked=0.15)
