"""Detection metrics (AP50 as VOC/COCO define it) and mask components -> scored boxes."""

from __future__ import annotations

import numpy as np
import pytest

from bone_tumor_tf.diagnosis.regions import Region, merge_overlapping, regions_from_probabilities
from bone_tumor_tf.evaluation.detection import (
    Detection,
    all_point_average_precision,
    box_iou,
    detection_metrics,
)


def test_box_iou_uses_inclusive_corners():
    # 10x10 boxes overlapping in a 5x10 strip: 50 / (100 + 100 - 50)
    assert box_iou((0, 0, 9, 9), (5, 0, 14, 9)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 9, 9), (10, 0, 19, 9)) == 0.0
    assert box_iou((3, 4, 8, 9), (3, 4, 8, 9)) == 1.0


def test_average_precision_hand_worked_example():
    # 3 ground-truth boxes; 5 predictions in score order: TP, FP, TP, FP, TP
    # precision: 1, 1/2, 2/3, 2/4, 3/5; recall: 1/3, 1/3, 2/3, 2/3, 1
    # envelope at each rank: 1, 2/3, 2/3, 3/5, 3/5
    # AP = 1/3 * 1 + 0 * 2/3 + 1/3 * 2/3 + 0 * 3/5 + 1/3 * 3/5
    expected = 1 / 3 + (1 / 3) * (2 / 3) + (1 / 3) * (3 / 5)
    flags = np.array([True, False, True, False, True])
    assert all_point_average_precision(flags, 3) == pytest.approx(expected)
    # two ground-truth boxes never found: recall tops out at 1/3
    assert all_point_average_precision(np.array([True, False]), 3) == pytest.approx(1 / 3)


def _ground_truth():
    return {
        "a": [("benign", (10, 10, 29, 29)), ("malignant", (50, 50, 79, 79))],
        "b": [("benign", (0, 0, 19, 19))],
        "n": [],  # a normal image
    }


def test_perfect_boxes_give_ap_1_and_no_boxes_give_0():
    truth = _ground_truth()
    perfect = [Detection(img, label, box, 0.9) for img, items in truth.items()
               for label, box in items]
    metrics = detection_metrics(perfect, truth, ("benign", "malignant"))
    for cls in ("benign", "malignant"):
        assert metrics["per_class"][cls]["ap"] == 1.0
        assert metrics["per_class"][cls]["precision"] == 1.0
        assert metrics["per_class"][cls]["recall"] == 1.0
    assert metrics["map"] == 1.0
    empty = detection_metrics([], truth, ("benign", "malignant"))
    assert empty["map"] == 0.0
    assert empty["per_class"]["benign"]["recall"] == 0.0


def test_matching_wrong_class_duplicates_and_false_positives_on_normals():
    truth = _ground_truth()
    detections = [
        Detection("a", "benign", (11, 11, 30, 30), 0.95),     # TP (IoU 0.81)
        Detection("a", "benign", (10, 10, 29, 29), 0.90),     # duplicate -> FP
        Detection("n", "benign", (5, 5, 20, 20), 0.85),       # on a normal image -> FP
        Detection("b", "benign", (0, 0, 19, 19), 0.60),       # TP
        Detection("a", "benign", (50, 50, 79, 79), 0.99),     # right box, wrong class -> FP
    ]
    metrics = detection_metrics(detections, truth, ("benign", "malignant"))
    benign = metrics["per_class"]["benign"]
    # order by score: FP(0.99), TP(0.95), FP(0.90), FP(0.85), TP(0.60)
    # precision 0, 1/2, 1/3, 1/4, 2/5; recall 0, 1/2, 1/2, 1/2, 1; envelope 1/2,1/2,2/5,2/5,2/5
    assert benign["ap"] == pytest.approx(0.5 * 0.5 + 0.5 * 0.4)
    assert benign["true_positives"] == 2 and benign["n_predictions"] == 5
    assert benign["precision"] == pytest.approx(2 / 5)
    assert benign["recall"] == 1.0
    assert metrics["per_class"]["malignant"]["ap"] == 0.0
    assert metrics["map"] == pytest.approx((0.45 + 0.0) / 2)


def test_iou_just_below_threshold_is_not_a_match():
    truth = {"a": [("benign", (0, 0, 9, 9))]}
    # 10x10 vs 10x20 box containing it: IoU = 100 / 200 = 0.5 -> match; 10x21 -> 0.476 -> no
    hit = detection_metrics([Detection("a", "benign", (0, 0, 9, 19), 1.0)], truth, ("benign",))
    miss = detection_metrics([Detection("a", "benign", (0, 0, 9, 20), 1.0)], truth, ("benign",))
    assert hit["per_class"]["benign"]["ap"] == 1.0
    assert miss["per_class"]["benign"]["ap"] == 0.0


def test_class_without_ground_truth_is_left_out_of_map():
    truth = {"a": [("benign", (0, 0, 9, 9))]}
    metrics = detection_metrics([Detection("a", "benign", (0, 0, 9, 9), 1.0)], truth,
                                ("benign", "malignant"))
    assert metrics["per_class"]["malignant"]["ap"] is None
    assert metrics["map"] == 1.0


def test_components_become_boxes_specks_drop_touching_regions_join():
    probs = np.zeros((100, 120), np.float32)
    probs[10:30, 10:40] = 0.9          # tumor 1: 20 x 30 px
    probs[60:90, 70:100] = 0.7         # tumor 2: 30 x 30 px
    probs[60:90, 100:110] = 0.6        # touching tumor 2 on its right edge -> same region
    probs[5:7, 100:102] = 1.0          # a 4-pixel speck
    probs[50, 50] = 0.4                # below the threshold
    regions = regions_from_probabilities(probs, threshold=0.5, min_area=10)
    assert len(regions) == 2
    first, second = regions                     # descending score
    assert first.box == (10, 10, 39, 29)
    assert first.area == 600 and first.score == pytest.approx(0.9)
    assert second.box == (70, 60, 109, 89)
    assert second.area == 30 * 40
    assert second.score == pytest.approx((0.7 * 900 + 0.6 * 300) / 1200)
    # the speck survives only when the minimum area allows it
    assert len(regions_from_probabilities(probs, threshold=0.5, min_area=4)) == 3


def _core_in_halo() -> np.ndarray:
    probs = np.zeros((100, 120), np.float32)
    probs[10:50, 10:60] = 0.6          # tumor 1's extent: 40 x 50 px at 0.6
    probs[20:30, 20:40] = 0.95         # its confident core: 10 x 20 px
    probs[60:90, 70:110] = 0.7         # a second extent (30 x 40) ...
    probs[65:70, 75:80] = 0.92         # ... holding two cores of 25 px each
    probs[80:85, 100:105] = 0.96
    probs[60:95, 5:40] = 0.8           # an extent with no core: no region at threshold 0.9
    return probs


def test_box_threshold_gives_each_core_the_box_of_its_extent():
    """Regions are found, filtered and scored at the mask threshold exactly as without a box
    threshold; only the box spans the component at the lower level that holds the core."""
    probs = _core_in_halo()
    cores = regions_from_probabilities(probs, threshold=0.9, min_area=20)
    assert [r.box for r in cores] == [(100, 80, 104, 84), (20, 20, 39, 29), (75, 65, 79, 69)]
    extents = regions_from_probabilities(probs, threshold=0.9, min_area=20, box_threshold=0.5)
    assert len(extents) == 2                    # the two cores of one extent share its box
    first, second = extents
    assert first.box == (10, 10, 59, 49)        # tumor 1: the 0.6 extent, not the core
    assert first.area == 200 and first.score == pytest.approx(0.95)
    assert second.box == (70, 60, 109, 89)
    assert second.area == 50 and second.score == pytest.approx((0.92 + 0.96) / 2)
    # the core-less 0.8 patch is still not a region, and a core under min_area still drops
    assert len(regions_from_probabilities(probs, threshold=0.9, min_area=100,
                                          box_threshold=0.5)) == 1


def test_box_threshold_at_or_above_the_mask_threshold_changes_nothing():
    probs = _core_in_halo()
    plain = regions_from_probabilities(probs, threshold=0.65, min_area=20)
    for level in (None, 0.65, 0.9, 1.0):
        assert regions_from_probabilities(probs, 0.65, 20, box_threshold=level) == plain
    # between the levels: the core-less patch (0.8 >= 0.65) is now a region of its own box
    assert (5, 60, 39, 94) in [r.box for r in plain]
    with pytest.raises(ValueError, match="box_threshold=0: must be in"):
        regions_from_probabilities(probs, 0.9, box_threshold=0)


def test_strongly_overlapping_boxes_merge_separate_ones_stay():
    nested = [Region((0, 0, 49, 49), 0.8, 1000), Region((10, 10, 19, 19), 0.6, 100)]
    merged = merge_overlapping(nested, 0.5)
    assert len(merged) == 1
    assert merged[0].box == (0, 0, 49, 49) and merged[0].area == 1100
    assert merged[0].score == pytest.approx((0.8 * 1000 + 0.6 * 100) / 1100)
    apart = [Region((0, 0, 9, 9), 0.8, 100), Region((20, 20, 29, 29), 0.6, 100)]
    assert len(merge_overlapping(apart, 0.5)) == 2


def test_probability_map_must_be_two_dimensional():
    with pytest.raises(ValueError, match="expected an \\(H, W\\) probability map"):
        regions_from_probabilities(np.zeros((4, 4, 1)))
