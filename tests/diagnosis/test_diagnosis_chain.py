"""The diagnosis chain: a perfect segmenter reproduces the gt-box oracle exactly."""

from __future__ import annotations

import numpy as np
import pytest

from bone_tumor_tf.data.btxrd import BTXRDDataset
from bone_tumor_tf.data.images import read_image_with_scale
from bone_tumor_tf.data.labelme import parse_labelme
from bone_tumor_tf.data.prepare import prepare_record
from bone_tumor_tf.diagnosis.chain import (
    Diagnosis,
    RegionFinding,
    combine_with_whole_image,
    diagnose_image,
    image_probabilities,
)
from bone_tumor_tf.diagnosis.regions import Region

NAMES = ("normal", "benign", "malignant")
SIZE = 48


def _classify(crops: np.ndarray) -> np.ndarray:
    """A deterministic stand-in classifier: any change of the crop changes its output."""
    x = crops.reshape(len(crops), -1).astype(np.float64)
    logits = np.stack([x.mean(1) / 50, x.std(1) / 30, (x[:, ::7].sum(1) % 97) / 40], 1)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _box_segmenter(boxes):
    """A perfect segmenter: probability 1 exactly on the ground-truth tumor boxes."""
    def segment(original):
        out = np.zeros(original.shape[:2], np.float32)
        for x0, y0, x1, y1 in boxes:
            out[int(y0):int(np.floor(y1)) + 1, int(x0):int(np.floor(x1)) + 1] = 1.0
        return out
    return segment


def test_perfect_segmenter_gives_the_oracle_classification(synthetic_btxrd):
    dataset = BTXRDDataset.load(synthetic_btxrd)
    checked = 0
    for record in dataset.records:
        if record.annotation is None:
            continue
        annotation = parse_labelme(record.annotation)
        if len(annotation.boxes) != 1:
            continue  # the oracle crops the union of several boxes, the chain each tumor
        original, _ = read_image_with_scale(record.path)
        oracle_input, _, _ = prepare_record(record, SIZE, "gt-box")
        result = diagnose_image(original, _box_segmenter(annotation.boxes), _classify, NAMES,
                                SIZE, threshold=0.5, min_area=1)
        assert len(result.regions) == 1
        expected = _classify(oracle_input[None])[0]
        got = [result.regions[0].probabilities[n] for n in NAMES]
        np.testing.assert_array_equal(got, expected)
        checked += 1
    assert checked >= 5


def _core_segmenter(boxes):
    """A segmenter sure only of each tumor's middle: 0.95 on the central half of the box,
    0.6 on the rest of it (a high mask threshold keeps just the core)."""
    def segment(original):
        out = np.zeros(original.shape[:2], np.float32)
        for x0, y0, x1, y1 in boxes:
            x0, y0, x1, y1 = int(x0), int(y0), int(np.floor(x1)), int(np.floor(y1))
            out[y0:y1 + 1, x0:x1 + 1] = 0.6
            qx, qy = (x1 - x0) // 4, (y1 - y0) // 4
            out[y0 + qy:y1 - qy + 1, x0 + qx:x1 - qx + 1] = 0.95
        return out
    return segment


def test_box_threshold_crops_the_tumor_extent_around_a_confident_core(synthetic_btxrd):
    """At a mask threshold of 0.9 the region is the core; with the box at 0.5 the crop is
    the whole tumor's, so the reading is the oracle's again (without it, it is not)."""
    dataset = BTXRDDataset.load(synthetic_btxrd)
    same, differs = 0, 0
    for record in dataset.records:
        if record.annotation is None:
            continue
        annotation = parse_labelme(record.annotation)
        if len(annotation.boxes) != 1:
            continue
        original, _ = read_image_with_scale(record.path)
        oracle_input, _, _ = prepare_record(record, SIZE, "gt-box")
        expected = _classify(oracle_input[None])[0]
        for level in (0.5, None):
            result = diagnose_image(original, _core_segmenter(annotation.boxes), _classify,
                                    NAMES, SIZE, threshold=0.9, min_area=1, box_threshold=level)
            assert len(result.regions) == 1
            got = np.array([result.regions[0].probabilities[n] for n in NAMES])
            if level == 0.5:
                np.testing.assert_array_equal(got, expected)
                assert result.regions[0].region.score == pytest.approx(0.95)
                same += 1
            else:
                differs += not np.array_equal(got, expected)
    assert same >= 5 and differs == same


def test_no_region_means_normal_and_specks_are_ignored():
    original = np.full((80, 100), 90, np.uint8)
    speck = np.zeros((80, 100), np.float32)
    speck[3:5, 3:5] = 0.9
    result = diagnose_image(original, lambda image: speck, _classify, NAMES, SIZE,
                            min_area=10)
    assert result.regions == [] and result.finding == "normal"
    assert result.probabilities == {"normal": 1.0, "benign": 0.0, "malignant": 0.0}


def _finding(score, q):
    return RegionFinding(Region((0, 0, 9, 9), score, 100), dict(zip(NAMES, q, strict=True)),
                         geometry=None)


def test_image_probabilities_follow_the_most_suspicious_region():
    weak_malignant = _finding(0.6, (0.7, 0.05, 0.25))   # evidence 0.6 * 0.3 = 0.18
    clear_benign = _finding(0.9, (0.1, 0.8, 0.1))       # evidence 0.9 * 0.9 = 0.81
    p = image_probabilities([weak_malignant, clear_benign])
    assert p == pytest.approx({"normal": 1 - 0.81, "benign": 0.72, "malignant": 0.09})
    assert sum(p.values()) == pytest.approx(1.0)
    assert clear_benign.label == "benign" and weak_malignant.label == "malignant"
    assert weak_malignant.detection_score == pytest.approx(0.6 * 0.25)
    diagnosis = Diagnosis(p, [weak_malignant, clear_benign], np.zeros((2, 2)))
    assert diagnosis.finding == "benign"


def test_whole_image_combination_and_weight_range():
    chain = {"normal": 0.2, "benign": 0.7, "malignant": 0.1}
    whole = {"normal": 0.6, "benign": 0.1, "malignant": 0.3}
    assert combine_with_whole_image(chain, whole, 0.25) == pytest.approx(
        {"normal": 0.3, "benign": 0.55, "malignant": 0.15})
    assert combine_with_whole_image(chain, whole, 0.0) == chain
    with pytest.raises(ValueError, match="must be in \\[0, 1\\]"):
        combine_with_whole_image(chain, whole, 1.5)


def test_explanations_are_mapped_into_each_region_on_the_original():
    original = np.full((120, 160), 60, np.uint8)
    probs = np.zeros((120, 160), np.float32)
    probs[20:40, 30:60] = 0.9
    probs[70:100, 100:150] = 0.8
    seen = {}

    def explain(crops, targets):
        seen["targets"] = targets
        return np.ones(crops.shape, np.float32)

    result = diagnose_image(original, lambda image: probs, _classify, NAMES, SIZE,
                            explain=explain)
    assert len(result.regions) == 2
    for finding in result.regions:
        x0, y0, x1, y1 = finding.region.box
        heat = finding.heatmap
        assert heat.shape == original.shape
        assert heat[y0:y1 + 1, x0:x1 + 1].min() == pytest.approx(1.0)
        outside = np.ones_like(heat, bool)
        outside[y0:y1 + 1, x0:x1 + 1] = False
        assert heat[outside].max() == 0.0
    assert list(seen["targets"]) == [NAMES.index(f.label) for f in result.regions]


def test_classifier_without_the_three_classes_is_refused():
    with pytest.raises(ValueError, match="three-class normal / benign / malignant"):
        diagnose_image(np.zeros((10, 10), np.uint8), lambda i: np.zeros((10, 10)), _classify,
                       ("normal", "tumor"), SIZE)


def test_image_metrics_match_hand_computation_and_paired_bootstrap_is_paired():
    from sklearn.metrics import roc_auc_score

    from bone_tumor_tf.evaluation.diagnosis import (
        false_tumor_rate,
        image_metrics,
        oracle_advantage_recovered,
        paired_bootstrap,
    )

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [40, 30, 10])
    good = np.eye(3)[y] * 0.6 + rng.dirichlet([1, 1, 1], len(y)) * 0.4
    noisy = rng.dirichlet([1, 1, 1], len(y))
    m = image_metrics(y, good)
    predicted = good.argmax(1)
    recalls = [np.mean(predicted[y == k] == k) for k in range(3)]
    assert m["accuracy"] == pytest.approx(np.mean(predicted == y))
    assert m["balanced_accuracy"] == pytest.approx(np.mean(recalls))
    assert m["recall"]["malignant"] == pytest.approx(recalls[2])
    assert m["macro_auc"] == pytest.approx(roc_auc_score(y, good, multi_class="ovr"))
    result = paired_bootstrap(y, {"good": good, "noisy": noisy, "same": good},
                              [("good", "noisy"), ("good", "same")], n_bootstrap=300)
    acc = result["good - noisy"]["accuracy"]
    assert acc["low"] <= acc["estimate"] <= acc["high"] and acc["low"] > 0
    # a system against itself: every paired replicate differs by exactly 0
    same = result["good - same"]["balanced_accuracy"]
    assert same["low"] == same["high"] == same["estimate"] == 0.0
    assert oracle_advantage_recovered(0.6, 0.8) == pytest.approx((0.6 - 1 / 3) / (0.8 - 1 / 3))
    assert oracle_advantage_recovered(0.5, 0.3) is None
    rate = false_tumor_rate(["normal", "benign", "normal", "normal", "malignant"],
                            ["normal", "normal", "normal", "normal", "malignant"])
    assert rate["rate"] == pytest.approx(0.25) and rate["n_normal"] == 4
