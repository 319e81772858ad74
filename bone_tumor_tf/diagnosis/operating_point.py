"""The chain's operating point, chosen on a validation split, and what that choice costs.

The chain's image-level probability is ``(1 - w) * chain + w * whole`` (the whole-image
model's weight ``w``) and its finding follows a tumor threshold ``t``
(:func:`bone_tumor_tf.evaluation.diagnosis.decide`). :func:`choose_operating_point` picks
``(w, t)`` from one validation run of ``bone-tumor diagnose``: the best balanced accuracy
among the pairs that call at most a given share of the normal radiographs a tumor.
:func:`best_point` picks among several such runs (e.g. one per mask threshold).

A setting chosen as the best of many on one validation split looks better there than it
will elsewhere. :func:`selection_optimism` measures by how much, from the validation rows
alone: the optimism bootstrap (Efron, *JASA* 78:316, 1983; Harrell, Lee & Mark, *Stat Med*
15:361, 1996) repeats the whole choice on resampled validation patients and compares what the
chosen setting scores there with what it scores on the full validation split. Resamples
draw patients, not images, since a patient's radiographs are not independent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bone_tumor_tf.diagnosis.chain import CLASSES
from bone_tumor_tf.evaluation.diagnosis import decide

#: Whole-image weights tried by :func:`choose_operating_point`.
WHOLE_IMAGE_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Tumor thresholds tried by :func:`choose_operating_point` (None: the most probable class).
TUMOR_THRESHOLDS = (None, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def probability_row(probabilities: dict) -> list[float]:
    """A ``{"normal": p, "benign": p, "malignant": p}`` dict as a list in ``CLASSES`` order."""
    return [float(probabilities[c]) for c in CLASSES]


def _usable(rows: Sequence[dict], labels: dict[str, str]) -> dict[str, dict]:
    return {r["file"]: r for r in rows
            if "whole_image_probabilities" in r and "chain_probabilities" in r
            and labels.get(r["file"]) in CLASSES}


class _Grid:
    """Every ``(w, t)`` pair's decisions on a fixed list of images, scored on any subset
    (with repeats) of them: balanced accuracy as scikit-learn's ``balanced_accuracy_score``
    (mean recall over the classes present) and the share of normals called a tumor."""

    def __init__(self, rows: Sequence[dict], y: np.ndarray, weights, tumor_thresholds):
        chain = np.array([probability_row(r["chain_probabilities"]) for r in rows])
        whole = np.array([probability_row(r["whole_image_probabilities"]) for r in rows])
        self.y = y
        self.settings = [(float(w), t) for w in weights for t in tumor_thresholds]
        self.decisions = np.stack([decide((1.0 - w) * chain + w * whole, t)
                                   for w, t in self.settings])

    def scores(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        y = self.y[index]
        decided = self.decisions[:, index]
        correct = decided == y
        recalls = [correct[:, y == c].mean(1) for c in range(len(CLASSES)) if (y == c).any()]
        normal = y == 0
        false_tumor = (decided[:, normal] != 0).mean(1) if normal.any() else None
        return np.mean(recalls, axis=0), false_tumor

    def candidates(self, index: np.ndarray) -> list[dict]:
        accuracy, false_tumor = self.scores(index)
        return [{"weight": w, "tumor_threshold": t, "balanced_accuracy": float(accuracy[k]),
                 "false_tumor_rate": None if false_tumor is None else float(false_tumor[k])}
                for k, (w, t) in enumerate(self.settings)]


def _pick(candidates: list[dict], cap: float | None) -> tuple[dict, bool]:
    """The best candidate under the cap (ties: smaller weight, the most-probable-class rule,
    lower threshold); when none meets it, the fewest false alarms, then the same order."""
    def order(c):
        return (c["balanced_accuracy"], -c["weight"], c["tumor_threshold"] is None,
                -(c["tumor_threshold"] or 0.0))

    allowed = [c for c in candidates if cap is None or c["false_tumor_rate"] is None
               or c["false_tumor_rate"] <= cap]
    if allowed:
        return max(allowed, key=order), True
    return max(candidates, key=lambda c: (-c["false_tumor_rate"], *order(c))), False


def choose_operating_point(rows: Sequence[dict], labels: dict[str, str],
                           weights: Sequence[float] = WHOLE_IMAGE_WEIGHTS,
                           tumor_thresholds: Sequence[float | None] = TUMOR_THRESHOLDS,
                           max_false_tumor_rate: float | None = None) -> dict:
    """``--whole-image-weight`` and ``--tumor-threshold`` from the chain's validation rows.

    Use it on a validation split, never on the test split. ``rows`` are ``diagnoses.jsonl``
    rows written with a whole-image model (``chain_probabilities`` and
    ``whole_image_probabilities``); ``labels`` maps each row's ``file`` to its true class.
    Rows without both, or without a label, are left out. For each weight ``w`` and
    threshold ``t`` the image's class is :func:`~bone_tumor_tf.evaluation.diagnosis.decide`
    of ``(1 - w) * chain + w * whole`` at ``t``. The best balanced accuracy wins among the
    pairs whose share of normal images called a tumor is at most ``max_false_tumor_rate``
    (all pairs when None); when no pair meets it, the pair with the fewest false alarms
    (then the best balanced accuracy) wins. Ties go to the smaller weight (less reliance on
    the whole-image model), then to the most-probable-class rule, then to the lower
    threshold.

    Returns:
        ``{"whole_image_weight", "tumor_threshold", "balanced_accuracy",
        "false_tumor_rate", "max_false_tumor_rate", "met", "candidates": [{"weight",
        "tumor_threshold", "balanced_accuracy", "false_tumor_rate"}, ...]}``.
    """
    usable = list(_usable(rows, labels).values())
    if not usable:
        raise ValueError("no diagnosis row with a whole-image probability and a label")
    y = np.array([CLASSES.index(labels[r["file"]]) for r in usable])
    candidates = _Grid(usable, y, weights, tumor_thresholds).candidates(np.arange(len(y)))
    best, met = _pick(candidates, max_false_tumor_rate)
    return {"whole_image_weight": best["weight"], "tumor_threshold": best["tumor_threshold"],
            "balanced_accuracy": best["balanced_accuracy"],
            "false_tumor_rate": best["false_tumor_rate"],
            "max_false_tumor_rate": max_false_tumor_rate, "met": met,
            "candidates": candidates}


def best_point(points: Sequence[dict]) -> int:
    """Index of the best of several :func:`choose_operating_point` results (one per run):
    those that meet the cap first, then the best balanced accuracy (or, when none meets it,
    the fewest false alarms); ties go to the earlier run."""
    return max(range(len(points)), key=lambda k: (
        points[k]["met"], points[k]["balanced_accuracy"] if points[k]["met"]
        else -points[k]["false_tumor_rate"]))


def resample_indices(groups: Sequence, y: np.ndarray, rng: np.random.Generator
                     ) -> np.ndarray:
    """One bootstrap resample of images by patient: ``len(set(groups))`` patient groups
    drawn with replacement (``rng.integers``), each bringing all its images; drawn again
    until every class present in ``y`` is present (so every resample scores balanced
    accuracy and false alarms over the same classes as the full split)."""
    names, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(names))]
    present = set(np.unique(y).tolist())
    for _ in range(1000):
        drawn = rng.integers(0, len(names), len(names))
        index = np.concatenate([members[g] for g in drawn])
        if set(np.unique(y[index]).tolist()) == present:
            return index
    raise ValueError("no bootstrap resample holds every class: too few patients per class")


def selection_optimism(row_sets: Sequence[Sequence[dict]], labels: dict[str, str], *,
                       groups: dict[str, str] | None = None,
                       weights: Sequence[float] = WHOLE_IMAGE_WEIGHTS,
                       tumor_thresholds: Sequence[float | None] = TUMOR_THRESHOLDS,
                       max_false_tumor_rate: float | None = None, n_resamples: int = 200,
                       seed: int = 0) -> dict:
    """How much better the chosen operating point looks on validation than it should.

    The choice is the whole procedure: :func:`choose_operating_point` on each validation
    run of ``row_sets`` (e.g. one per mask threshold, on the same images), then
    :func:`best_point` among them. Optimism bootstrap (Efron 1983; Harrell, Lee & Mark
    1996): on each of ``n_resamples`` resamples of the validation patients
    (:func:`resample_indices`; ``groups`` maps each file to its patient, None: every image
    its own), make the choice again and take what its setting scores on the resample minus
    what it scores on all validation images; the mean of those differences is the optimism.
    The apparent figure minus it estimates what the procedure's choice scores on new
    patients from the same population; it is an estimate from the validation split, not a
    measurement, and it still tends to the optimistic side when the candidates are many.
    Images are the ones every run has a usable row for.

    Returns:
        ``{"method", "n_resamples", "seed", "n_images", "n_groups", "n_settings",
        "apparent", "optimism", "corrected", "same_choice", "chosen_run",
        "chosen_setting"}``; ``apparent``, ``optimism`` and ``corrected`` hold
        ``balanced_accuracy`` and ``false_tumor_rate`` (None without normal images);
        ``same_choice`` is the share of resamples that chose the setting chosen on all
        images (run ``chosen_run``, ``{"weight", "tumor_threshold"}``).
    """
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    usable = [_usable(rows, labels) for rows in row_sets]
    files = [f for f in usable[0] if all(f in u for u in usable[1:])] if usable else []
    if not files:
        raise ValueError("no image with a usable diagnosis row in every run")
    y = np.array([CLASSES.index(labels[f]) for f in files])
    patients = [f if groups is None else groups.get(f, f) for f in files]
    grids = [_Grid([u[f] for f in files], y, weights, tumor_thresholds) for u in usable]

    def choose(index):
        points = []
        for grid in grids:
            candidates = grid.candidates(index)
            best, met = _pick(candidates, max_false_tumor_rate)
            points.append({**best, "met": met, "setting": candidates.index(best)})
        k = best_point(points)
        return k, points[k]

    everything = np.arange(len(y))
    full = [grid.scores(everything) for grid in grids]

    def on_all(run, setting):
        accuracy, false_tumor = full[run]
        return np.array([accuracy[setting],
                         np.nan if false_tumor is None else false_tumor[setting]])

    def on_resample(point):
        return np.array([point["balanced_accuracy"], np.nan
                         if point["false_tumor_rate"] is None else point["false_tumor_rate"]])

    chosen_run, chosen = choose(everything)
    apparent = on_all(chosen_run, chosen["setting"])
    rng = np.random.default_rng(seed)
    differences, same = [], 0
    for _ in range(n_resamples):
        run, point = choose(resample_indices(patients, y, rng))
        differences.append(on_resample(point) - on_all(run, point["setting"]))
        same += (run, point["setting"]) == (chosen_run, chosen["setting"])
    # every resample holds the classes of the full split, so both columns are complete
    optimism = np.mean(differences, axis=0)

    def as_dict(values):
        return {"balanced_accuracy": float(values[0]),
                "false_tumor_rate": None if np.isnan(values[1]) else float(values[1])}

    weight, threshold = grids[chosen_run].settings[chosen["setting"]]
    return {"method": "optimism bootstrap over patients (Efron 1983; Harrell, Lee & Mark "
                      "1996)",
            "n_resamples": n_resamples, "seed": seed, "n_images": len(y),
            "n_groups": len(set(patients)),
            "n_settings": sum(len(g.settings) for g in grids),
            "apparent": as_dict(apparent), "optimism": as_dict(optimism),
            "corrected": as_dict(apparent - optimism), "same_choice": same / n_resamples,
            "chosen_run": chosen_run,
            "chosen_setting": {"weight": weight, "tumor_threshold": threshold}}
