"""Frozen-backbone training on cached features: run the backbone once, train the head alone.

In phase 1 (see :mod:`bone_tumor_tf.training.classification`) the backbone is frozen and
every backbone BatchNorm layer runs in inference mode, so the backbone is a fixed,
deterministic function ``f`` of its input and the classifier is ``head(f(x))``. Plain
frozen training nevertheless runs ``f`` on every training and validation image in every
epoch; here ``f`` runs once per image (and view) and the head is trained on the stored
outputs, which gives the same gradients for the same inputs at a fraction of the cost.

What is cached: the output of ``head_gap`` (:data:`FEATURE_LAYER`), the global average
pool of the last feature map. The pool has no weights, so it is part of ``f``; its output
is one float32 vector per image (2,048 values for ResNet50, 1,024 for DenseNet121: 15 MB
per view for the 3,746 BTXRD images), far smaller than the feature maps.

Views (``views = K``): view 0 is the image as it is (no augmentation); views 1 .. K-1
are drawn by the training augmentation (:func:`bone_tumor_tf.data.pipeline.build_augmentation`,
the same layers as the normal pipeline, seeded ``seed + view``). In every epoch each
training image contributes ONE view, drawn uniformly at random, so an epoch has as many
samples and steps as a normal epoch. ``K = 1`` trains without augmentation (the head's
dropout still applies); plain frozen training draws a fresh augmentation every epoch, so
``K`` trades the variety of the augmented inputs (K per image instead of one per epoch)
against the time spent in the backbone (K forward passes per image instead of one per
epoch). Validation features are computed once, without augmentation, as the normal
validation pipeline does.

The head model (:func:`build_head_model`) is a clone of the classifier's head layers
(``head_*`` after the pool, and ``predictions``) on an input of the pooled width, with the
same layer names and configurations; after training its weights are copied back into the
full classifier (:func:`copy_head_weights`), which is therefore identical in structure to
one trained the normal way and gives ``head(f(x))`` for every input ``x``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from bone_tumor_tf.data.pipeline import _targets, build_augmentation

#: Layer whose output is cached: the weight-free global average pool that starts the head.
FEATURE_LAYER = "head_gap"


def build_feature_extractor(model):
    """``keras.Model`` from the classifier's input to :data:`FEATURE_LAYER` (shared layers).

    The extractor shares its layers (and weights) with ``model``: it is a view of the
    backbone, not a copy.
    """

    return keras.Model(model.inputs, model.get_layer(FEATURE_LAYER).output,
                       name=f"{model.name}_features")


def _head_layers(model) -> list:
    """The layers after :data:`FEATURE_LAYER`, checked to form a single chain."""
    names = [layer.name for layer in model.layers]
    if FEATURE_LAYER not in names:
        raise ValueError(f"model {model.name!r} has no layer {FEATURE_LAYER!r}; feature "
                         "caching needs a classifier from build_classifier")
    layers = model.layers[names.index(FEATURE_LAYER) + 1:]
    previous = model.get_layer(FEATURE_LAYER)
    for layer in layers:
        inbound = layer._inbound_nodes[0].parent_nodes if layer._inbound_nodes else []
        if len(inbound) != 1 or inbound[0].operation is not previous:
            raise ValueError(f"layer {layer.name!r} of the head does not follow "
                             f"{previous.name!r}: the head is not a single chain")
        previous = layer
    return layers


def build_head_model(model):
    """A new ``keras.Model``: ``Input((C,))`` -> clones of the classifier's head layers.

    ``C`` is the width of :data:`FEATURE_LAYER`'s output. The clones keep the layers' names,
    configurations (dtype policies and regularizers included) and current weights.
    """

    width = int(model.get_layer(FEATURE_LAYER).output.shape[-1])
    inputs = keras.Input((width,), name="features")
    x = inputs
    for layer in _head_layers(model):
        clone = layer.__class__.from_config(layer.get_config())
        x = clone(x)
        clone.set_weights(layer.get_weights())
    return keras.Model(inputs, x, name=f"{model.name}_head")


def copy_head_weights(head_model, model) -> list[str]:
    """Copy every weight of ``head_model``'s layers into the same-named layers of ``model``.

    Returns:
        Names of the layers whose weights were copied.
    """
    copied = []
    for layer in head_model.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
            copied.append(layer.name)
    return copied


def compute_features(extractor, images: np.ndarray, batch_size: int = 32,
                     augmentation: str = "none", seed: int = 0) -> np.ndarray:
    """Backbone features (N, C) float32 of ``uint8`` images (N, S, S) or (N, S, S, 1).

    ``augmentation`` other than ``"none"`` transforms each batch with the training
    augmentation first (seeded ``seed``), as the training pipeline does; order is kept.
    """


    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
    dataset = dataset.map(lambda x: tf.cast(x, tf.float32), num_parallel_calls=tf.data.AUTOTUNE)
    augment = build_augmentation(augmentation, seed)
    if augment is not None:
        dataset = dataset.map(lambda x: tf.clip_by_value(augment(x, training=True), 0.0, 255.0))
    if len(images) == 0:
        return np.zeros((0, int(extractor.outputs[0].shape[-1])), np.float32)
    features = extractor.predict(dataset.prefetch(tf.data.AUTOTUNE), verbose=0)
    return np.asarray(features, np.float32)


def compute_view_features(extractor, images: np.ndarray, views: int = 1, batch_size: int = 32,
                          augmentation: str = "standard", seed: int = 0) -> np.ndarray:
    """Features of ``views`` versions of each image: (N, views, C) float32.

    View 0 is the un-augmented image; view ``k >= 1`` uses ``augmentation`` seeded
    ``seed + k`` (with ``augmentation="none"`` every view equals view 0, so ask for one).
    """
    if views < 1:
        raise ValueError(f"views={views}: must be >= 1")
    per_view = [compute_features(extractor, images, batch_size,
                                 "none" if k == 0 else augmentation, seed + k)
                for k in range(views)]
    return np.stack(per_view, axis=1)


def make_feature_dataset(features: np.ndarray, labels: np.ndarray, num_classes: int,
                         task: str = "multiclass", batch_size: int = 32, training: bool = False,
                         seed: int = 0, class_balanced: bool = False):
    """``tf.data`` pipeline of (features float32 (B, C), target) batches.

    ``features`` is (N, C) or (N, K, C) (K views). Training pipelines shuffle every epoch
    (seeded) and pick one view per sample uniformly at random; evaluation pipelines take
    view 0. Targets and ``class_balanced`` sampling are those of
    :func:`bone_tumor_tf.data.pipeline.make_classification_dataset`.
    """


    features = np.asarray(features, np.float32)
    if features.ndim == 2:
        features = features[:, None, :]
    views = features.shape[1]
    targets = _targets(np.asarray(labels), num_classes, task)
    if not training:
        dataset = tf.data.Dataset.from_tensor_slices((features[:, 0], targets))
        return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    if class_balanced:
        per_class = []
        for c in range(num_classes):
            index = np.flatnonzero(np.asarray(labels) == c)
            if len(index):
                per_class.append(tf.data.Dataset.from_tensor_slices(
                    (features[index], targets[index])).shuffle(len(index), seed=seed + c)
                    .repeat())
        dataset = tf.data.Dataset.sample_from_datasets(per_class, seed=seed)
    else:
        dataset = tf.data.Dataset.from_tensor_slices((features, targets)).shuffle(
            len(features), seed=seed, reshuffle_each_iteration=True)
    if views == 1:
        dataset = dataset.map(lambda f, y: (f[0], y))
    else:
        generator = tf.random.Generator.from_seed(seed)

        def pick_view(f, y):
            return tf.gather(f, generator.uniform((), 0, views, dtype=tf.int32)), y

        dataset = dataset.map(pick_view)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def fit_head_on_features(model, train_images: np.ndarray, train_labels: np.ndarray,
                         val_images: np.ndarray, val_labels: np.ndarray, *, num_classes: int,
                         task: str, compile_head: Callable, epochs: int, batch_size: int = 32,
                         views: int = 1, augmentation: str = "standard", seed: int = 0,
                         class_balanced: bool = False, class_weight: dict | None = None,
                         steps_per_epoch: int | None = None,
                         callbacks: Sequence | None = None, verbose="auto",
                         scope=None):
    """Phase 1 on cached features; the trained head's weights end up in ``model``.

    Args:
        model: the full classifier, already frozen for phase 1 (only the head trainable).
        train_images, val_images: ``uint8`` (N, S, S) prepared images.
        train_labels, val_labels: integer class indices.
        compile_head: called with the head model to compile it (phase-1 optimizer, loss,
            metrics); it is called inside ``scope`` when one is given.
        epochs, batch_size, class_weight, steps_per_epoch, callbacks, verbose: as in
            ``keras.Model.fit`` (callbacks see the head model).
        views: K augmented views per training image (see the module docstring).
        augmentation, seed, class_balanced: as in the normal training pipeline.
        scope: a context manager factory (e.g. ``strategy.scope``) to build and compile
            the head model in.

    Returns:
        ``(history, head_model, seconds)``: the Keras ``History`` of the head's training,
        the head model and a dict of wall times (``features``, ``fit``) in seconds.
    """

    extractor = build_feature_extractor(model)
    start = time.perf_counter()
    train_features = compute_view_features(extractor, train_images, views, batch_size,
                                           augmentation, seed)
    val_features = compute_features(extractor, val_images, batch_size)
    features_seconds = time.perf_counter() - start
    with (scope() if scope is not None else contextlib.nullcontext()):
        head = build_head_model(model)
        compile_head(head)
    train_ds = make_feature_dataset(train_features, train_labels, num_classes, task,
                                    batch_size, training=True, seed=seed,
                                    class_balanced=class_balanced)
    val_ds = make_feature_dataset(val_features, val_labels, num_classes, task, batch_size)
    start = time.perf_counter()
    history = head.fit(train_ds, validation_data=val_ds, epochs=epochs,
                       steps_per_epoch=steps_per_epoch, class_weight=class_weight,
                       callbacks=list(callbacks or []), verbose=verbose, shuffle=False)
    fit_seconds = time.perf_counter() - start
    copy_head_weights(head, model)
    return history, head, {"features": features_seconds, "fit": fit_seconds}
