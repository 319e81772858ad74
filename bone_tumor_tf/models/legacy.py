"""Reading models saved by the previous version of the toolkit (read-only support).

Models saved now are built from standard Keras layers only and carry their contract inside
the ``.keras`` archive (:mod:`bone_tumor_tf.models.contract`). The previous version kept it
in two other places, both still read:

* classifiers: an identity layer ``ModelMetadata`` (registered as
  ``bone_tumor_tf>ModelMetadata``) whose config holds the metadata as a JSON string.
  Registering that name again here lets :func:`bone_tumor_tf.models.loading.load_model`
  open those files with ``safe_mode=True``; nothing builds the layer any more, and
  :func:`bone_tumor_tf.models.contract.save_with_contract` replaces it by a standard
  ``Identity`` when such a model is saved again (which makes it loadable without the
  toolkit);
* U-Nets: a ``model.json`` sidecar beside ``model.keras``.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras

from bone_tumor_tf.errors import ModelFileError

__all__ = ["ModelMetadata", "legacy_layer_metadata", "legacy_sidecar", "without_legacy_layers"]

#: ``model.json``: where the previous version kept a U-Net's contract, beside the model.
SIDECAR_NAME = "model.json"
#: In-graph normalisation of the previous version's U-Nets, by encoder.
_ENCODER_NORMALIZATION = {"none": "unit", "resnet50": "caffe", "densenet121": "torch"}


@keras.saving.register_keras_serializable(package="bone_tumor_tf")
class ModelMetadata(keras.layers.Identity):
    """Legacy identity layer whose config carries model metadata as a JSON string.

    Input and output: any tensor, returned unchanged. The metadata is read from
    ``config.json`` by :func:`legacy_layer_metadata`, not from this object.
    """

    def __init__(self, metadata_json: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.metadata_json = metadata_json or "{}"

    def get_config(self):
        return {**super().get_config(), "metadata_json": self.metadata_json}


def legacy_layer_metadata(config) -> dict | None:
    """The metadata dict of the ``ModelMetadata`` layer in a ``config.json``, if any.

    Raises:
        ValueError: the metadata is not JSON.
    """
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            registered = str(node.get("registered_name") or "")
            if node.get("class_name") == "ModelMetadata" or \
                    registered.endswith(">ModelMetadata"):
                text = (node.get("config") or {}).get("metadata_json") or "{}"
                return dict(json.loads(text))
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return None


def legacy_sidecar(model_path: Path) -> dict | None:
    """The segmentation contract in the ``model.json`` beside ``model_path``, if any,
    with the ``normalization`` its encoder implies.

    Raises:
        ModelFileError: the sidecar exists but is not JSON.
    """
    sidecar = Path(model_path).with_name(SIDECAR_NAME)
    if not sidecar.is_file():
        return None
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ModelFileError(f"{sidecar}: unreadable model sidecar ({error})") from None
    if not isinstance(data, dict) or data.get("task") != "segmentation":
        return None
    encoder = str(data.get("encoder") or "none")
    data.setdefault("normalization", _ENCODER_NORMALIZATION.get(encoder, "unknown"))
    return data


def without_legacy_layers(model):
    """``model``, or for a model of the previous version a twin whose ``ModelMetadata``
    layer is a standard ``Identity`` (the other layers, and their weights, are shared)."""
    if not any(isinstance(layer, ModelMetadata) for layer in model.layers):
        return model

    def swap(layer):
        if isinstance(layer, ModelMetadata):
            return keras.layers.Identity(name=layer.name, dtype=layer.dtype_policy.name)
        return layer

    return keras.models.clone_model(model, clone_function=swap)
