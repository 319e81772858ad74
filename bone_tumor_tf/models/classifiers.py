"""Radiograph classifiers: ImageNet / CheXpert backbones with the thesis' classification heads.

Every model built here takes grey radiographs of shape ``(S, S, 1)`` with float values in
[0, 255] (raw pixel scale) and normalises them INSIDE the graph with standard Keras layers
(:mod:`.backbones`), so a saved ``.keras`` file is self-contained and loads with
``keras.saving.load_model(path)`` (no Lambda layer, no custom layer).

Graph: ``"image"`` (S, S, 1) -> normalisation -> backbone layers, flat in ``model.layers``
(:mod:`.backbones`) -> head ``"head_*"`` -> ``"predictions"`` (:mod:`.heads`). The model's
:class:`~bone_tumor_tf.models.contract.ModelContract` (class names, task, input, crop
mode, normalisation, weights source, ``gradcam_layer``) is attached to it and saved inside
the ``.keras`` file by :func:`~bone_tumor_tf.models.contract.save_with_contract`.

References: He et al., 2016, "Deep Residual Learning for Image Recognition", CVPR
(https://arxiv.org/abs/1512.03385); Huang et al., 2017, "Densely Connected Convolutional
Networks", CVPR (https://arxiv.org/abs/1608.06993); Cohen et al., 2022, TorchXRayVision
(https://arxiv.org/abs/2111.00595); Yao et al., 2025, BTXRD, Scientific Data 12:88.
"""

from __future__ import annotations

import os

import keras

from bone_tumor_tf.data.schema import BINARY_CLASS_NAMES, CLASS_NAMES
from bone_tumor_tf.errors import ModelConfigError
from bone_tumor_tf.models.backbones import (
    GRADCAM_LAYERS,
    INPUT_LAYER,
    apply_backbone,
    backbone_layer_names,
    copy_backbone_from_saved_classifier,
    last_conv_layer_name,
    load_backbone_weights,
    normalize_input,
)
from bone_tumor_tf.models.contract import ModelContract, attach_contract, read_contract
from bone_tumor_tf.models.heads import (
    OUTPUT_LAYER,
    apply_head,
    head_layer_names,
    resolve_dense_units,
    set_head_l2,
)
from bone_tumor_tf.models.weights import ARCHITECTURES, resolve_weights

__all__ = [
    "GRADCAM_LAYERS",
    "OUTPUT_LAYER",
    "TASKS",
    "backbone_layer_names",
    "build_classifier",
    "copy_backbone_from_saved_classifier",
    "head_layer_names",
    "last_conv_layer_name",
    "set_head_l2",
    "set_trainable_for_phase",
]

TASKS = ("multiclass", "binary")


def build_classifier(
    arch: str = "densenet121",
    task: str = "multiclass",
    num_classes: int | None = None,
    image_size: int = 224,
    weights: str | os.PathLike | None = "imagenet",
    dropout: float = 0.5,
    head_l2: float = 0.0,
    dense_units: int | tuple[int, ...] | None = None,
    class_names: list[str] | tuple[str, ...] | None = None,
    name: str | None = None,
) -> keras.Model:
    """Build a radiograph classifier with in-graph normalisation and the thesis' heads.

    Args:
        arch: ``"densenet121"`` (BTXRD head) or ``"resnet50"`` (MRI-pipeline head).
        task: ``"multiclass"`` (softmax over ``num_classes``) or ``"binary"`` (one sigmoid
            unit: probability of the positive class, index 1 of ``class_names``).
        num_classes: classes of the multiclass task; default ``len(class_names)`` or 3.
            For ``"binary"`` it must be ``None``, 1 or 2.
        image_size: side ``S`` of the square input, at least 32.
        weights: ``"none"``/``None`` (random), ``"imagenet"`` (Keras cache, never
            downloaded), ``"chexpert"`` (converted torchxrayvision DenseNet121; one-channel
            backbone), ``"imagenet:PATH"``, ``"chexpert:PATH"`` or a path to backbone
            weights (see :mod:`bone_tumor_tf.models.weights`).
        dropout: rate of the head's Dropout layer.
        head_l2: L2 factor on the kernels of the head's Dense layers including
            ``predictions`` (0 = none); see also :func:`set_head_l2`.
        dense_units: hidden units; ResNet50 head: one int (default 256); DenseNet121 head:
            two ints (default ``(512, 256)``).
        class_names: names in label-index order; default ``("normal", "benign",
            "malignant")`` for 3 classes, ``("normal", "tumor")`` for binary.
        name: model name; default ``f"{arch}_{task}"``.

    Inputs: float ``(batch, S, S, 1)`` grey radiographs in [0, 255].

    Returns:
        A flat ``keras.Model`` with output ``(batch, num_classes)`` softmax probabilities
        or ``(batch, 1)`` sigmoid probabilities, float32, from layer ``"predictions"``;
        its contract (task, class names, input, crop mode ``none`` -- training sets its
        own --, normalisation, weights source; details ``backbone_channels``,
        ``gradcam_layer``) attached (:func:`~bone_tumor_tf.models.contract.read_contract`).

    Raises:
        ModelConfigError: invalid or contradictory options (e.g. ResNet50 + CheXpert).
        WeightsNotFoundError: the requested weights are not on this machine.
        ModelFileError: the weights file does not fit the backbone.
    """
    arch = str(arch).lower()
    if arch not in ARCHITECTURES:
        raise ModelConfigError(
            f"arch={arch!r}: unknown architecture, expected one of {', '.join(ARCHITECTURES)}"
        )
    task = str(task).lower()
    if task not in TASKS:
        raise ModelConfigError(f"task={task!r}: expected one of {', '.join(TASKS)}")
    if int(image_size) < 32:
        raise ModelConfigError(f"image_size={image_size}: must be at least 32")
    image_size = int(image_size)
    if not 0.0 <= float(dropout) < 1.0:
        raise ModelConfigError(f"dropout={dropout}: must be in [0, 1)")
    if float(head_l2) < 0:
        raise ModelConfigError(f"head_l2={head_l2}: must be >= 0")
    num_outputs, class_names = _resolve_classes(task, num_classes, class_names)
    units = resolve_dense_units(arch, dense_units)
    source = resolve_weights(weights, arch)

    inputs = keras.Input((image_size, image_size, 1), name=INPUT_LAYER)
    x, normalization = normalize_input(inputs, arch, source)
    features = apply_backbone(x, arch, image_size, source.backbone_channels)
    outputs = apply_head(features, arch, task, num_outputs, units, dropout, head_l2)
    model = keras.Model(inputs, outputs, name=name or f"{arch}_{task}")
    load_backbone_weights(model, source, arch, image_size)
    attach_contract(model, ModelContract(
        task=task, class_names=tuple(class_names), image_size=image_size, channels=1,
        crop_mode="none", normalization=normalization, weights_source=source.describe(),
        arch=arch, details={"backbone_channels": source.backbone_channels,
                            "gradcam_layer": GRADCAM_LAYERS[arch]}))
    return model


def _resolve_classes(task, num_classes, class_names):
    if class_names is not None:
        class_names = [str(c) for c in class_names]
    if task == "binary":
        if num_classes not in (None, 1, 2):
            raise ModelConfigError(
                f"num_classes={num_classes} with task='binary': the binary head has one "
                "sigmoid output (use task='multiclass')"
            )
        class_names = class_names if class_names is not None else list(BINARY_CLASS_NAMES)
        if len(class_names) != 2:
            raise ModelConfigError(
                f"class_names={class_names}: task='binary' needs 2 names (negative, positive)"
            )
        return 1, class_names
    if num_classes is None:
        num_classes = len(class_names) if class_names is not None else len(CLASS_NAMES)
    if int(num_classes) < 2:
        raise ModelConfigError(f"num_classes={num_classes}: multiclass needs at least 2")
    num_classes = int(num_classes)
    if class_names is None:
        class_names = (list(CLASS_NAMES) if num_classes == len(CLASS_NAMES)
                       else [f"class_{i}" for i in range(num_classes)])
    if len(class_names) != num_classes:
        raise ModelConfigError(
            f"class_names={class_names}: {len(class_names)} names for num_classes={num_classes}"
        )
    return num_classes, class_names


# --------------------------------------------------------------------------- training helpers


def set_trainable_for_phase(model, phase: int, arch: str | None = None) -> list[str]:
    """Freeze/unfreeze a classifier for the two-phase fine-tuning schedule.

    * Phase 1: the whole backbone frozen; the head (``head_*``, ``predictions``) trainable.
    * Phase 2: additionally the last block: layers whose names start with ``conv5_``
      (both architectures) plus, for DenseNet121, the final BatchNorm ``bn``.

    Every backbone BatchNormalization layer stays ``trainable=False``, which in Keras 3
    also makes it run in inference mode (moving statistics, never batch statistics, and no
    updates), whatever ``training=`` says. Keras 3 cannot train a BN layer's gamma/beta
    while keeping it in inference mode without replacing the layer, so the final ``bn``
    named in phase 2 is deliberately overridden: it keeps its ImageNet/CheXpert statistics
    AND its gamma/beta frozen (as do the ``conv5_*_bn`` layers). The head's own
    ``head_bn`` is new and is trained normally (trainable, batch statistics) in both phases.

    Re-compile the model after calling this (Keras captures trainable weights at compile).

    Args:
        model: a classifier from :func:`build_classifier` (or loaded from ``.keras``).
        phase: 1 or 2.
        arch: ``"densenet121"`` or ``"resnet50"``; default from the model's contract.

    Returns:
        Names of the layers that now have trainable weights, in ``model.layers`` order.
    """
    if phase not in (1, 2):
        raise ModelConfigError(f"phase={phase}: must be 1 or 2")
    arch = str(arch or read_contract(model).arch).lower()
    if arch not in ARCHITECTURES:
        raise ModelConfigError(
            f"arch={arch!r}: pass arch= (densenet121 or resnet50); the model's contract "
            "names none"
        )
    last_block_extra = {"bn"} if arch == "densenet121" else set()
    backbone = set(backbone_layer_names(model))
    model.trainable = True
    for layer in model.layers:
        if layer.name not in backbone:
            layer.trainable = True
            continue
        unfreeze = phase == 2 and (
            layer.name.startswith("conv5_") or layer.name in last_block_extra
        )
        if isinstance(layer, keras.layers.BatchNormalization):
            unfreeze = False  # inference mode, see docstring
        layer.trainable = unfreeze
    return [layer.name for layer in model.layers if layer.trainable_weights]
