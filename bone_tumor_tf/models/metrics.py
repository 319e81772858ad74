"""Keras metrics for segmentation training: the per-image Dice of thresholded masks.

:class:`BestThresholdDice` is the one a run monitors when it chooses its mask threshold on
the validation split afterwards: the Dice at the best of several thresholds, so that a
model whose tumor probabilities are still below 0.5 is not scored as an empty prediction.

:class:`DiceCoefficient` logs the same number as the NumPy ``dice_mean`` of
:func:`bone_tumor_tf.evaluation.segmentation.segmentation_report` on the same images.
Registered as ``bone_tumor_tf>DiceCoefficient``, the name saved models refer to.
"""

from __future__ import annotations

import keras
from keras import ops

__all__ = ["BestThresholdDice", "DiceCoefficient"]


def _binary_masks(y_true, y_pred):
    """``(true >= 0.5, y_pred as float32, reduction axes)``, ``y_true`` reshaped like ``y_pred``."""
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    y_true = ops.convert_to_tensor(y_true)
    if len(y_true.shape) != len(y_pred.shape):
        y_true = ops.reshape(y_true, ops.shape(y_pred))
    true = ops.cast(ops.cast(y_true, "float32") >= 0.5, "float32")
    return true, y_pred, tuple(range(1, len(y_pred.shape)))


def _per_image_dice(pred, true, axes):
    """Dice of each image's binary masks: 1 when both are empty, 0 when only one is."""
    intersection = ops.sum(pred * true, axis=axes)
    denominator = ops.sum(pred, axis=axes) + ops.sum(true, axis=axes)
    return ops.where(denominator > 0, 2.0 * intersection / ops.maximum(denominator, 1.0), 1.0)


def _image_weights(sample_weight, n_images, like):
    """One weight per image: ones, or a per-pixel weight map averaged over each image."""
    if sample_weight is None:
        return ops.ones_like(like)
    weights = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
    return ops.mean(ops.reshape(weights, (n_images, -1)), axis=1)


@keras.saving.register_keras_serializable(package="bone_tumor_tf")
class DiceCoefficient(keras.metrics.Metric):
    """Mean per-image Dice of thresholded predictions, accumulated over an epoch.

    For each image ``i`` of each batch: ``P_i = y_pred >= threshold``,
    ``G_i = y_true >= 0.5``, ``Dice_i`` as
    :func:`bone_tumor_tf.evaluation.segmentation.dice_score` (1 for empty/empty, 0 when
    only one is empty). ``result()`` is ``sum_i w_i Dice_i / sum_i w_i`` over every image
    seen since the last ``reset_state()`` (``w_i = 1`` without ``sample_weight``), i.e. the
    per-image mean over the epoch, the same number as ``segmentation_report``'s
    ``dice_mean`` on the same images. Not pooled: a normal image with a false-positive
    blob scores 0 whatever the blob's size.

    With the default name, ``model.compile(metrics=[DiceCoefficient()])`` logs ``"dice"``
    and ``"val_dice"``: use ``ModelCheckpoint(monitor="val_dice", mode="max")``.

    Args:
        threshold: threshold on the predicted probabilities.
        name: metric name (log key).
        dtype: dtype of the accumulators.

    ``sample_weight``: per-image weights ``(N,)`` / ``(N, 1)``; a per-pixel weight map is
    averaged over each image into one weight.
    """

    def __init__(self, threshold=0.5, name="dice", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = float(threshold)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        true, y_pred, axes = _binary_masks(y_true, y_pred)
        dice = _per_image_dice(ops.cast(y_pred >= self.threshold, "float32"), true, axes)
        weights = _image_weights(sample_weight, ops.shape(dice)[0], dice)
        self.total.assign_add(ops.cast(ops.sum(weights * dice), self.dtype))
        self.count.assign_add(ops.cast(ops.sum(weights), self.dtype))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(ops.zeros((), dtype=self.dtype))
        self.count.assign(ops.zeros((), dtype=self.dtype))

    def get_config(self):
        config = super().get_config()
        config.update({"threshold": self.threshold})
        return config


@keras.saving.register_keras_serializable(package="bone_tumor_tf")
class BestThresholdDice(keras.metrics.Metric):
    """Mean per-image Dice at the best of several thresholds, accumulated over an epoch.

    For each threshold ``t_k`` the metric accumulates, like :class:`DiceCoefficient` with
    ``threshold=t_k``, the per-image Dice of ``y_pred >= t_k`` against ``y_true >= 0.5``
    (1 for empty/empty, 0 when only one is empty); ``result()`` is
    ``max_k mean_i Dice_i(t_k)`` over every image seen since the last ``reset_state()``.
    Evaluated on the validation split this is the figure that
    :func:`bone_tumor_tf.training.segmentation.choose_threshold` maximises after training,
    so early stopping and checkpointing keep the model that will score best once its
    threshold is chosen. With normal images (empty masks) in the data a threshold that
    marks them loses; a fixed 0.5 would instead see a model whose tumor probabilities are
    still low as an empty predictor, whatever it has learned.

    Args:
        thresholds: the candidate thresholds in (0, 1).
        name: metric name (log key; ``"dice"`` logs ``"dice"`` and ``"val_dice"``).
        dtype: dtype of the accumulators.
    """

    def __init__(self, thresholds=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), name="dice",
                 dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.thresholds = tuple(float(t) for t in thresholds)
        if not self.thresholds or not all(0.0 < t < 1.0 for t in self.thresholds):
            raise ValueError(f"thresholds must be in (0, 1), got {thresholds!r}")
        self.totals = self.add_variable(shape=(len(self.thresholds),), initializer="zeros",
                                        name="totals")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        true, y_pred, axes = _binary_masks(y_true, y_pred)
        dice = ops.stack([_per_image_dice(ops.cast(y_pred >= t, "float32"), true, axes)
                          for t in self.thresholds], axis=0)  # (K, N)
        weights = _image_weights(sample_weight, ops.shape(dice)[1], dice[0])
        self.totals.assign_add(ops.cast(ops.sum(dice * weights[None, :], axis=1), self.dtype))
        self.count.assign_add(ops.cast(ops.sum(weights), self.dtype))

    def result(self):
        return ops.max(ops.divide_no_nan(self.totals, self.count))

    def reset_state(self):
        self.totals.assign(ops.zeros((len(self.thresholds),), dtype=self.dtype))
        self.count.assign(ops.zeros((), dtype=self.dtype))

    def get_config(self):
        config = super().get_config()
        config.update({"thresholds": list(self.thresholds)})
        return config
