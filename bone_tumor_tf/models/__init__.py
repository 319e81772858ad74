"""Models: radiograph classifiers, weight sources and the CheXpert DenseNet121 backbone.

* :mod:`.classifiers`: :func:`build_classifier` (ResNet50 / DenseNet121 backbones with the
  thesis' heads, in-graph normalisation, metadata, two-phase freezing, Grad-CAM layer).
* :mod:`.weights`: where pretrained weights come from (never downloaded).
* :mod:`.chexpert`: torchxrayvision CheXpert DenseNet121 conversion and Keras backbone.

Importing this package registers the custom layer ``ModelMetadata``, which
``keras.models.load_model(path, safe_mode=True)`` needs (or use :func:`load_classifier`).
The :mod:`.chexpert` names are imported lazily, so that
``python -m bone_tumor_tf.models.chexpert`` does not run a module the package already
imported.
"""

import importlib

from bone_tumor_tf.models.classifiers import (
    GRADCAM_LAYERS,
    ModelMetadata,
    backbone_layer_names,
    build_classifier,
    get_model_metadata,
    head_layer_names,
    last_conv_layer_name,
    load_classifier,
    set_head_l2,
    set_model_metadata,
    set_trainable_for_phase,
)
from bone_tumor_tf.models.weights import (
    DEFAULT_CHEXPERT_WEIGHTS,
    ModelConfigError,
    WeightsSource,
    chexpert_weights_path,
    imagenet_weights_path,
    resolve_weights,
)

__all__ = [
    "DEFAULT_CHEXPERT_WEIGHTS",
    "GRADCAM_LAYERS",
    "ModelConfigError",
    "ModelMetadata",
    "WeightsSource",
    "backbone_layer_names",
    "build_classifier",
    "chexpert_densenet121",
    "chexpert_weights_path",
    "convert_checkpoint",
    "get_model_metadata",
    "head_layer_names",
    "imagenet_weights_path",
    "last_conv_layer_name",
    "load_classifier",
    "load_densenet121_weights",
    "resolve_weights",
    "set_head_l2",
    "set_model_metadata",
    "set_trainable_for_phase",
]

_LAZY = {
    "chexpert_densenet121": "chexpert",
    "convert_checkpoint": "chexpert",
    "load_densenet121_weights": "chexpert",
}


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
