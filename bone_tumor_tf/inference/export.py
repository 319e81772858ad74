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
from bone_tumor_tf.io import atomic_write_json
from bone_tumor_tf.models.contract import read_contract
from bone_tumor_tf.models.loading import load_model

logger = logging.getLogger(__name__)

CONTRACT_FILE_NAME = "contract.json"


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
    contract = read_contract(model).to_dict()  # the one in the .keras file
    model.export(str(out_dir), format="tf_saved_model", verbose=False)
    atomic_write_json(out_dir / CONTRACT_FILE_NAME, contract)
    logger.debug("exported %s to %s (contract: %s)", model_path, out_dir, contract)
    return out_dir
