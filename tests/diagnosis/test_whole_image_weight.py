"""Choosing ``--whole-image-weight`` from validation rows of the diagnosis chain (the
most-probable-class rule of :func:`choose_operating_point`)."""

from __future__ import annotations

import pytest

from bone_tumor_tf.diagnosis.operating_point import choose_operating_point


def choose_whole_image_weight(rows, labels):
    """The weight under the most-probable-class rule, and each weight's balanced accuracy."""
    choice = choose_operating_point(rows, labels, tumor_thresholds=(None,))
    return choice["whole_image_weight"], {c["weight"]: c["balanced_accuracy"]
                                          for c in choice["candidates"]}


def _row(name, chain, whole):
    keys = ("normal", "benign", "malignant")
    return {"file": name, "chain_probabilities": dict(zip(keys, chain, strict=True)),
            "whole_image_probabilities": dict(zip(keys, whole, strict=True))}


def test_weight_is_the_smallest_with_the_best_balanced_accuracy():
    # The chain calls everything normal; the whole-image model is right. Hand-worked:
    # w = 0.5 ties benign/malignant with normal and argmax takes normal (balanced
    # accuracy 1/3); from w = 0.75 every image is right (1.0), and 0.75 < 1.0 wins the tie.
    rows = [_row("a", (1, 0, 0), (1, 0, 0)), _row("b", (1, 0, 0), (0, 1, 0)),
            _row("c", (1, 0, 0), (0, 0, 1))]
    labels = {"a": "normal", "b": "benign", "c": "malignant"}
    weight, scores = choose_whole_image_weight(rows, labels)
    assert weight == 0.75
    assert scores == pytest.approx({0.0: 1 / 3, 0.25: 1 / 3, 0.5: 1 / 3, 0.75: 1.0, 1.0: 1.0})


def test_rows_without_a_whole_image_probability_or_label_are_left_out():
    rows = [_row("a", (0, 1, 0), (1, 0, 0)), {"file": "b", "error": "unreadable"},
            _row("c", (0, 0, 1), (0, 0, 1))]
    weight, scores = choose_whole_image_weight(rows, {"a": "benign", "c": "malignant",
                                                      "b": "benign"})
    assert weight == 0.0 and scores[0.0] == 1.0 and scores[1.0] == 0.5
    with pytest.raises(ValueError, match="no diagnosis row"):
        choose_whole_image_weight([{"file": "b", "error": "x"}], {"b": "benign"})
