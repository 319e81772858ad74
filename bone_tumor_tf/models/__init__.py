"""Models: radiograph classifiers, U-Nets, their contract, loading and weight sources.

* :mod:`.contract`: the one model contract (:class:`ModelContract`), read by
  :func:`read_contract` and saved inside the ``.keras`` file by :func:`save_with_contract`.
* :mod:`.loading`: :func:`load_model`, the toolkit's safe loader (a leaf module).
* :mod:`.classifiers` (with :mod:`.backbones` and :mod:`.heads`): :func:`build_classifier`
  (ResNet50 / DenseNet121 backbones with the thesis' heads, in-graph normalisation,
  two-phase freezing, Grad-CAM layer).
* :mod:`.unet`: U-Net and Attention U-Net.
* :mod:`.weights`: where pretrained weights come from (never downloaded).
* :mod:`.chexpert`: torchxrayvision CheXpert DenseNet121 conversion and Keras backbone.
* :mod:`.legacy`: reading models saved by the previous version.

Saved models use standard Keras layers only: ``keras.saving.load_model(path)`` opens them
without this package.
"""

from bone_tumor_tf.errors import ModelConfigError
from bone_tumor_tf.models.chexpert import (
    chexpert_densenet121,
    convert_checkpoint,
    load_densenet121_weights,
)
from bone_tumor_tf.models.classifiers import (
    GRADCAM_LAYERS,
    backbone_layer_names,
    build_classifier,
    head_layer_names,
    last_conv_layer_name,
    set_head_l2,
    set_trainable_for_phase,
)
from bone_tumor_tf.models.contract import (
    ModelContract,
    attach_contract,
    is_segmentation_model,
    read_contract,
    save_with_contract,
    update_contract,
)
from bone_tumor_tf.models.loading import load_model
from bone_tumor_tf.models.weights import (
    DEFAULT_CHEXPERT_WEIGHTS,
    WeightsSource,
    chexpert_weights_path,
    imagenet_weights_path,
    resolve_weights,
)

__all__ = [
    "DEFAULT_CHEXPERT_WEIGHTS",
    "GRADCAM_LAYERS",
    "ModelConfigError",
    "ModelContract",
    "WeightsSource",
    "attach_contract",
    "backbone_layer_names",
    "build_classifier",
    "chexpert_densenet121",
    "chexpert_weights_path",
    "convert_checkpoint",
    "head_layer_names",
    "imagenet_weights_path",
    "is_segmentation_model",
    "last_conv_layer_name",
    "load_densenet121_weights",
    "load_model",
    "read_contract",
    "resolve_weights",
    "save_with_contract",
    "set_head_l2",
    "set_trainable_for_phase",
    "update_contract",
]
