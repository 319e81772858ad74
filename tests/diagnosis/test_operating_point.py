"""The chain's operating point: the tumor-threshold decision rule and its choice on
validation rows under a cap on false alarms among normal radiographs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from bone_tumor_tf.diagnosis.chain import Diagnosis
from bone_tumor_tf.diagnosis.operating_point import choose_operating_point
from bone_tumor_tf.evaluation.diagnosis import decide, image_metrics

PROBS = np.array([[0.50, 0.30, 0.20],   # argmax normal; P(tumor) 0.50
                  [0.40, 0.25, 0.35],   # argmax normal; P(tumor) 0.60, malignant > benign
                  [0.20, 0.40, 0.40],   # benign/malignant tie -> benign
                  [0.90, 0.05, 0.05]])  # P(tumor) 0.10


def test_decide_hand_worked():
    assert decide(PROBS).tolist() == [0, 0, 1, 0]
    assert decide(PROBS, 0.5).tolist() == [1, 2, 1, 0]  # 0.50 >= 0.5 counts as tumor
    assert decide(PROBS, 0.55).tolist() == [0, 2, 1, 0]
    assert decide(PROBS, 0.95).tolist() == [0, 0, 0, 0]


def test_finding_and_image_metrics_follow_the_operating_point():
    names = ("normal", "benign", "malignant")
    diagnosis = Diagnosis(dict(zip(names, PROBS[1], strict=True)), [], np.zeros((2, 2)))
    assert diagnosis.finding == "normal"
    diagnosis.tumor_threshold = 0.6
    assert diagnosis.finding == "malignant"
    y = np.array([1, 2, 1, 0])
    for t in (None, 0.5, 0.55):
        expected = balanced_accuracy_score(y, decide(PROBS, t))
        assert image_metrics(y, PROBS, t)["balanced_accuracy"] == pytest.approx(expected)
    # The threshold moves decisions, never the AUC.
    assert image_metrics(y, PROBS, 0.5)["macro_auc"] == image_metrics(y, PROBS)["macro_auc"]


def _row(name, chain, whole):
    keys = ("normal", "benign", "malignant")
    return {"file": name, "chain_probabilities": dict(zip(keys, chain, strict=True)),
            "whole_image_probabilities": dict(zip(keys, whole, strict=True))}


# Chain and whole-image model agree (so the weight does not matter). Two normals with
# P(tumor) 0.7 and 0.2, a benign at 0.8 and a malignant at 0.6.
ROWS = [_row("n1", (0.3, 0.5, 0.2), (0.3, 0.5, 0.2)), _row("n2", (0.8, 0.1, 0.1),
        (0.8, 0.1, 0.1)), _row("b", (0.2, 0.6, 0.2), (0.2, 0.6, 0.2)),
        _row("m", (0.4, 0.2, 0.4), (0.4, 0.2, 0.4))]
LABELS = {"n1": "normal", "n2": "normal", "b": "benign", "m": "malignant"}


def test_choice_without_a_cap_is_the_best_balanced_accuracy():
    # Most probable class: n1 benign (wrong), n2 normal, b benign, m normal/malignant tie ->
    # normal (wrong): recalls 1/2, 1, 0 -> 0.5. Threshold 0.6: n1 benign (wrong), n2
    # normal, b benign, m malignant: recalls 1/2, 1, 1 -> 5/6, the best; 0.3 ... 0.6 tie,
    # so the lowest (0.3) wins at the smallest weight.
    choice = choose_operating_point(ROWS, LABELS)
    assert choice["whole_image_weight"] == 0.0 and choice["tumor_threshold"] == 0.3
    assert choice["balanced_accuracy"] == pytest.approx(5 / 6)
    assert choice["false_tumor_rate"] == 0.5 and choice["met"]


def test_cap_on_false_alarms_moves_the_threshold_up():
    # At most 0 of the 2 normals called tumor: t = 0.7 clears n1 (0.7 >= 0.7 still counts),
    # so 0.8: n1 normal, n2 normal, b benign (0.8 >= 0.8), m normal -> recalls 1, 1, 0.
    choice = choose_operating_point(ROWS, LABELS, max_false_tumor_rate=0.0)
    assert choice["tumor_threshold"] == 0.8 and choice["false_tumor_rate"] == 0.0
    assert choice["balanced_accuracy"] == pytest.approx(2 / 3) and choice["met"]
    # A cap nothing meets: the fewest false alarms, then the best balanced accuracy.
    rows = [_row("n1", (0.0, 0.5, 0.5), (0.0, 0.5, 0.5))] + ROWS[2:]
    choice = choose_operating_point(rows, LABELS, max_false_tumor_rate=0.0,
                                    tumor_thresholds=(None, 0.5))
    assert not choice["met"] and choice["false_tumor_rate"] == 1.0
    assert len(choice["candidates"]) == 5 * 2


def _random_rows(rng, n, informative=0.0):
    """Rows of ``n`` images with random labels; the chain's probabilities lean towards the
    true class by ``informative`` (0: pure noise), the whole-image model's never do."""
    names = ("normal", "benign", "malignant")
    y = rng.integers(0, 3, n)
    rows, labels = [], {}
    for k in range(n):
        chain = rng.dirichlet(np.ones(3)) * (1 - informative)
        chain[y[k]] += informative
        rows.append(_row(f"img{k}", chain, rng.dirichlet(np.ones(3))))
        labels[f"img{k}"] = names[y[k]]
    return rows, labels


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_grid_scores_resamples_like_scikit_learn():
    """Balanced accuracy and false alarms of every setting on a resample (repeats, and a
    resample with no malignant image) equal scikit-learn's on the repeated rows."""
    from bone_tumor_tf.diagnosis.operating_point import _Grid

    rng = np.random.default_rng(1)
    rows, labels = _random_rows(rng, 40, informative=0.3)
    y = np.array([("normal", "benign", "malignant").index(labels[r["file"]]) for r in rows])
    grid = _Grid(rows, y, (0.0, 0.5), (None, 0.4, 0.7))
    no_malignant = np.flatnonzero(y != 2)
    for index in (rng.integers(0, 40, 40), rng.choice(no_malignant, 30)):
        accuracy, false_tumor = grid.scores(index)
        for k, decisions in enumerate(grid.decisions):
            expected = balanced_accuracy_score(y[index], decisions[index])
            assert accuracy[k] == pytest.approx(expected)
            normal = index[y[index] == 0]
            assert false_tumor[k] == pytest.approx(np.mean(decisions[normal] != 0))
    accuracy, false_tumor = grid.scores(np.flatnonzero(y != 0))  # no normal radiograph
    assert false_tumor is None
    assert accuracy[0] == pytest.approx(balanced_accuracy_score(y[y != 0],
                                                                grid.decisions[0][y != 0]))


def test_choosing_among_settings_on_noise_is_optimistic_and_the_bootstrap_says_so():
    """Chain and whole-image model know nothing: the best of 80 settings on 300 validation
    images beats chance there, and the corrected figure falls back towards chance (1/3)."""
    from bone_tumor_tf.diagnosis.operating_point import selection_optimism

    rng = np.random.default_rng(0)
    rows_a, labels = _random_rows(rng, 300)
    rows_b = [_row(r["file"], rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(3)))
              for r in rows_a]
    result = selection_optimism([rows_a, rows_b], labels, n_resamples=100)
    apparent = result["apparent"]["balanced_accuracy"]
    corrected = result["corrected"]["balanced_accuracy"]
    assert result["n_settings"] == 2 * 40 and result["n_images"] == 300
    assert apparent > 1 / 3 + 0.02
    assert result["optimism"]["balanced_accuracy"] > 0.02
    assert abs(corrected - 1 / 3) < (apparent - 1 / 3) / 2
    # the choice on all images is the one choose_operating_point and best_point make
    from bone_tumor_tf.diagnosis.operating_point import best_point
    points = [choose_operating_point(rows, labels) for rows in (rows_a, rows_b)]
    assert apparent == pytest.approx(points[best_point(points)]["balanced_accuracy"])
    again = selection_optimism([rows_a, rows_b], labels, n_resamples=100)
    assert again == result  # seeded


def test_one_setting_chosen_from_nothing_has_no_optimism():
    from bone_tumor_tf.diagnosis.operating_point import selection_optimism

    rng = np.random.default_rng(2)
    rows, labels = _random_rows(rng, 400, informative=0.4)
    result = selection_optimism([rows], labels, weights=(0.5,), tumor_thresholds=(None,),
                                max_false_tumor_rate=1.0, n_resamples=200)
    point = choose_operating_point(rows, labels, weights=(0.5,), tumor_thresholds=(None,))
    assert result["apparent"]["balanced_accuracy"] == pytest.approx(point["balanced_accuracy"])
    assert result["apparent"]["false_tumor_rate"] == pytest.approx(point["false_tumor_rate"])
    assert result["chosen_setting"] == {"weight": 0.5, "tumor_threshold": None}
    assert abs(result["optimism"]["balanced_accuracy"]) < 0.01
    assert abs(result["optimism"]["false_tumor_rate"]) < 0.01


def test_a_cap_met_on_validation_is_expected_to_be_exceeded():
    """Under a cap, the chosen point sits just below it on validation; on new images its
    false-alarm rate is expected to be higher (negative optimism)."""
    from bone_tumor_tf.diagnosis.operating_point import selection_optimism

    rng = np.random.default_rng(3)
    rows, labels = _random_rows(rng, 300, informative=0.2)
    result = selection_optimism([rows], labels, max_false_tumor_rate=0.15, n_resamples=100)
    assert result["apparent"]["false_tumor_rate"] <= 0.15
    assert result["optimism"]["false_tumor_rate"] < 0
    assert result["corrected"]["false_tumor_rate"] > result["apparent"]["false_tumor_rate"]
    with pytest.raises(ValueError, match="n_resamples"):
        selection_optimism([rows], labels, n_resamples=0)
    with pytest.raises(ValueError, match="no image"):
        selection_optimism([rows[:5], rows[5:]], labels)


def test_each_resample_makes_the_choice_choose_operating_point_would_make():
    """Brute force: rebuild each resample's rows (repeats renamed), choose with
    choose_operating_point per run and best_point across runs, score the winner on all
    images; the mean difference is the optimism selection_optimism reports."""
    from bone_tumor_tf.diagnosis.operating_point import (
        best_point,
        resample_indices,
        selection_optimism,
    )

    rng = np.random.default_rng(4)
    rows_a, labels = _random_rows(rng, 60, informative=0.15)
    rows_b = [_row(r["file"], rng.dirichlet(np.ones(3)), r["whole_image_probabilities"]
                   .values()) for r in rows_a]
    groups = {r["file"]: f"P{k // 3}" for k, r in enumerate(rows_a)}  # 3 images a patient
    runs = [rows_a, rows_b]
    options = {"weights": (0.0, 0.5, 1.0), "tumor_thresholds": (None, 0.4, 0.6),
               "max_false_tumor_rate": 0.3}
    result = selection_optimism(runs, labels, groups=groups, n_resamples=15, seed=7, **options)
    full = [choose_operating_point(rows, labels, **options) for rows in runs]

    def score_on_all(run, point):
        return next((c["balanced_accuracy"], c["false_tumor_rate"])
                    for c in full[run]["candidates"]
                    if (c["weight"], c["tumor_threshold"])
                    == (point["whole_image_weight"], point["tumor_threshold"]))

    y = np.array([("normal", "benign", "malignant").index(labels[r["file"]]) for r in rows_a])
    draws = np.random.default_rng(7)
    differences = []
    for _ in range(15):
        index = resample_indices([groups[r["file"]] for r in rows_a], y, draws)
        resampled_labels = {f"{k}-{rows_a[i]['file']}": labels[rows_a[i]["file"]]
                            for k, i in enumerate(index)}
        points = [choose_operating_point([{**rows[i], "file": f"{k}-{rows[i]['file']}"}
                                          for k, i in enumerate(index)], resampled_labels,
                                         **options) for rows in runs]
        run = best_point(points)
        on_all = score_on_all(run, points[run])
        differences.append((points[run]["balanced_accuracy"] - on_all[0],
                            points[run]["false_tumor_rate"] - on_all[1]))
    expected = np.mean(differences, axis=0)
    assert result["optimism"]["balanced_accuracy"] == pytest.approx(expected[0])
    assert result["optimism"]["false_tumor_rate"] == pytest.approx(expected[1])
    run = best_point(full)
    assert result["apparent"]["balanced_accuracy"] == pytest.approx(
        full[run]["balanced_accuracy"])
    assert result["n_groups"] == 20


def test_resamples_draw_whole_patients_and_keep_every_class():
    from bone_tumor_tf.diagnosis.operating_point import resample_indices

    y = np.array([0, 0, 0, 1, 1, 2, 0, 1])
    groups = ["a", "a", "b", "c", "c", "d", "e", "f"]  # one malignant patient of six
    rng = np.random.default_rng(0)
    for _ in range(50):
        index = resample_indices(groups, y, rng)
        assert set(y[index]) == {0, 1, 2}
        drawn = [groups[i] for i in index]
        for g in set(drawn):  # a drawn patient brings all its radiographs, each time
            assert drawn.count(g) % groups.count(g) == 0


    class FirstPatientOnly:  # a generator that never draws the malignant patient
        def integers(self, low, high, size):
            return np.zeros(size, int)

    with pytest.raises(ValueError, match="every class"):
        resample_indices(groups, y, FirstPatientOnly())
