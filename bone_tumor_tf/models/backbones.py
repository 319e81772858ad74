"""Backbones of the radiograph classifiers: in-graph normalisation, weights, layer lookup.

Grey radiographs ``(S, S, 1)`` in [0, 255] are normalised INSIDE the graph with standard
Keras layers (layer names in quotes), then fed to a ``keras.applications`` backbone
built with ``input_tensor=``, so its layers sit FLAT in ``model.layers`` under their
Keras names (``conv1_conv`` ... ``conv5_block3_out`` for ResNet50; ``conv1_conv`` ...
``conv5_block16_2_conv``, ``bn``, ``relu`` for DenseNet121)::

    ImageNet / random / Keras-file weights:
      -> "gray_to_rgb" (Concatenate x3)
      -> ResNet50: "preprocess_caffe"      (x - [103.939, 116.779, 123.68], Keras "caffe")
         DenseNet121: "preprocess_rescale" (x / 255)
                   -> "preprocess_normalize" ((x - ImageNet mean) / std, Keras "torch")
    CheXpert weights (DenseNet121 only, one channel):
      -> "preprocess_xrv" (x / 255 * 2048 - 1024, torchxrayvision)

Grad-CAM: :func:`last_conv_layer_name` returns the backbone layer whose output the head
pools, i.e. the last 4-D feature map: ``"conv5_block3_out"`` for ResNet50 (output of the
last residual block, after the add and ReLU) and ``"relu"`` for DenseNet121 (after the
final BatchNorm ``"bn"`` and ReLU). For DenseNet121 this is better than the last Conv2D
(``conv5_block16_2_conv``), which produces only the 32 channels that the last dense layer
adds to the 1,024-channel map; with a global-average-pooling head, Grad-CAM on the pooled
map is the class activation map (Selvaraju et al., 2017, https://arxiv.org/abs/1610.02391).
"""

from __future__ import annotations

import keras

from bone_tumor_tf.errors import ModelFileError
from bone_tumor_tf.models.chexpert.backbone import load_densenet121_weights, xrv_normalization
from bone_tumor_tf.models.contract import read_contract
from bone_tumor_tf.models.heads import HEAD_PREFIX, OUTPUT_LAYER
from bone_tumor_tf.models.loading import load_model
from bone_tumor_tf.models.weights import (
    WeightsSource,
    copy_weights_by_name,
    load_keras_backbone_weights,
)

__all__ = [
    "CAFFE_MEAN_BGR",
    "GRADCAM_LAYERS",
    "INPUT_LAYER",
    "PREPROCESS_LAYERS",
    "TORCH_MEAN",
    "TORCH_STD",
    "apply_backbone",
    "backbone_layer_names",
    "copy_backbone_from_saved_classifier",
    "last_conv_layer_name",
    "load_backbone_weights",
    "normalize_input",
]

INPUT_LAYER = "image"
#: Layers between the input and the backbone (no weights); ``"metadata"`` is the identity
#: layer of the previous version's models.
PREPROCESS_LAYERS = (
    "metadata", "gray_to_rgb", "preprocess_caffe", "preprocess_rescale",
    "preprocess_normalize", "preprocess_xrv",
)
#: Grad-CAM target per architecture (see the module docstring).
GRADCAM_LAYERS = {"resnet50": "conv5_block3_out", "densenet121": "relu"}

#: Keras "caffe" mode (ResNet50): per-channel means subtracted, in BGR order, no scaling.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
#: Keras "torch" mode (DenseNet121): x / 255, then (x - mean) / std per RGB channel.
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)

_NORMALIZATION = {"resnet50": "caffe", "densenet121": "torch"}
_BUILDERS = {"resnet50": keras.applications.ResNet50,
             "densenet121": keras.applications.DenseNet121}


def normalize_input(x, arch: str, source: WeightsSource):
    """In-graph normalisation of [0, 255] grey input ``(N, S, S, 1)`` for the backbone.

    Returns:
        ``(tensor, mode)``: ``(N, S, S, backbone channels)`` and ``"caffe"``, ``"torch"``
        or ``"xrv"``.
    """
    if source.kind == "chexpert" or source.normalization == "xrv":
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


def apply_backbone(x, arch: str, image_size: int, channels: int):
    """The ``keras.applications`` backbone of ``arch`` (no top, random weights) on ``x``.

    Returns:
        Its last feature map, ``(N, S/32, S/32, 2048 or 1024)``.
    """
    backbone = _BUILDERS[arch](include_top=False, weights=None, input_tensor=x,
                               input_shape=(image_size, image_size, channels))
    return backbone.output


def load_backbone_weights(model, source: WeightsSource, arch: str, image_size: int) -> None:
    """Fill the backbone layers of a flat classifier from ``source`` (no-op for none)."""
    if source.kind == "chexpert":
        load_densenet121_weights(model, source.path)
    elif source.kind in ("imagenet", "file"):
        load_keras_backbone_weights(model, source.path, arch, image_size)
    elif source.kind == "model":
        copy_backbone_from_saved_classifier(model, source.path)


def _is_non_backbone(name: str) -> bool:
    return (
        name in (INPUT_LAYER, OUTPUT_LAYER)
        or name in PREPROCESS_LAYERS
        or name.startswith(HEAD_PREFIX)
    )


def backbone_layer_names(model) -> list[str]:
    """Names of the backbone layers of a classifier built here, in ``model.layers`` order.

    Everything except the input ``"image"``, the preprocessing layers (``"gray_to_rgb"``,
    ``"preprocess_*"``), the head (``"head_*"``) and ``"predictions"``.
    """
    return [layer.name for layer in model.layers if not _is_non_backbone(layer.name)]


def copy_backbone_from_saved_classifier(model, path) -> list[str]:
    """Initialise the backbone of ``model`` from a ``.keras`` classifier of the same arch.

    Backbone weights do not depend on the input size or the head, so the saved model may
    have another image size, task or class list. A U-Net whose encoder is the same
    ``keras.applications`` backbone works too: its encoder layers keep the backbone's
    names, and its decoder is ignored. Returns the copied layer names.
    """
    saved = load_model(path)
    names = [name for name in backbone_layer_names(model) if model.get_layer(name).weights]
    return copy_weights_by_name(saved, model, names)


def last_conv_layer_name(model) -> str:
    """Grad-CAM target layer: the last 4-D backbone feature map that the head pools.

    ``"conv5_block3_out"`` (ResNet50) or ``"relu"`` (DenseNet121, ImageNet or CheXpert),
    taken from the contract when it names one, otherwise the last layer of the backbone
    whose output is 4-D. Works on a freshly built or a loaded model (the graph is flat).

    Raises:
        ModelFileError: the model has no 4-D backbone layer.
    """
    names = {layer.name for layer in model.layers}
    try:
        contract = read_contract(model)
    except ModelFileError:  # a model from elsewhere, of another shape: search the graph
        contract = None
    if contract is not None:
        for candidate in (contract.details.get("gradcam_layer"),
                          GRADCAM_LAYERS.get(contract.arch)):
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
