"""Segmentation losses: soft Dice and BCE + Dice.

Conventions: ``y_true`` is a binary mask (values in {0, 1}; soft labels in [0, 1] also
work), ``y_pred`` the model's sigmoid probabilities in ``[0, 1]`` (NOT logits), both
``(N, H, W, 1)`` or ``(N, H, W)`` (any rank >= 2; axis 0 is the batch, every other axis
belongs to the image). Everything is computed in float32.

Soft Dice (Milletari, Navab, Ahmadi. "V-Net: Fully Convolutional Neural Networks for
Volumetric Medical Image Segmentation." 3DV 2016, arXiv:1606.04797), per image ``i`` with
smoothing ``s``::

    Dice_i = (2 * sum_p(y_ip * p_ip) + s) / (sum_p y_ip + sum_p p_ip + s)

Per image, not pooled over the batch: a pooled Dice lets a large tumor dominate a batch
and hides false positives on tumor-free (normal) radiographs, which then contribute
nothing to the numerator. Per image, an empty true mask gives
``Dice_i = s / (sum_p p_ip + s)``: 1 when nothing is predicted, and e.g. 0.5 once the
predicted probability mass equals ``s`` pixels. So with ``s = 1`` a normal image is
pushed hard towards an all-zero prediction (one fully confident false-positive pixel
already halves its Dice), and the smoothing keeps the loss finite (and equal to 0, not
0/0) for empty-vs-empty. A larger ``s`` is more tolerant of small false positives on
normal images and of small tumors.

That push is also a trap: on real radiographs (tumors a median 0.9% of the image) a U-Net
trained with this loss on tumor and normal images together learns to predict nothing
anywhere (validation Dice stuck at the empty level), because a normal image punishes any
probability mass far harder than a tiny tumor rewards it. ``BCEDiceLoss(dice_on="tumor")``
therefore scores the Dice term on images with a tumor only; normal images then teach
"nothing here" through the pixel-wise BCE alone (the usual recipe when most images are
empty, e.g. the SIIM-ACR pneumothorax challenge). It removes the loss's reward for an
empty mask (the training loss then falls), but on real BTXRD at 128 px it was not enough
for a usable U-Net within 12 epochs (docs/real-data-decisions.md), so it is an option, not
the default.
"""

from __future__ import annotations

import keras
from keras import ops


def _prepare(y_true, y_pred):
    """Cast to float32, give ``y_true`` the shape of ``y_pred``, return the image axes."""
    y_pred = ops.cast(ops.convert_to_tensor(y_pred), "float32")
    y_true = ops.cast(ops.convert_to_tensor(y_true), "float32")
    if len(y_true.shape) != len(y_pred.shape):
        y_true = ops.reshape(y_true, ops.shape(y_pred))
    if len(y_pred.shape) < 2:
        raise ValueError(f"expected batched masks (N, H, W[, 1]), got shape {y_pred.shape}")
    return y_true, y_pred, tuple(range(1, len(y_pred.shape)))


def soft_dice_per_image(y_true, y_pred, smooth=1.0):
    """Soft Dice coefficient of each image (see the module docstring for the formula).

    Args:
        y_true: masks ``(N, H, W[, 1])`` in {0, 1}.
        y_pred: probabilities, same shape (a missing trailing channel axis is tolerated).
        smooth: ``s`` > 0, added to numerator and denominator.

    Returns:
        float32 tensor ``(N,)`` in ``(0, 1]``; exactly 1 for an empty true mask and an
        all-zero prediction.
    """
    y_true, y_pred, axes = _prepare(y_true, y_pred)
    intersection = ops.sum(y_true * y_pred, axis=axes)
    denominator = ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes)
    return (2.0 * intersection + smooth) / (denominator + smooth)


def soft_dice_loss(y_true, y_pred, smooth=1.0):
    """Soft Dice loss ``1 - mean_i Dice_i``: Dice per image, then the mean over the batch.

    Args:
        y_true: masks ``(N, H, W[, 1])`` in {0, 1}.
        y_pred: sigmoid probabilities, same shape.
        smooth: ``s`` > 0 (see the module docstring for its effect on empty masks).

    Returns:
        float32 scalar in ``[0, 1)``.
    """
    return 1.0 - ops.mean(soft_dice_per_image(y_true, y_pred, smooth))


def bce_per_image(y_true, y_pred):
    """Binary cross-entropy averaged over the pixels of each image.

    ``BCE_i = -mean_p[y_ip * log(q_ip) + (1 - y_ip) * log(1 - q_ip)]`` with
    ``q = clip(y_pred, eps, 1 - eps)``, ``eps = keras.config.epsilon()`` (1e-7).

    Returns:
        float32 tensor ``(N,)``, >= 0.
    """
    y_true, y_pred, axes = _prepare(y_true, y_pred)
    eps = keras.config.epsilon()
    q = ops.clip(y_pred, eps, 1.0 - eps)
    bce = -(y_true * ops.log(q) + (1.0 - y_true) * ops.log(1.0 - q))
    return ops.mean(bce, axis=axes)


@keras.saving.register_keras_serializable(package="bone_tumor_tf")
class BCEDiceLoss(keras.losses.Loss):
    """``L = alpha * BCE + (1 - alpha) * (1 - Dice)``, both per image, then batch mean.

    For image ``i``: ``L_i = alpha * BCE_i + (1 - alpha) * (1 - Dice_i)`` with ``BCE_i``
    from :func:`bce_per_image` (pixel mean) and ``Dice_i`` from
    :func:`soft_dice_per_image`. ``call`` returns the ``(N,)`` vector ``L_i``; Keras'
    default ``"sum_over_batch_size"`` reduction then averages it over the batch
    (``sample_weight``, if given, weights images: ``sum_i w_i L_i / N``). Without sample
    weights the value is ``alpha * mean_i BCE_i + (1 - alpha) * soft_dice_loss``.

    BCE gives dense, well-conditioned per-pixel gradients; the Dice term counters the
    foreground/background imbalance of small tumors.

    Args:
        alpha: weight of BCE in ``[0, 1]``.
        smooth: Dice smoothing ``s`` > 0.
        name, reduction, dtype: as in ``keras.losses.Loss``.

    How an empty true mask (a normal radiograph) is scored is the ``dice_on`` choice:

    - ``"all"``: every image has both terms, as above; an empty mask's Dice is
      ``s / (sum_p p_ip + s)`` (see the module docstring).
    - ``"tumor"``: the Dice term is averaged over the images of the batch whose true mask
      is not empty; images with an empty mask have the BCE term only. Per image,
      ``L_i = alpha * BCE_i + (1 - alpha) * t_i * (1 - Dice_i) * N / max(T, 1)`` with
      ``t_i = 1`` for a non-empty mask, ``T = sum_i t_i`` and ``N`` the batch size, so that
      the batch mean is ``alpha * mean_i BCE_i + (1 - alpha) * mean_{i: t_i=1} (1 - Dice_i)``
      (a batch of normal images only has no Dice term). Use it when normal images train
      with the tumor images (``--include-normals``).

    Args:
        alpha: weight of BCE in ``[0, 1]``.
        smooth: Dice smoothing ``s`` > 0.
        dice_on: ``"all"`` or ``"tumor"`` (images whose Dice term counts; see above).
        name, reduction, dtype: as in ``keras.losses.Loss``.

    Expects sigmoid probabilities (the ``"mask"`` output), not logits.
    """

    DICE_ON = ("all", "tumor")

    def __init__(self, alpha=0.5, smooth=1.0, dice_on="all", name="bce_dice",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        if float(smooth) <= 0.0:
            raise ValueError(f"smooth must be > 0, got {smooth!r}")
        if dice_on not in self.DICE_ON:
            raise ValueError(f"dice_on must be one of {self.DICE_ON}, got {dice_on!r}")
        self.alpha = float(alpha)
        self.smooth = float(smooth)
        self.dice_on = dice_on

    def call(self, y_true, y_pred):
        bce = bce_per_image(y_true, y_pred)
        dice_term = 1.0 - soft_dice_per_image(y_true, y_pred, self.smooth)
        if self.dice_on == "tumor":
            y_true, _, axes = _prepare(y_true, y_pred)
            has_tumor = ops.cast(ops.max(y_true, axis=axes) > 0, "float32")
            n = ops.cast(ops.shape(has_tumor)[0], "float32")
            dice_term = dice_term * has_tumor * n / ops.maximum(ops.sum(has_tumor), 1.0)
        return self.alpha * bce + (1.0 - self.alpha) * dice_term

    def get_config(self):
        config = super().get_config()
        config.update({"alpha": self.alpha, "smooth": self.smooth, "dice_on": self.dice_on})
        return config
