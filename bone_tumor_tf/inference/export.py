"""Export a saved model for serving: a TensorFlow SavedModel plus ``contract.json``.

The SavedModel comes from Keras' ``model.export`` (an ExportArchive with one serving
endpoint ``serve``: float32 input ``(None, S, S, C)`` with radiograph values in [0, 255],
the model's own outputs), which TF Serving, ``tf.saved_model.load`` and the TFLite
converter read without Keras or this toolkit. ``contract.json`` beside it says how to
prepare an image for it (task, class names, input size and range, crop mode, threshold).
"""

from __future__ import annotations

import logging
from pathlib import Path

from bone_tumor_tf.errors import BoneTumorError
from bone_tumor_tf.evaluation.segmentation import is_segmentation_model, read_model_sidecar
from bone_tumor_tf.inference.inputs import load_model, model_contract
from bone_tumor_tf.io import atomic_write_json

logger = logging.getLogger(__name__)

CONTRACT_FILE_NAME = "contract.json"


def read_contract(model, model_path: str | Path) -> dict:
    """The contract of a loaded model: what a server needs to prepare its inputs.

    Classifiers carry it in the model (:func:`~bone_tumor_tf.inference.model_contract`);
    segmentation models in the ``model.json`` sidecar beside the file, completed with the
    input shape. The one place that reads a contract for export.
    """
    if not is_segmentation_model(model):
        return model_contract(model)
    contract = dict(read_model_sidecar(model_path) or {})
    shape = model.inputs[0].shape
    contract.setdefault("task", "segmentation")
    contract.setdefault("image_size", int(shape[1]))
    contract.setdefault("channels", int(shape[-1]))
    contract.setdefault("crop_mode", "none")
    return contract


def export_saved_model(model_path: str | Path, out_dir: str | Path) -> Path:
    """Write the SavedModel of ``model_path`` and its ``contract.json`` into ``out_dir``.

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ModelFileError: the model cannot be loaded safely.
        BoneTumorError: ``out_dir`` exists and is not an empty folder (nothing is
            overwritten).
    """
    model_path, out_dir = Path(model_path), Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise BoneTumorError(f"{out_dir}: exists and is not an empty folder; choose a new "
                             "--out (e.g. the next version number)")
    model = load_model(model_path)
    contract = read_contract(model, model_path)
    model.export(str(out_dir), format="tf_saved_model", verbose=False)
    atomic_write_json(out_dir / CONTRACT_FILE_NAME, contract)
    logger.debug("exported %s to %s (contract: %s)", model_path, out_dir, contract)
    return out_dir
