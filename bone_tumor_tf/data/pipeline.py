"""The ``tf.data`` stage of the input pipelines, after :mod:`bone_tumor_tf.data.prepare`.

:func:`make_classification_dataset` / :func:`make_segmentation_dataset` build the pipeline
from prepared ``uint8`` arrays: shuffle (seeded) -> batch -> Keras augmentation layers
(training only) -> ``float32`` in [0, 255] -> prefetch.
"""

from __future__ import annotations

import keras
import tensorflow as tf

import numpy as np

AUGMENTATIONS = ("standard", "randaugment", "none")

# --------------------------------------------------------------------------- augmentation
def build_augmentation(kind: str = "standard", seed: int = 0, *, rotation: float = 0.04,
                       zoom: float = 0.10, contrast: float = 0.20, brightness: float = 0.10,
                       flip: str = "horizontal", geometric_only: bool = False):
    """Keras augmentation layers for training batches of shape (B, S, S, C) in [0, 255].

    ``standard``: random flip, rotation (``rotation`` x 360 degrees), zoom, then
    intensity scaling (contrast, brightness). ``randaugment``: keras-cv's RandAugment
    (Cubuk et al., 2020) on the 3-channel copy of the image, averaged back to gray.
    ``none``: identity (returns None). ``geometric_only`` drops intensity layers (for the
    joint image+mask augmentation of segmentation).
    """

    if kind == "none":
        return None
    if kind == "randaugment":
        return RandAugmentGray(seed=seed)
    if kind != "standard":
        raise ValueError(f"unknown augmentation {kind!r}; expected one of {AUGMENTATIONS}")
    layers = [
        keras.layers.RandomFlip(flip, seed=seed, name="aug_flip"),
        keras.layers.RandomRotation(rotation, fill_mode="constant", seed=seed + 1,
                                    name="aug_rotation"),
        keras.layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 2, name="aug_zoom"),
    ]
    if not geometric_only:
        layers += [
            keras.layers.RandomContrast(contrast, value_range=(0, 255), seed=seed + 3,
                                        name="aug_contrast"),
            keras.layers.RandomBrightness(brightness, value_range=(0, 255), seed=seed + 4,
                                          name="aug_brightness"),
        ]
    return keras.Sequential(layers, name="augmentation")


class RandAugmentGray:
    """keras-cv RandAugment for grayscale batches (B, S, S, 1) in [0, 255]."""

    def __init__(self, seed: int = 0, augmentations_per_image: int = 2, magnitude: float = 0.3):
        import keras_cv

        self.layer = keras_cv.layers.RandAugment(
            value_range=(0, 255), augmentations_per_image=augmentations_per_image,
            magnitude=magnitude, seed=seed)

    def __call__(self, images, training=True):

        rgb = tf.image.grayscale_to_rgb(images)
        out = self.layer(rgb, training=training)
        return tf.reduce_mean(tf.cast(out, tf.float32), axis=-1, keepdims=True)


# --------------------------------------------------------------------------- tf.data
def _targets(labels: np.ndarray, num_classes: int, task: str) -> np.ndarray:
    if task == "binary":
        return labels.astype(np.float32).reshape(-1, 1)
    return np.eye(num_classes, dtype=np.float32)[labels]


class EpochSeeds:
    """Epoch-keyed randomness for training pipelines that must resume reproducibly.

    A ``tf.data`` shuffle and Keras' augmentation layers draw from generators whose state
    starts afresh in a new process, so a run resumed at epoch k would see epoch 0's order
    and augmentations. Here the order of epoch e is a stateless permutation keyed by
    (seed, e) (``tf.random.experimental.index_shuffle``), and :meth:`start_epoch` re-seeds
    the augmentation layers' generators from (seed, e): epoch e's batches are the same
    whether or not the run was interrupted before it. Call :meth:`start_epoch` at the
    beginning of every epoch (the Keras callback :meth:`callback` does).
    """

    def __init__(self, seed: int = 0):

        self.seed = int(seed)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_seed")
        self.augmentation = None

    def start_epoch(self, epoch: int) -> None:
        self.epoch.assign(int(epoch))
        if self.augmentation is not None:
            for i, variable in enumerate(v for v in self.augmentation.variables
                                         if "seed_generator_state" in v.path):
                variable.assign(np.array([self.seed * 1000 + i, epoch], dtype="int64")
                                .astype(variable.dtype))

    def callback(self):

        seeds = self

        class StartEpoch(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                seeds.start_epoch(epoch)

        return StartEpoch()


def make_classification_dataset(images: np.ndarray, labels: np.ndarray, num_classes: int,
                                task: str = "multiclass", batch_size: int = 32,
                                training: bool = False, augmentation: str = "standard",
                                seed: int = 0, class_balanced: bool = False,
                                epoch_seeds: EpochSeeds | None = None):
    """``tf.data`` pipeline of (image float32 (B, S, S, 1) in [0, 255], target) batches.

    Targets: one-hot float32 (B, K) for ``multiclass``, float32 (B, 1) for ``binary``.
    Training pipelines shuffle with ``seed`` every epoch and augment; ``class_balanced``
    draws every class with equal probability (an infinite stream: pass ``steps_per_epoch``).
    With ``epoch_seeds`` (deterministic runs) the order and augmentation of every epoch
    depend only on (seed, epoch), see :class:`EpochSeeds`.
    """

    images = np.asarray(images, np.uint8)[..., None] if np.ndim(images) == 3 else images
    targets = _targets(np.asarray(labels), num_classes, task)
    if epoch_seeds is not None and training:
        return _epoch_keyed_dataset(images, targets, batch_size, augmentation, epoch_seeds)
    if class_balanced and training:
        per_class = []
        for c in range(num_classes):
            index = np.flatnonzero(np.asarray(labels) == c)
            if len(index):
                per_class.append(tf.data.Dataset.from_tensor_slices(
                    (images[index], targets[index])).shuffle(len(index), seed=seed + c).repeat())
        dataset = tf.data.Dataset.sample_from_datasets(per_class, seed=seed)
    else:
        dataset = tf.data.Dataset.from_tensor_slices((images, targets))
        if training:
            dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE,
                            deterministic=True)
    to_float = lambda x, y: (tf.cast(x, tf.float32), y)  # noqa: E731 - tf.data map fn
    dataset = dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
    augment = build_augmentation(augmentation, seed) if training else None
    if augment is not None:
        dataset = dataset.map(
            lambda x, y: (tf.clip_by_value(augment(x, training=True), 0.0, 255.0), y),
            num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _epoch_keyed_dataset(images, targets, batch_size, augmentation, epoch_seeds):

    n = len(images)
    # Variables are captured by reference: the data is not copied into the graph.
    image_store = tf.Variable(images, trainable=False, name="train_images")
    target_store = tf.Variable(targets, trainable=False, name="train_targets")
    key = tf.constant([epoch_seeds.seed, 0], tf.int64)

    def position_to_example(position):
        seed = tf.stack([key[0], epoch_seeds.epoch.read_value()])
        index = tf.random.experimental.index_shuffle(position, seed, n - 1)
        return tf.gather(image_store, index), tf.gather(target_store, index)

    dataset = tf.data.Dataset.range(n).map(position_to_example).batch(batch_size)
    dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), y))
    augment = build_augmentation(augmentation, epoch_seeds.seed)
    epoch_seeds.augmentation = augment
    if augment is not None:
        # One call at a time: the layers' generator state advances in a fixed order.
        dataset = dataset.map(
            lambda x, y: (tf.clip_by_value(augment(x, training=True), 0.0, 255.0), y))
    return dataset.prefetch(1)


def make_segmentation_dataset(images: np.ndarray, masks: np.ndarray, batch_size: int = 8,
                              training: bool = False, augmentation: str = "standard",
                              seed: int = 0):
    """``tf.data`` pipeline of (image float32 (B, S, S, 1) in [0, 255], mask (B, S, S, 1)).

    Geometric augmentation is applied identically to image and mask (they are stacked as
    two channels and transformed together); the mask is re-binarised at 0.5 afterwards.
    Intensity augmentation touches the image only.
    """

    images = np.asarray(images, np.uint8)[..., None]
    masks = np.asarray(masks, np.uint8)[..., None]
    dataset = tf.data.Dataset.from_tensor_slices((images, masks))
    if training:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.map(lambda x, m: (tf.cast(x, tf.float32), tf.cast(m, tf.float32)),
                          num_parallel_calls=tf.data.AUTOTUNE)
    if training and augmentation != "none":
        geometric = build_augmentation("standard", seed, geometric_only=True)
        intensity = keras.Sequential([
            keras.layers.RandomContrast(0.2, value_range=(0, 255), seed=seed + 3),
            keras.layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed + 4),
        ])

        def augment(x, m):
            stacked = geometric(tf.concat([x, m * 255.0], axis=-1), training=True)
            x = tf.clip_by_value(intensity(stacked[..., :1], training=True), 0.0, 255.0)
            m = tf.cast(stacked[..., 1:] >= 127.5, tf.float32)
            return x, m

        dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)
