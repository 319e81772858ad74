"""Classification heads of the radiograph classifiers (the thesis' two heads).

Architecture and task are independent; layer names in quotes:

* ResNet50 head (the MRI pipeline): ``"head_gap"`` GlobalAveragePooling2D ->
  ``"head_dense"`` Dense(units, ReLU) -> ``"head_dropout"`` -> ``"predictions"``.
* DenseNet121 head (BTXRD): ``"head_gap"`` -> ``"head_dense1"`` Dense(512) ->
  ``"head_bn"`` BatchNormalization -> ``"head_relu"`` -> ``"head_dropout"`` ->
  ``"head_dense2"`` Dense(256, ReLU) -> ``"predictions"``.
* ``"predictions"``: Dense(1, sigmoid) for ``task="binary"``, Dense(num_classes, softmax)
  for ``task="multiclass"``; float32 even under mixed precision.
"""

from __future__ import annotations

import keras

from bone_tumor_tf.errors import ModelConfigError

__all__ = [
    "DEFAULT_DENSE_UNITS",
    "HEAD_PREFIX",
    "OUTPUT_LAYER",
    "apply_head",
    "head_layer_names",
    "resolve_dense_units",
    "set_head_l2",
]

OUTPUT_LAYER = "predictions"
HEAD_PREFIX = "head_"
#: Default hidden units of the heads.
DEFAULT_DENSE_UNITS = {"resnet50": (256,), "densenet121": (512, 256)}


def resolve_dense_units(arch: str, dense_units: int | tuple[int, ...] | None) -> tuple:
    """Hidden units of the head of ``arch``: one int (ResNet50) or two (DenseNet121).

    Raises:
        ModelConfigError: the wrong number of units, or one below 1.
    """
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


def apply_head(features, arch: str, task: str, num_outputs: int, units: tuple,
               dropout: float, head_l2: float):
    """The head of ``arch`` on a 4-D feature map ``(N, h, w, C)``.

    Returns:
        ``(N, num_outputs)`` float32 probabilities: softmax (``multiclass``) or sigmoid
        (``binary``, ``num_outputs=1``).
    """
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


def head_layer_names(model) -> list[str]:
    """Names of the head layers (``"head_*"`` and ``"predictions"``), in order."""
    return [
        layer.name for layer in model.layers
        if layer.name.startswith(HEAD_PREFIX) or layer.name == OUTPUT_LAYER
    ]


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
