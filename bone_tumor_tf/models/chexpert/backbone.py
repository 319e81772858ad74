"""torchxrayvision's CheXpert DenseNet121 as a Keras backbone: layer names, weight loading.

The backbone is ``keras.applications.DenseNet121`` with ONE input channel behind a
``Rescaling`` layer that applies torchxrayvision's input normalisation
``x / 255 * 2048 - 1024`` (Cohen et al., 2022, https://arxiv.org/abs/2111.00595). Its
weights come from a layer-weights file written by :mod:`.convert` and are loaded BY LAYER
NAME (:func:`load_densenet121_weights`), so the same file fills a standalone backbone
(:func:`chexpert_densenet121`) and the flat classifier graph alike.

:func:`densenet121_layer_map` is the name mapping both directions use (torchxrayvision
``features.*`` tensors -> Keras layers; see the table in :mod:`bone_tumor_tf.models.chexpert`).
BatchNorm: Keras' DenseNet normalises with ``epsilon=1.001e-5``; a file records the epsilon
its variances were stored for (``bn_epsilon``) and the loader re-adjusts when a model's
differs, so that ``var + eps`` is unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import keras
import numpy as np

from bone_tumor_tf.errors import ModelConfigError, ModelFileError, WeightsNotFoundError
from bone_tumor_tf.models.weights import (
    chexpert_missing_message,
    chexpert_weights_path,
    read_layer_weights,
)

__all__ = [
    "DENSENET121_BLOCKS",
    "KERAS_BN_EPSILON",
    "XRV_OFFSET",
    "XRV_SCALE",
    "adapt_first_kernel",
    "assign_densenet121_weights",
    "chexpert_densenet121",
    "densenet121_layer_map",
    "densenet121_weighted_layers",
    "load_densenet121_weights",
    "xrv_normalization",
]

#: Dense layers per block of DenseNet121.
DENSENET121_BLOCKS = (6, 12, 24, 16)
_GROWTH_RATE = 32
_BOTTLENECK = 4 * _GROWTH_RATE
_INIT_FEATURES = 64
#: BatchNorm epsilon of ``keras.applications.DenseNet121``.
KERAS_BN_EPSILON = 1.001e-5
#: torchxrayvision's input normalisation ``x / 255 * 2048 - 1024`` as ``x * scale + offset``.
XRV_SCALE = 2048.0 / 255.0
XRV_OFFSET = -1024.0


# --------------------------------------------------------------------------- name mapping


def densenet121_layer_map() -> list[tuple[str, str, str, tuple[int, ...]]]:
    """Every weighted DenseNet121 backbone layer, in network order.

    Returns:
        ``(torch_prefix, keras_layer, kind, torch_shape)`` tuples: ``kind`` is ``"conv"``
        (tensor ``torch_prefix + ".weight"`` of shape ``torch_shape`` = OIHW) or ``"bn"``
        (tensors ``.weight, .bias, .running_mean, .running_var`` of shape ``torch_shape``
        = ``(C,)``). The first convolution's input-channel count is ``0`` (1 or 3 accepted).
    """
    entries = [
        ("features.conv0", "conv1_conv", "conv", (_INIT_FEATURES, 0, 7, 7)),
        ("features.norm0", "conv1_bn", "bn", (_INIT_FEATURES,)),
    ]
    channels = _INIT_FEATURES
    for b, n_layers in enumerate(DENSENET121_BLOCKS, start=1):
        for i in range(1, n_layers + 1):
            t = f"features.denseblock{b}.denselayer{i}"
            k = f"conv{b + 1}_block{i}"
            entries += [
                (f"{t}.norm1", f"{k}_0_bn", "bn", (channels,)),
                (f"{t}.conv1", f"{k}_1_conv", "conv", (_BOTTLENECK, channels, 1, 1)),
                (f"{t}.norm2", f"{k}_1_bn", "bn", (_BOTTLENECK,)),
                (f"{t}.conv2", f"{k}_2_conv", "conv", (_GROWTH_RATE, _BOTTLENECK, 3, 3)),
            ]
            channels += _GROWTH_RATE
        if b < len(DENSENET121_BLOCKS):
            entries += [
                (f"features.transition{b}.norm", f"pool{b + 1}_bn", "bn", (channels,)),
                (f"features.transition{b}.conv", f"pool{b + 1}_conv", "conv",
                 (channels // 2, channels, 1, 1)),
            ]
            channels //= 2
    entries.append(("features.norm5", "bn", "bn", (channels,)))
    return entries


def densenet121_weighted_layers() -> list[str]:
    """Names of the 241 weighted layers of ``keras.applications.DenseNet121`` (no top)."""
    return [keras_name for _, keras_name, _, _ in densenet121_layer_map()]


def adapt_first_kernel(kernel: np.ndarray, channels: int) -> np.ndarray:
    """HWIO first kernel with ``I`` in {1, 3} -> ``channels`` input channels (same output
    for a grey image replicated over the channels)."""
    have = kernel.shape[2]
    if have == channels:
        return kernel
    if have == 1 and channels == 3:
        return np.repeat(kernel / 3.0, 3, axis=2)
    if have == 3 and channels == 1:
        return kernel.sum(axis=2, keepdims=True)
    raise ModelFileError(f"first convolution has {have} input channels, cannot make {channels}")


# --------------------------------------------------------------------------- loading


def load_densenet121_weights(model, path: Path | str) -> list[str]:
    """Load a converted DenseNet121 layer-weights file into ``model`` BY LAYER NAME.

    ``model`` is any graph containing the 241 weighted ``keras.applications.DenseNet121``
    layers under their usual names (standalone backbone or flat classifier). If the
    model's first convolution takes 3 channels and the file holds 1 (or vice versa), the
    kernel is adapted as in :func:`convert_state_dict`. BatchNorm variances are re-adjusted
    if a layer's epsilon differs from the file's ``bn_epsilon``.

    Returns:
        The names of the layers that received weights.

    Raises:
        WeightsNotFoundError: the file is missing.
        ModelFileError: the file is not a layer-weights file, lacks a layer, or a shape
            differs (one line naming the layer, expected vs found shape).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(chexpert_missing_message(path))
    weights, attrs = read_layer_weights(path)
    file_epsilon = float(attrs.get("bn_epsilon", KERAS_BN_EPSILON))
    return assign_densenet121_weights(model, weights, source=str(path), file_epsilon=file_epsilon)


def assign_densenet121_weights(model, weights: Mapping[str, list[np.ndarray]], source: str,
                               file_epsilon: float) -> list[str]:
    """Set the 241 DenseNet121 layers of ``model`` from ``weights`` (layer name -> arrays).

    The first kernel is adapted to the model's input channels (:func:`adapt_first_kernel`)
    and BatchNorm variances shifted by ``file_epsilon - layer.epsilon``. Nothing is set
    unless every layer fits. Returns the layer names; raises :class:`ModelFileError` (one
    line naming ``source`` and the layer) on a missing layer or a shape mismatch.
    """
    names = densenet121_weighted_layers()
    in_model = {layer.name: layer for layer in model.layers}
    missing_file = [n for n in names if n not in weights]
    if missing_file:
        raise ModelFileError(
            f"{source}: no weights for DenseNet121 layer(s) {', '.join(missing_file[:3])}"
            + (f" (and {len(missing_file) - 3} more)" if len(missing_file) > 3 else "")
        )
    missing_model = [n for n in names if n not in in_model]
    if missing_model:
        raise ModelFileError(
            f"{source}: model {model.name!r} is not a DenseNet121 graph (no layer "
            f"{missing_model[0]!r})"
        )
    pending = []
    for name in names:
        layer = in_model[name]
        values = [np.asarray(v, dtype=np.float32) for v in weights[name]]
        expected = [tuple(w.shape) for w in layer.weights]
        if name == "conv1_conv" and len(values) == 1 and len(expected) == 1:
            want = expected[0][2]
            if values[0].ndim == 4 and values[0].shape[2] != want and want in (1, 3):
                values = [adapt_first_kernel(values[0], want).astype(np.float32)]
        found = [tuple(v.shape) for v in values]
        if found != expected:
            raise ModelFileError(
                f"{source}: layer {name} has weight shapes {found}, model expects {expected}"
            )
        if isinstance(layer, keras.layers.BatchNormalization):
            delta = file_epsilon - float(layer.epsilon)
            if delta:
                values[3] = (values[3].astype(np.float64) + delta).astype(np.float32)
        pending.append((layer, values))
    for layer, values in pending:
        layer.set_weights(values)
    return names


# --------------------------------------------------------------------------- Keras model


def xrv_normalization(name: str = "preprocess_xrv"):
    """``keras.layers.Rescaling`` mapping [0, 255] to torchxrayvision's [-1024, 1024]."""
    return keras.layers.Rescaling(XRV_SCALE, offset=XRV_OFFSET, name=name, dtype="float32")


def chexpert_densenet121(
    weights_path: Path | str | None = None,
    pooling: str | None = "avg",
    channels: int = 1,
    input_shape: int | tuple[int, int] = (224, 224),
    name: str = "chexpert_densenet121",
):
    """torchxrayvision's CheXpert DenseNet121 feature extractor as a Keras model.

    Reference: Cohen et al., 2022, "TorchXRayVision: A library of chest X-ray datasets and
    models" (https://arxiv.org/abs/2111.00595); Huang et al., 2017, DenseNet.

    Args:
        weights_path: converted file; default :func:`chexpert_weights_path`
            (``$BONE_TUMOR_WEIGHTS_DIR`` or ``~/.keras/models``, file
            ``densenet121-res224-chex.weights.h5``).
        pooling: ``"avg"`` -> 1,024 features (torchxrayvision's ``model.features2(x)``:
            adaptive average pool of ``relu(features(x))``); ``"max"`` -> global max pool;
            ``None`` -> the ``(H/32, W/32, 1024)`` map after the final BN and ReLU (layer
            ``"relu"``).
        channels: 1 (torchxrayvision's layout) or 3 (grey stored as 3 equal channels).
        input_shape: ``(H, W)`` (or one int), each at least 32.
        name: model name.

    Inputs: float tensor ``(batch, H, W, channels)`` with radiograph values in [0, 255];
    the model applies ``x / 255 * 2048 - 1024`` itself (layer ``"preprocess_xrv"``).

    Returns:
        A flat ``keras.Model`` (all DenseNet layers in ``model.layers`` under their usual
        names).

    Raises:
        WeightsNotFoundError: the weights file is missing (message says how to make it).
    """
    if channels not in (1, 3):
        raise ModelConfigError(f"channels={channels}: must be 1 or 3")
    if pooling not in ("avg", "max", None):
        raise ModelConfigError(f"pooling={pooling!r}: must be 'avg', 'max' or None")
    height, width = (input_shape, input_shape) if isinstance(input_shape, int) else input_shape
    path = Path(weights_path) if weights_path is not None else chexpert_weights_path()
    if not path.is_file():
        raise WeightsNotFoundError(chexpert_missing_message(path))

    inputs = keras.Input((height, width, channels), name="image")
    x = xrv_normalization()(inputs)
    backbone = keras.applications.DenseNet121(
        include_top=False, weights=None, input_tensor=x,
        input_shape=(height, width, channels), pooling=pooling,
    )
    model = keras.Model(inputs, backbone.output, name=name)
    load_densenet121_weights(model, path)
    return model
