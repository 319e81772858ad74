"""Radiograph classifiers: ImageNet / CheXpert backbones with the thesis' classification heads.

Every model built here takes grey radiographs of shape ``(S, S, 1)`` with float values in
[0, 255] (raw pixel scale) and normalises them INSIDE the graph with standard Keras layers,
so a saved ``.keras`` file is self-contained and loads with
``keras.models.load_model(path, safe_mode=True)`` (no Lambda layers).

Graph (layer names in quotes)::

    "image" (S, S, 1) -> "metadata" (identity, carries the model metadata)
      ImageNet / random / Keras-file weights:
        -> "gray_to_rgb" (Concatenate x3)
        -> ResNet50: "preprocess_caffe"      (x - [103.939, 116.779, 123.68], Keras "caffe")
           DenseNet121: "preprocess_rescale" (x / 255)
                     -> "preprocess_normalize" ((x - ImageNet mean) / std, Keras "torch")
      CheXpert weights (DenseNet121 only, one channel):
        -> "preprocess_xrv" (x / 255 * 2048 - 1024, torchxrayvision)
    -> backbone layers, FLAT in ``model.layers`` under their keras.applications names
       (``conv1_conv`` ... ``conv5_block3_out`` for ResNet50; ``conv1_conv`` ...
       ``conv5_block16_2_conv``, ``bn``, ``relu`` for DenseNet121)
    -> head "head_*" -> "predictions" (float32 even under mixed precision)

Heads (architecture and task are independent):

* ResNet50 head (the MRI pipeline): ``head_gap`` GlobalAveragePooling2D -> ``head_dense``
  Dense(units, ReLU) -> ``head_dropout`` -> ``predictions``.
* DenseNet121 head (BTXRD): ``head_gap`` -> ``head_dense1`` Dense(512) -> ``head_bn``
  BatchNormalization -> ``head_relu`` -> ``head_dropout`` -> ``head_dense2`` Dense(256, ReLU)
  -> ``predictions``.
* ``predictions``: Dense(1, sigmoid) for ``task="binary"``, Dense(num_classes, softmax)
  for ``task="multiclass"``.

References: He et al., 2016, "Deep Residual Learning for Image Recognition", CVPR
(https://arxiv.org/abs/1512.03385); Huang et al., 2017, "Densely Connected Convolutional
Networks", CVPR (https://arxiv.org/abs/1608.06993); Cohen et al., 2022, TorchXRayVision
(https://arxiv.org/abs/2111.00595); Yao et al., 2025, BTXRD, Scientific Data 12:88.

Grad-CAM: :func:`last_conv_layer_name` returns the backbone layer whose output the head
pools, i.e. the last 4-D feature map: ``"conv5_block3_out"`` for ResNet50 (output of the
last residual block, after the add and ReLU) and ``"relu"`` for DenseNet121 (after the
final BatchNorm ``"bn"`` and ReLU). For DenseNet121 this is better than the last Conv2D
(``conv5_block16_2_conv``), which produces only the 32 channels that the last dense layer
adds to the 1,024-channel map; with a global-average-pooling head, Grad-CAM on the pooled
map is the class activation map (Selvaraju et al., 2017, https://arxiv.org/abs/1610.02391).

Metadata: a registered, serialisable identity layer :class:`ModelMetadata` named
``"metadata"`` sits right after the input; its config carries a JSON string, so
:func:`set_model_metadata` / :func:`get_model_metadata` round-trip through ``.keras``
save/load with ``safe_mode=True``; :func:`get_model_metadata` also reads a ``.keras`` file
directly (its ``config.json``) without building the model.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import keras

from bone_tumor_tf.data.schema import BINARY_CLASS_NAMES, CLASS_NAMES
from bone_tumor_tf.errors import ModelFileError
from bone_tumor_tf.models.weights import (
    ARCHITECTURES,
    ModelConfigError,
    WeightsSource,
    copy_weights_by_name,
    load_keras_backbone_weights,
    resolve_weights,
)

__all__ = [
    "CAFFE_MEAN_BGR",
    "GRADCAM_LAYERS",
    "METADATA_LAYER",
    "OUTPUT_LAYER",
    "TASKS",
    "TORCH_MEAN",
    "TORCH_STD",
    "ModelMetadata",
    "backbone_layer_names",
    "build_classifier",
    "copy_backbone_from_saved_classifier",
    "get_model_metadata",
    "head_layer_names",
    "last_conv_layer_name",
    "load_classifier",
    "set_head_l2",
    "set_model_metadata",
    "set_trainable_for_phase",
]

TASKS = ("multiclass", "binary")
INPUT_LAYER = "image"
METADATA_LAYER = "metadata"
OUTPUT_LAYER = "predictions"
HEAD_PREFIX = "head_"
#: Layers between the input and the backbone (no weights).
PREPROCESS_LAYERS = (
    "gray_to_rgb", "preprocess_caffe", "preprocess_rescale", "preprocess_normalize",
    "preprocess_xrv",
)
#: Grad-CAM target per architecture (see the module docstring).
GRADCAM_LAYERS = {"resnet50": "conv5_block3_out", "densenet121": "relu"}
#: Default hidden units of the heads.
DEFAULT_DENSE_UNITS = {"resnet50": (256,), "densenet121": (512, 256)}

#: Keras "caffe" mode (ResNet50): per-channel means subtracted, in BGR order, no scaling.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
#: Keras "torch" mode (DenseNet121): x / 255, then (x - mean) / std per RGB channel.
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)

_NORMALIZATION = {"resnet50": "caffe", "densenet121": "torch"}


# --------------------------------------------------------------------------- metadata


@keras.saving.register_keras_serializable(package="bone_tumor_tf")
class ModelMetadata(keras.layers.Identity):
    """Identity layer whose config carries a JSON-serialisable dict of model metadata.

    Args:
        metadata: dict of JSON-serialisable values (class names, task, image size ...).
        metadata_json: the same dict as a JSON string (how the config stores it).

    Input and output: any tensor, returned unchanged.
    """

    def __init__(self, metadata: dict | None = None, metadata_json: str | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.metadata = dict(json.loads(metadata_json)) if metadata_json else {}
        if metadata:
            self.metadata.update(_json_clean(metadata))

    def get_config(self):
        config = super().get_config()
        config["metadata_json"] = json.dumps(self.metadata, sort_keys=True)
        return config


def _json_clean(meta: dict) -> dict:
    try:
        return json.loads(json.dumps(dict(meta)))
    except (TypeError, ValueError) as exc:
        raise ModelConfigError(f"model metadata must be JSON-serialisable ({exc})") from exc


def _metadata_layer(model) -> ModelMetadata | None:
    for layer in model.layers:
        if isinstance(layer, ModelMetadata):
            return layer
    return None


def set_model_metadata(model, **meta) -> dict:
    """Merge ``meta`` into the metadata stored in ``model`` (saved with the model).

    Usual keys: ``class_names`` (list of str, index order), ``task``, ``image_size``,
    ``channels``, ``arch``, ``weights_source``, ``crop_mode``; any JSON-serialisable
    key/value is accepted (tuples become lists).

    Returns:
        The complete metadata after the update.

    Raises:
        ModelFileError: ``model`` has no :class:`ModelMetadata` layer (not built here).
        ModelConfigError: a value is not JSON-serialisable.
    """
    layer = _metadata_layer(model)
    if layer is None:
        raise ModelFileError(
            f"model {model.name!r} has no {METADATA_LAYER!r} layer to store metadata in "
            "(build it with bone_tumor_tf.models.build_classifier)"
        )
    layer.metadata.update(_json_clean(meta))
    return dict(layer.metadata)


def get_model_metadata(model_or_path) -> dict:
    """Metadata of a model, or of a ``.keras`` file read without building the model.

    Returns:
        A dict (empty if the model carries no :class:`ModelMetadata` layer).

    Raises:
        ModelFileError: the path is missing or not a readable ``.keras`` archive.
    """
    if not isinstance(model_or_path, (str, os.PathLike)):
        layer = _metadata_layer(model_or_path)
        return dict(layer.metadata) if layer is not None else {}
    path = Path(model_or_path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a .keras model archive ({exc})") from exc
    found = _find_metadata_config(config)
    if found is None:
        return {}
    try:
        return dict(json.loads(found.get("metadata_json") or "{}"))
    except ValueError as exc:
        raise ModelFileError(f"{path}: unreadable model metadata ({exc})") from exc


def _find_metadata_config(node):
    if isinstance(node, dict):
        registered = str(node.get("registered_name", ""))
        if node.get("class_name") == "ModelMetadata" or registered.endswith(">ModelMetadata"):
            return node.get("config", {})
        children = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _find_metadata_config(child)
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------- builder


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
        metadata (``class_names, task, image_size, channels, arch, weights_source,
        crop_mode, normalization, backbone_channels, gradcam_layer``) stored in it.

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
    units = _resolve_units(arch, dense_units)
    source = resolve_weights(weights, arch)

    inputs = keras.Input((image_size, image_size, 1), name=INPUT_LAYER)
    x = ModelMetadata(name=METADATA_LAYER, dtype="float32")(inputs)
    x, normalization = _normalize(x, arch, source)
    builder = {"resnet50": keras.applications.ResNet50,
               "densenet121": keras.applications.DenseNet121}[arch]
    backbone = builder(
        include_top=False, weights=None, input_tensor=x,
        input_shape=(image_size, image_size, source.backbone_channels),
    )
    outputs = _head(backbone.output, arch, task, num_outputs, units, dropout, head_l2)
    model = keras.Model(inputs, outputs, name=name or f"{arch}_{task}")

    if source.kind == "chexpert":
        from bone_tumor_tf.models.chexpert import load_densenet121_weights

        load_densenet121_weights(model, source.path)
    elif source.kind in ("imagenet", "file"):
        load_keras_backbone_weights(model, source.path, arch, image_size)
    elif source.kind == "model":
        copy_backbone_from_saved_classifier(model, source.path)

    set_model_metadata(
        model,
        class_names=list(class_names),
        task=task,
        image_size=image_size,
        channels=1,
        arch=arch,
        weights_source=source.describe(),
        crop_mode=None,
        normalization=normalization,
        backbone_channels=source.backbone_channels,
        gradcam_layer=GRADCAM_LAYERS[arch],
    )
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


def _resolve_units(arch, dense_units):
    if dense_units is None:
        return DEFAULT_DENSE_UNITS[arch]
    units = (int(dense_units),) if isinstance(dense_units, int) else tuple(
        int(u) for u in dense_units
    )
    need = len(DEFAULT_DENSE_UNITS[arch])
    if len(units) != need or min(units) < 1:
        raise ModelConfigError(
            f"dense_units={dense_units}: the {arch} head needs {need} positive int(s)"
        )
    return units


def _normalize(x, arch: str, source: WeightsSource):
    """In-graph normalisation of [0, 255] grey input for the backbone; returns (x, mode)."""
    if source.kind == "chexpert" or source.normalization == "xrv":
        # imported here so that `python -m bone_tumor_tf.models.chexpert` does not find the
        # module already imported by the package
        from bone_tumor_tf.models.chexpert import xrv_normalization

        return xrv_normalization(name="preprocess_xrv")(x), "xrv"
    x = keras.layers.Concatenate(axis=-1, name="gray_to_rgb", dtype="float32")([x, x, x])
    if arch == "resnet50":
        # Keras "caffe": RGB->BGR then subtract the BGR means. Grey channels are equal, so
        # the flip is a no-op and channel c simply gets -CAFFE_MEAN_BGR[c].
        x = keras.layers.Rescaling(
            1.0, offset=[-m for m in CAFFE_MEAN_BGR], name="preprocess_caffe", dtype="float32"
        )(x)
    else:
        x = keras.layers.Rescaling(1.0 / 255.0, name="preprocess_rescale", dtype="float32")(x)
        x = keras.layers.Normalization(
            mean=list(TORCH_MEAN), variance=[s * s for s in TORCH_STD],
            name="preprocess_normalize", dtype="float32",
        )(x)
    return x, _NORMALIZATION[arch]


def _head(features, arch, task, num_outputs, units, dropout, head_l2):
    def reg():
        return keras.regularizers.L2(head_l2) if head_l2 else None

    layers = keras.layers
    x = layers.GlobalAveragePooling2D(name="head_gap")(features)
    if arch == "densenet121":
        x = layers.Dense(units[0], kernel_regularizer=reg(), name="head_dense1")(x)
        x = layers.BatchNormalization(name="head_bn")(x)
        x = layers.Activation("relu", name="head_relu")(x)
        x = layers.Dropout(dropout, name="head_dropout")(x)
        x = layers.Dense(units[1], activation="relu", kernel_regularizer=reg(),
                         name="head_dense2")(x)
    else:
        x = layers.Dense(units[0], activation="relu", kernel_regularizer=reg(),
                         name="head_dense")(x)
        x = layers.Dropout(dropout, name="head_dropout")(x)
    activation = "sigmoid" if task == "binary" else "softmax"
    return layers.Dense(num_outputs, activation=activation, kernel_regularizer=reg(),
                        dtype="float32", name=OUTPUT_LAYER)(x)


def load_classifier(path: str | os.PathLike, compile: bool = False) -> keras.Model:
    """Load a ``.keras`` classifier with ``safe_mode=True`` (no arbitrary code).

    The same loader as :func:`bone_tumor_tf.inference.load_model`, which also registers
    this module's :class:`ModelMetadata`; a process that calls ``keras.models.load_model``
    directly must ``import bone_tumor_tf.models`` first.

    Raises:
        ModelFileError: missing file, not a ``.keras`` archive, or not loadable safely.
    """
    from bone_tumor_tf.inference import load_model

    return load_model(path, compile=compile)


# --------------------------------------------------------------------------- introspection


def _is_non_backbone(name: str) -> bool:
    return (
        name in (INPUT_LAYER, METADATA_LAYER, OUTPUT_LAYER)
        or name in PREPROCESS_LAYERS
        or name.startswith(HEAD_PREFIX)
    )


def backbone_layer_names(model) -> list[str]:
    """Names of the backbone layers of a classifier built here, in ``model.layers`` order.

    Everything except the input ``"image"``, ``"metadata"``, the preprocessing layers
    (``"gray_to_rgb"``, ``"preprocess_*"``), the head (``"head_*"``) and ``"predictions"``.
    """
    return [layer.name for layer in model.layers if not _is_non_backbone(layer.name)]


def copy_backbone_from_saved_classifier(model, path) -> list[str]:
    """Initialise the backbone of ``model`` from a ``.keras`` classifier of the same arch.

    Backbone weights do not depend on the input size or the head, so the saved model may
    have another image size, task or class list. Returns the copied layer names.
    """
    from bone_tumor_tf.inference import load_model

    saved = load_model(path)
    names = [name for name in backbone_layer_names(model) if model.get_layer(name).weights]
    return copy_weights_by_name(saved, model, names)


def head_layer_names(model) -> list[str]:
    """Names of the head layers (``"head_*"`` and ``"predictions"``), in order."""
    return [
        layer.name for layer in model.layers
        if layer.name.startswith(HEAD_PREFIX) or layer.name == OUTPUT_LAYER
    ]


def last_conv_layer_name(model) -> str:
    """Grad-CAM target layer: the last 4-D backbone feature map that the head pools.

    ``"conv5_block3_out"`` (ResNet50) or ``"relu"`` (DenseNet121, ImageNet or CheXpert),
    taken from the metadata when present, otherwise the last layer of the backbone whose
    output is 4-D. Works on a freshly built or a loaded model (the graph is flat).

    Raises:
        ModelFileError: the model has no 4-D backbone layer.
    """
    names = {layer.name for layer in model.layers}
    meta = get_model_metadata(model)
    for candidate in (meta.get("gradcam_layer"), GRADCAM_LAYERS.get(str(meta.get("arch")))):
        if candidate and candidate in names:
            return candidate
    last = None
    for layer in model.layers:
        if _is_non_backbone(layer.name):
            continue
        shape = getattr(layer.output, "shape", None)
        if shape is not None and len(shape) == 4:
            last = layer.name
    if last is None:
        raise ModelFileError(f"model {model.name!r} has no 4-D backbone layer for Grad-CAM")
    return last


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
        arch: ``"densenet121"`` or ``"resnet50"``; default from the model metadata.

    Returns:
        Names of the layers that now have trainable weights, in ``model.layers`` order.
    """
    if phase not in (1, 2):
        raise ModelConfigError(f"phase={phase}: must be 1 or 2")
    arch = str(arch or get_model_metadata(model).get("arch", "")).lower()
    if arch not in ARCHITECTURES:
        raise ModelConfigError(
            f"arch={arch!r}: pass arch= (densenet121 or resnet50); the model metadata has none"
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


def set_head_l2(model, l2: float) -> list[str]:
    """Set (or remove, ``l2=0``) L2 kernel regularisation on the head's Dense layers.

    For phase 2 of training without rebuilding the model; re-compile afterwards. The
    setting is saved with the model.

    Returns:
        Names of the Dense layers changed.
    """
    if float(l2) < 0:
        raise ModelConfigError(f"head_l2={l2}: must be >= 0")
    changed = []
    for name in head_layer_names(model):
        layer = model.get_layer(name)
        if isinstance(layer, keras.layers.Dense):
            regularizer = keras.regularizers.L2(float(l2)) if l2 else None
            layer.kernel_regularizer = regularizer
            layer.kernel.regularizer = regularizer
            changed.append(name)
    return changed
