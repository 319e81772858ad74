"""Dice by tumor size: the groups of a hand-worked case, and the run report's table."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from bone_tumor_tf.evaluation.reports.markdown import format_ci
from bone_tumor_tf.evaluation.reports.segmentation import write_segmentation_report
from bone_tumor_tf.evaluation.segmentation import dice_by_tumor_size, evaluate_segmentation


def row(area_pixels, dice, side=100):
    return {"image_id": f"a{area_pixels}", "label": "benign" if area_pixels else "normal",
            "height": side, "width": side, "dice": dice, "true_pixels": area_pixels,
            "iou": dice, "predicted_pixels": 0}


# Seven tumor images in shuffled order, plus two normals that must be left out. Areas as
# shares of a 100 x 100 image: 0.001 ... 0.07; one 200 x 200 image of 800 pixels = 0.02.
PER_IMAGE = [row(300, 0.6), row(0, 1.0), row(10, 0.0), row(700, 0.9), row(100, 0.2),
             row(800, 0.5, side=200), row(0, 0.0), row(50, 0.0), row(500, 0.7)]


def test_groups_of_a_hand_worked_case():
    # sorted areas: 0.001 (0.0), 0.005 (0.0), 0.01 (0.2) | 0.02 (0.5), 0.03 (0.6) |
    # 0.05 (0.7), 0.07 (0.9): seven images in groups of 3, 2, 2.
    groups = dice_by_tumor_size(PER_IMAGE)
    assert [g["n"] for g in groups] == [3, 2, 2]
    assert [g["area_min"] for g in groups] == pytest.approx([0.001, 0.02, 0.05])
    assert [g["area_max"] for g in groups] == pytest.approx([0.01, 0.03, 0.07])
    assert [g["dice_mean"] for g in groups] == pytest.approx([0.2 / 3, 0.55, 0.8])
    assert [g["missed"] for g in groups] == pytest.approx([2 / 3, 0.0, 0.0])


def test_fewer_tumors_than_groups_and_no_tumor():
    assert [g["n"] for g in dice_by_tumor_size(PER_IMAGE[:3], n_groups=3)] == [1, 1]
    assert dice_by_tumor_size([row(0, 1.0)]) == []
    with pytest.raises(ValueError, match="n_groups"):
        dice_by_tumor_size(PER_IMAGE, n_groups=0)


def test_evaluation_and_report_carry_the_size_table(tmp_path):
    """Through evaluate_segmentation: a missed 2-pixel tumor, a half-found 10-pixel one,
    a perfect 40-pixel one (Dice 0, 2*5/(5+10), 1) and a normal image left empty."""
    masks, probs = [], []
    for n_true, n_found in ((2, 0), (10, 5), (40, 40), (0, 0)):
        mask = np.zeros((10, 10), bool)
        mask.flat[:n_true] = True
        prob = np.zeros((10, 10), np.float32)
        prob.flat[:n_found] = 0.9
        masks.append(mask)
        probs.append(prob)
    records = [SimpleNamespace(image_id=f"i{k}", group=f"p{k}",
                               label="normal" if k == 3 else "benign") for k in range(4)]
    predictions = SimpleNamespace(records=records, probabilities=probs, masks=masks,
                                  is_normal=[False, False, False, True])
    metrics = evaluate_segmentation(predictions, threshold=0.5)
    groups = metrics["dice_by_tumor_size"]
    assert [g["n"] for g in groups] == [1, 1, 1]
    assert [g["dice_mean"] for g in groups] == pytest.approx([0.0, 2 / 3, 1.0])
    assert [g["missed"] for g in groups] == [1.0, 0.0, 0.0]
    assert [g["area_min"] for g in groups] == pytest.approx([0.02, 0.10, 0.40])
    text = write_segmentation_report(tmp_path, metrics, title="t", data_source="d",
                                     split_kind="s", model_info={"a": "b"}).read_text()
    assert "### Dice by tumor size" in text
    assert "| 2.00 - 2.00 | 1 | 0.000 | 1.000 |" in text
    assert "| 10.00 - 10.00 | 1 | 0.667 | 0.000 |" in text
    # the test figures come with their intervals over the 4 patients
    assert metrics["bootstrap"]["resampled"] == "patients"
    tumor_dice = metrics["bootstrap"]["tumor_dice_mean"]
    assert tumor_dice["estimate"] == pytest.approx(metrics["tumor_dice_mean"])
    assert "percentile bootstrap over the 4 patients" in text
    assert f"| Dice, mean over tumor images | {format_ci(tumor_dice)} |" in text
