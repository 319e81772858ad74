"""The cluster (patient) bootstrap: whole groups resampled, checked against the plain one."""

from __future__ import annotations

import numpy as np
import pytest

from bone_tumor_tf.evaluation.classification import evaluate_predictions
from bone_tumor_tf.evaluation.diagnosis import false_tumor_rate, paired_bootstrap
from bone_tumor_tf.evaluation.stats import bootstrap_ci, bootstrap_index_chunks, bootstrap_resamples


def test_one_group_per_case_gives_exactly_the_plain_resamples():
    plain = np.concatenate(list(bootstrap_index_chunks(30, 50, seed=3)))
    for groups in (None, [f"p{i}" for i in range(30)]):
        grouped = np.stack(list(bootstrap_resamples(30, 50, seed=3, groups=groups)))
        np.testing.assert_array_equal(grouped, plain)


def test_a_replicate_holds_every_case_of_each_drawn_group_once_per_draw():
    groups = ["a", "b", "b", "c", "a", "c", "c"]          # a: 0, 4; b: 1, 2; c: 3, 5, 6
    members = {"a": [0, 4], "b": [1, 2], "c": [3, 5, 6]}
    order = ["a", "b", "c"]                                 # numbered by first appearance
    draws = np.concatenate(list(bootstrap_index_chunks(3, 20, seed=1)))
    for drawn, replicate in zip(draws, bootstrap_resamples(7, 20, seed=1, groups=groups),
                                strict=True):
        expected = np.concatenate([members[order[g]] for g in drawn])
        np.testing.assert_array_equal(replicate, expected)
    with pytest.raises(ValueError, match="groups has 2 labels for 7 cases"):
        next(bootstrap_resamples(7, 1, groups=["a", "b"]))


def test_k_identical_radiographs_of_one_patient_count_as_one():
    """A patient with k copies of one radiograph adds no information: resampling patients
    gives the interval of the deduplicated data exactly; resampling radiographs is narrower."""
    rng = np.random.default_rng(0)
    flags = (rng.random(40) < 0.3).astype(float)
    k = 4
    copies, patients = np.repeat(flags, k), np.repeat(np.arange(40), k)
    one = bootstrap_ci(np.mean, flags, n_bootstrap=500, seed=2)
    by_patient = bootstrap_ci(np.mean, copies, n_bootstrap=500, seed=2, groups=patients)
    assert (by_patient["low"], by_patient["high"]) == pytest.approx((one["low"], one["high"]))
    by_image = bootstrap_ci(np.mean, copies, n_bootstrap=500, seed=2)
    assert by_image["high"] - by_image["low"] < 0.7 * (one["high"] - one["low"])


def test_paired_differences_and_false_alarms_resample_patients():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], [20, 15, 5])
    good = np.eye(3)[y] * 0.5 + rng.dirichlet([1, 1, 1], len(y)) * 0.5
    noisy = rng.dirichlet([1, 1, 1], len(y))
    k = 3
    patients = np.repeat(np.arange(len(y)), k)
    systems = {"good": np.repeat(good, k, 0), "noisy": np.repeat(noisy, k, 0)}
    grouped = paired_bootstrap(np.repeat(y, k), systems, [("good", "noisy")],
                               n_bootstrap=200, groups=patients)["good - noisy"]
    single = paired_bootstrap(y, {"good": good, "noisy": noisy}, [("good", "noisy")],
                              n_bootstrap=200)["good - noisy"]
    for metric in ("accuracy", "balanced_accuracy", "macro_auc"):
        assert grouped[metric]["low"] == pytest.approx(single[metric]["low"])
        assert grouped[metric]["high"] == pytest.approx(single[metric]["high"])
    findings = ["benign", "normal", "normal", "normal", "malignant", "normal"]
    labels = ["normal", "normal", "normal", "benign", "malignant", "normal"]
    patients = ["p1", "p1", "p2", "p3", "p3", "p4"]            # normals: p1 x2, p2, p4
    rate = false_tumor_rate(findings, labels, n_bootstrap=300, groups=patients)
    assert rate["rate"] == pytest.approx(0.25) and rate["n_normal"] == 4
    expected = bootstrap_ci(np.mean, np.array([1.0, 0, 0, 0]), n_bootstrap=300,
                            groups=["p1", "p1", "p2", "p4"])
    assert (rate["low"], rate["high"]) == (expected["low"], expected["high"])


def test_a_classifiers_intervals_over_patients_are_wider_than_over_radiographs():
    """Patients with 1-4 radiographs: resampling patients is not resampling cases (the
    vectorised bootstrap is checked against bootstrap_ci in test_evaluation.py)."""
    rng = np.random.default_rng(5)
    sizes = rng.integers(1, 5, size=60)
    # a patient's radiographs are read alike (one reading per patient, repeated)
    patient_labels = rng.integers(0, 3, size=60)
    patient_probs = rng.dirichlet([1, 1, 1], 60) * 0.6 + np.eye(3)[patient_labels] * 0.4
    groups = np.repeat([f"p{i}" for i in range(60)], sizes)
    labels, probs = np.repeat(patient_labels, sizes), np.repeat(patient_probs, sizes, axis=0)
    names = ("normal", "benign", "malignant")
    by_patient = evaluate_predictions(labels, probs, names, n_bootstrap=400, seed=4,
                                      groups=groups)["bootstrap"]
    by_case = evaluate_predictions(labels, probs, names, n_bootstrap=400, seed=4)["bootstrap"]
    assert by_patient["accuracy"]["estimate"] == by_case["accuracy"]["estimate"]

    def width(interval):
        return interval["high"] - interval["low"]

    assert width(by_patient["accuracy"]) > width(by_case["accuracy"])
    with pytest.raises(ValueError, match="groups has 3 labels"):
        evaluate_predictions(labels, probs, names, n_bootstrap=5, groups=["a", "b", "c"])


def test_segmentation_intervals_resample_patients_and_say_so():
    from bone_tumor_tf.evaluation.segmentation import segmentation_intervals

    rows = [{"label": "benign", "dice": d, "predicted_pixels": 9, "group": g}
            for d, g in zip([0.1, 0.8, 0.6, 0.0, 0.9], ["a", "a", "b", "c", "c"], strict=True)]
    rows += [{"label": "normal", "dice": 1.0 - (p > 0), "predicted_pixels": p, "group": g}
             for p, g in zip([0, 5, 0, 0], ["d", "d", "e", "f"], strict=True)]
    out = segmentation_intervals(rows, n_bootstrap=300, seed=2)
    assert (out["resampled"], out["n_patients"], out["n_replicates"]) == ("patients", 6, 300)
    tumor = rows[:5]
    assert out["tumor_dice_mean"] == bootstrap_ci(
        np.mean, np.array([r["dice"] for r in tumor]), n_bootstrap=300, seed=2,
        groups=[r["group"] for r in tumor])
    assert out["normal_fp_image_rate"] == bootstrap_ci(
        np.mean, np.array([0.0, 1, 0, 0]), n_bootstrap=300, seed=2, groups=["d", "d", "e", "f"])
    assert out["dice_mean"]["estimate"] == pytest.approx(np.mean([r["dice"] for r in rows]))
    # rows written before patients were recorded resample images; no normals, no rate
    old = [{k: v for k, v in r.items() if k != "group"} for r in tumor]
    plain = segmentation_intervals(old, n_bootstrap=300, seed=2)
    assert (plain["resampled"], plain["n_patients"]) == ("images", None)
    assert plain["tumor_dice_mean"] == bootstrap_ci(
        np.mean, np.array([r["dice"] for r in tumor]), n_bootstrap=300, seed=2)
    assert plain["normal_fp_image_rate"] is None
