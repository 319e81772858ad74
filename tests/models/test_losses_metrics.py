"""Segmentation losses and metrics (``models.losses``, ``models.metrics``,
``evaluation.segmentation``) against hand / NumPy computations."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bone_tumor_tf.evaluation.segmentation import (
    dice_score,
    iou_score,
    resize_mask,
    segmentation_report,
)
from bone_tumor_tf.models.losses import (
    BCEDiceLoss,
    bce_per_image,
    soft_dice_loss,
    soft_dice_per_image,
)
from bone_tumor_tf.models.metrics import BestThresholdDice, DiceCoefficient

EPS = 1e-7


def _np_soft_dice(y, p, smooth=1.0):
    axes = tuple(range(1, y.ndim))
    return (2 * (y * p).sum(axes) + smooth) / (y.sum(axes) + p.sum(axes) + smooth)


def _np_bce(y, p):
    q = np.clip(p, EPS, 1 - EPS)
    return -(y * np.log(q) + (1 - y) * np.log(1 - q)).mean(axis=tuple(range(1, y.ndim)))


def _random_batch(seed=0, n=4, size=16):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, size, size, 1)) < 0.3).astype("float32")
    y[0] = 0.0  # one empty (normal) image
    p = rng.random((n, size, size, 1)).astype("float32")
    return y, p


# --------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------


def test_soft_dice_hand_worked():
    # image 0: y = [1, 1, 0, 0], p = [.5, 1, 0, .5]: I = 1.5, |y| + |p| = 2 + 2
    #   Dice = (2 * 1.5 + 1) / (4 + 1) = 0.8
    # image 1: empty truth, empty prediction: Dice = (0 + 1) / (0 + 1) = 1
    y = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 0]]], dtype="float32")[..., None]
    p = np.array([[[0.5, 1], [0, 0.5]], [[0, 0], [0, 0]]], dtype="float32")[..., None]
    np.testing.assert_allclose(soft_dice_per_image(y, p), [0.8, 1.0], rtol=1e-6)
    assert float(soft_dice_loss(y, p)) == pytest.approx(1 - 0.9, abs=1e-6)


def test_soft_dice_empty_truth_penalises_false_positive_mass():
    y = np.zeros((1, 4, 4, 1), dtype="float32")
    p = np.zeros((1, 4, 4, 1), dtype="float32")
    p[0, 0, :2] = 1.0  # 2 confident false-positive pixels: Dice = 1 / (2 + 1)
    assert float(soft_dice_per_image(y, p)[0]) == pytest.approx(1 / 3, rel=1e-6)
    assert float(soft_dice_per_image(y, p, smooth=10.0)[0]) == pytest.approx(10 / 12, rel=1e-6)


def test_soft_dice_random_vs_numpy_and_rank3_truth():
    y, p = _random_batch(1)
    np.testing.assert_allclose(soft_dice_per_image(y, p), _np_soft_dice(y, p), rtol=1e-5)
    assert float(soft_dice_loss(y, p)) == pytest.approx(1 - _np_soft_dice(y, p).mean(), rel=1e-5)
    # (N, H, W) truth against (N, H, W, 1) predictions
    np.testing.assert_allclose(soft_dice_per_image(y[..., 0], p), _np_soft_dice(y, p), rtol=1e-5)


def test_bce_per_image_vs_numpy():
    y, p = _random_batch(2)
    p[1, 0, 0, 0] = 0.0  # clipped, stays finite
    np.testing.assert_allclose(bce_per_image(y, p), _np_bce(y, p), rtol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.8, 1.0])
def test_bce_dice_loss_vs_numpy(alpha):
    y, p = _random_batch(3)
    expected = (alpha * _np_bce(y, p) + (1 - alpha) * (1 - _np_soft_dice(y, p))).mean()
    assert float(BCEDiceLoss(alpha=alpha)(y, p)) == pytest.approx(expected, rel=1e-5)


def test_bce_dice_loss_hand_worked_and_sample_weight():
    # one 2-pixel image, y = [1, 0], p = [0.5, 0.5], alpha = 0.5, smooth = 1
    #   BCE = -(log .5 + log .5) / 2 = log 2; Dice = (2 * .5 + 1) / (1 + 1 + 1) = 2/3
    #   L = 0.5 * log 2 + 0.5 * (1/3)
    y = np.array([[1.0, 0.0]], dtype="float32")
    p = np.array([[0.5, 0.5]], dtype="float32")
    assert float(BCEDiceLoss()(y, p)) == pytest.approx(0.5 * np.log(2) + 0.5 / 3, rel=1e-6)

    y2, p2 = _random_batch(4)
    per_image = 0.5 * _np_bce(y2, p2) + 0.5 * (1 - _np_soft_dice(y2, p2))
    w = np.array([1.0, 0.0, 2.0, 0.5], dtype="float32")
    got = float(BCEDiceLoss()(y2, p2, sample_weight=w))
    assert got == pytest.approx((w * per_image).sum() / len(w), rel=1e-5)


def test_bce_dice_loss_dice_on_tumor_images_only():
    # Batch of 4 with image 0 empty (normal): its Dice term is left out and the Dice term
    # is the mean over the 3 tumor images; BCE stays the mean over all 4.
    y, p = _random_batch(5)
    bce, dice = _np_bce(y, p), _np_soft_dice(y, p)
    expected = 0.3 * bce.mean() + 0.7 * (1 - dice[1:]).mean()
    loss = BCEDiceLoss(alpha=0.3, dice_on="tumor")
    assert float(loss(y, p)) == pytest.approx(expected, rel=1e-5)
    # A normal image's loss no longer depends on its Dice: only its BCE moves.
    normal_only = y[:1], p[:1]
    assert float(loss(*normal_only)) == pytest.approx(0.3 * bce[0], rel=1e-5)
    # With every mask non-empty the two choices agree.
    y_full = y.copy()
    y_full[0, 0, 0, 0] = 1.0
    assert float(loss(y_full, p)) == pytest.approx(
        float(BCEDiceLoss(alpha=0.3)(y_full, p)), rel=1e-6)


def test_bce_dice_loss_serialization():
    loss = BCEDiceLoss(alpha=0.25, smooth=2.0, dice_on="tumor")
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, BCEDiceLoss)
    assert (restored.alpha, restored.smooth, restored.dice_on, restored.name) == (
        0.25, 2.0, "tumor", "bce_dice")
    with pytest.raises(ValueError):
        BCEDiceLoss(alpha=1.5)
    with pytest.raises(ValueError, match="dice_on"):
        BCEDiceLoss(dice_on="normal")


# --------------------------------------------------------------------------------------
# NumPy metrics
# --------------------------------------------------------------------------------------

P1 = np.array([[1, 1], [0, 0]])
G1 = np.array([[1, 0], [1, 0]])


def test_dice_iou_hand_worked_and_empty_cases():
    # |P n G| = 1, |P| = |G| = 2, |P u G| = 3
    assert dice_score(P1, G1) == pytest.approx(0.5)
    assert iou_score(P1, G1) == pytest.approx(1 / 3)
    empty = np.zeros((2, 2), dtype=bool)
    assert dice_score(empty, empty) == 1.0 and iou_score(empty, empty) == 1.0
    assert dice_score(P1, empty) == 0.0 and iou_score(empty, G1) == 0.0
    assert dice_score(P1.astype(bool), P1.astype(float)) == 1.0


def test_dice_iou_reject_bad_input():
    with pytest.raises(ValueError, match="0/1"):
        dice_score(P1 * 255, G1)
    with pytest.raises(ValueError, match="0/1"):
        iou_score(np.full((2, 2), 0.7), G1)
    with pytest.raises(ValueError, match="shape"):
        dice_score(P1, np.zeros((3, 3)))


def test_dice_iou_relation_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(50):
        fraction = rng.random()
        pred = rng.random((12, 9)) < fraction
        true = rng.random((12, 9)) < rng.random()
        d, j = dice_score(pred, true), iou_score(pred, true)
        assert d >= j - 1e-12
        assert d == pytest.approx(2 * j / (1 + j), abs=1e-12)


def test_segmentation_report_hand_worked():
    # image 0: P1 vs G1 (I=1, |P|=2, |G|=2, U=3): Dice .5, IoU 1/3
    # image 1: one predicted pixel, empty truth (I=0, |P|=1, |G|=0, U=1): Dice 0, IoU 0
    # image 2: empty / empty: Dice 1, IoU 1
    probs = np.array([
        [[0.9, 0.6], [0.2, 0.1]],
        [[0.0, 0.7], [0.0, 0.0]],
        [[0.1, 0.2], [0.3, 0.4]],
    ])
    masks = np.stack([G1, np.zeros((2, 2)), np.zeros((2, 2))]).astype(np.uint8)
    report = segmentation_report(probs[..., None], masks)
    assert report["n_images"] == 3 and report["n_normal"] == 2 and report["n_tumor"] == 1
    assert report["normal_source"] == "empty_mask"
    assert report["dice_per_image"] == pytest.approx([0.5, 0.0, 1.0])
    assert report["iou_per_image"] == pytest.approx([1 / 3, 0.0, 1.0])
    assert report["dice_mean"] == pytest.approx(0.5)
    assert report["dice_median"] == pytest.approx(0.5)
    assert report["iou_mean"] == pytest.approx((1 / 3 + 1) / 3)
    assert report["iou_median"] == pytest.approx(1 / 3)
    assert report["tumor_dice_mean"] == pytest.approx(0.5)
    # pooled: 2 * (1 + 0 + 0) / ((2 + 2) + (1 + 0) + 0) = 0.4; IoU: 1 / (3 + 1 + 0) = 0.25
    assert report["dice_pooled"] == pytest.approx(0.4)
    assert report["iou_pooled"] == pytest.approx(0.25)
    # normal images 1 and 2: one of them has a predicted pixel; pixel fractions 1/4 and 0
    assert report["normal_fp_image_rate"] == pytest.approx(0.5)
    assert report["normal_fp_pixel_fraction"] == pytest.approx(0.125)
    labels = masks.reshape(-1).astype(bool)
    assert report["pixel_auc"] == pytest.approx(roc_auc_score(labels, probs.reshape(-1)))
    assert report["auc_pixels"] == 12

    # explicit is_normal, a higher threshold and a minimum FP size of 2 pixels
    report = segmentation_report(probs, masks, is_normal=[False, True, False], threshold=0.8,
                                 fp_min_pixels=2)
    assert report["normal_source"] == "is_normal" and report["n_normal"] == 1
    assert report["normal_fp_image_rate"] == 0.0
    assert report["dice_per_image"] == pytest.approx([2 / 3, 1.0, 1.0])  # P = {(0,0)}
    assert report["tumor_dice_median"] == pytest.approx((2 / 3 + 1) / 2)


def test_segmentation_report_variable_sizes_single_class_and_errors():
    probs = [np.full((3, 5), 0.2), np.full((4, 2, 1), 0.9)]
    masks = [np.zeros((3, 5)), np.zeros((4, 2, 1))]
    report = segmentation_report(probs, masks)
    assert report["pixel_auc"] is None  # no tumor pixel at all
    assert report["tumor_dice_mean"] is None
    assert report["normal_fp_image_rate"] == 0.5
    assert report["normal_fp_pixel_fraction"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        segmentation_report([np.full((2, 2), 255.0)], [np.zeros((2, 2))])
    with pytest.raises(ValueError, match="masks"):
        segmentation_report([np.zeros((2, 2))], [np.zeros((2, 2)), np.zeros((2, 2))])
    with pytest.raises(ValueError, match="shape"):
        segmentation_report([np.zeros((2, 2))], [np.zeros((2, 3))])


def test_segmentation_report_auc_subsample_deterministic():
    rng = np.random.default_rng(7)
    masks = (rng.random((6, 40, 40)) < 0.2).astype(np.uint8)
    probs = np.clip(0.35 * masks + 0.65 * rng.random((6, 40, 40)), 0, 1)
    full = segmentation_report(probs, masks)
    a = segmentation_report(probs, masks, max_auc_pixels=3000)
    b = segmentation_report(probs, masks, max_auc_pixels=3000)
    assert full["auc_pixels"] == 9600 and a["auc_pixels"] == 3000
    assert a["pixel_auc"] == b["pixel_auc"]
    assert a["pixel_auc"] == pytest.approx(full["pixel_auc"], abs=0.03)
    assert full["pixel_auc"] == pytest.approx(roc_auc_score(masks.reshape(-1), probs.reshape(-1)))


# --------------------------------------------------------------------------------------
# Keras metric
# --------------------------------------------------------------------------------------


def _np_mean_dice(probs, masks, threshold=0.5):
    return np.mean([dice_score(p >= threshold, m) for p, m in zip(probs, masks)])


def test_dice_coefficient_matches_numpy_per_image_mean():
    y, p = _random_batch(5, n=5)
    y[1] = 0.0
    p[1] = 0.1  # empty / empty -> 1
    y[2] = 0.0  # empty truth, predictions -> 0
    metric = DiceCoefficient()
    metric.update_state(y, p)
    expected = _np_mean_dice(p, y)
    assert float(metric.result()) == pytest.approx(expected, rel=1e-5)
    assert float(metric.result()) == pytest.approx(segmentation_report(p, y)["dice_mean"], rel=1e-5)

    # accumulates as a per-image mean over several batches, resets
    y2, p2 = _random_batch(6, n=3)
    metric.update_state(y2, p2)
    all_expected = _np_mean_dice(np.concatenate([p, p2]), np.concatenate([y, y2]))
    assert float(metric.result()) == pytest.approx(all_expected, rel=1e-5)
    metric.reset_state()
    assert float(metric.result()) == 0.0

    metric = DiceCoefficient(threshold=0.8)
    w = np.array([1.0, 2.0, 0.0, 1.0, 1.0])
    metric.update_state(y, p, sample_weight=w)
    scores = np.array([dice_score(pi >= 0.8, yi) for pi, yi in zip(p, y)])
    assert float(metric.result()) == pytest.approx((w * scores).sum() / w.sum(), rel=1e-5)


def test_best_threshold_dice_is_the_max_over_thresholds_of_the_numpy_per_image_mean():
    y, p = _random_batch(7, n=6)
    # a model that has learned but is under-confident: tumor pixels near 0.3, background
    # under 0.25, noisy; one normal image with a faint blob that a low threshold marks
    noise = np.random.default_rng(1).random(p.shape).astype("float32")
    p = (0.3 * y + 0.25 * noise).astype("float32")
    y[1] = 0.0
    p[1, :3, :3] = 0.2
    thresholds = (0.1, 0.3, 0.5, 0.7)
    per_threshold = [np.mean([dice_score(pi >= t, yi) for pi, yi in zip(p, y)])
                     for t in thresholds]
    metric = BestThresholdDice(thresholds)
    metric.update_state(y[:4], p[:4])  # two batches accumulate per image
    metric.update_state(y[4:], p[4:])
    assert float(metric.result()) == pytest.approx(max(per_threshold), rel=1e-5)
    assert max(per_threshold) > per_threshold[2]  # 0.5 is not the best here: the test bites
    w = np.array([1.0, 3.0, 0.0, 1.0, 2.0, 1.0])
    weighted = [(w * [dice_score(pi >= t, yi) for pi, yi in zip(p, y)]).sum() / w.sum()
                for t in thresholds]
    metric.reset_state()
    metric.update_state(y, p, sample_weight=w)
    assert float(metric.result()) == pytest.approx(max(weighted), rel=1e-5)
    restored = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert isinstance(restored, BestThresholdDice) and restored.thresholds == thresholds
    with pytest.raises(ValueError, match="thresholds"):
        BestThresholdDice((0.0, 0.5))


def test_dice_coefficient_config_and_log_name():
    metric = keras.metrics.deserialize(keras.metrics.serialize(DiceCoefficient(threshold=0.3)))
    assert isinstance(metric, DiceCoefficient) and metric.threshold == 0.3 and metric.name == "dice"

    inputs = keras.Input((8, 8, 1))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name="mask")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(loss=BCEDiceLoss(), metrics=[DiceCoefficient()])
    y, p = _random_batch(8, n=4, size=8)
    logs = model.evaluate(p, y, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "dice"}
    expected = _np_mean_dice(model.predict(p, verbose=0), y)
    assert logs["dice"] == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------------------
# resize_mask
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(37, 53), (8, 6), (64, 64), (20, 90)])
def test_resize_mask_binary_and_shape(size):
    rng = np.random.default_rng(0)
    mask = np.zeros((32, 48), dtype=np.uint8)
    mask[8:20, 10:30] = 1
    out = resize_mask(mask, size)
    assert out.shape == size and out.dtype == np.uint8
    assert set(np.unique(out)) <= {0, 1}
    out3 = resize_mask(mask[..., None].astype(bool), size)
    assert out3.shape == (*size, 1)
    probs = rng.random((32, 48))
    assert set(np.unique(resize_mask(probs, size))) <= {0, 1}


def test_resize_mask_geometry():
    mask = np.zeros((20, 40), dtype=np.uint8)
    mask[:, :20] = 1  # left half
    up = resize_mask(mask, (40, 80))
    assert up[:, :38].all() and not up[:, 42:].any()
    np.testing.assert_array_equal(resize_mask(mask, (20, 40)), mask)
    down = resize_mask(mask, (10, 20))
    np.testing.assert_array_equal(down, mask[::2, ::2])
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        resize_mask(mask * 255, (10, 10))
    with pytest.raises(ValueError, match="positive"):
        resize_mask(mask, (0, 10))
