"""The three models of the diagnosis chain, loaded and checked against their roles.

``--segmenter`` must be a segmentation model, ``--classifier`` a three-class crop
classifier trained with crop mode ``gt-box``, ``--whole-image`` (optional) a three-class
classifier trained on whole radiographs (crop mode ``none``). A model given in the wrong
role, or one whose input convention the chain cannot feed (not one grey channel in
[0, 255]), is refused with one line naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bone_tumor_tf.data.preprocess import apply_geometry, map_to_original, plan_geometry
from bone_tumor_tf.diagnosis.chain import CLASSES, DEFAULT_SEGMENTER_TTA
from bone_tumor_tf.errors import ModelFileError
from bone_tumor_tf.inference import predict_probabilities
from bone_tumor_tf.inference.inputs import SEGMENTATION_TTA
from bone_tumor_tf.inference.segmentation import predict_probability_maps
from bone_tumor_tf.models.contract import is_segmentation_model, read_contract
from bone_tumor_tf.models.loading import load_model


@dataclass
class ChainModels:
    """Loaded models with what the chain needs of their contracts."""

    segmenter: object
    segmenter_size: int
    threshold: float
    classifier: object
    classifier_size: int
    class_names: list[str]
    whole_image: object | None = None
    whole_image_size: int = 0
    whole_image_class_names: list[str] | None = None
    paths: dict | None = None
    tta: str = "none"

    def segment_batch(self, originals: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Tumor probabilities ``(H, W)`` of each decoded radiograph (any sizes), on its own
        grid, in one model call (two with ``tta="flip"``)."""
        if not originals:
            return []
        geometries = [plan_geometry(o.shape[:2], self.segmenter_size, upscale=True)
                      for o in originals]
        x = np.stack([apply_geometry(o, g) for o, g in zip(originals, geometries, strict=True)])
        probs = predict_probability_maps(self.segmenter, x, batch_size=len(x), tta=self.tta)
        return [np.clip(map_to_original(p, g), 0.0, 1.0)
                for p, g in zip(probs, geometries, strict=True)]

    def classify(self, crops: np.ndarray) -> np.ndarray:
        return predict_probabilities(self.classifier, crops)

    def whole_image_probabilities(self, inputs: np.ndarray) -> list[dict[str, float]]:
        """The whole-image model's probabilities of ``uint8`` inputs ``(N, S, S)`` (each
        radiograph fitted as :func:`bone_tumor_tf.inference.load_input` fits it)."""
        probs = predict_probabilities(self.whole_image, inputs)
        return [{name: float(v) for name, v in zip(self.whole_image_class_names, p,
                                                   strict=True)} for p in probs]


def _check_grey_input(model, path: Path) -> None:
    shape = tuple(model.inputs[0].shape)
    if len(model.inputs) != 1 or len(shape) != 4 or shape[-1] != 1:
        raise ModelFileError(f"{path}: input {shape} is not one grey channel (N, S, S, 1); "
                             "the chain feeds grey radiographs in [0, 255]")


def _check_input_range(contract, path: Path) -> None:
    if tuple(contract.input_range) != (0.0, 255.0):
        raise ModelFileError(f"{path}: expects input values in {list(contract.input_range)}; "
                             "the chain feeds radiograph grey values in [0, 255]")


def _classifier(path: Path, role: str, crop_mode: str):
    model = load_model(path)
    if is_segmentation_model(model):
        raise ModelFileError(f"{path}: is a segmentation model; {role} needs a three-class "
                             f"classifier trained with crop mode {crop_mode}")
    contract = read_contract(model)
    _check_grey_input(model, path)
    _check_input_range(contract, path)
    names = list(contract.class_names)
    if sorted(names) != sorted(CLASSES):
        raise ModelFileError(f"{path}: classes {names}; {role} needs a three-class normal / "
                             "benign / malignant classifier")
    if contract.crop_mode != crop_mode:
        hint = ("pass it as --whole-image" if crop_mode == "gt-box"
                else "pass it as --classifier")
        raise ModelFileError(f"{path}: was trained with crop mode "
                             f"{contract.crop_mode}; {role} needs crop mode "
                             f"{crop_mode} ({hint})")
    return model, contract.image_size, names


def load_chain_models(segmenter: str | Path, classifier: str | Path,
                      whole_image: str | Path | None = None,
                      threshold: float | None = None,
                      tta: str = DEFAULT_SEGMENTER_TTA) -> ChainModels:
    """Load and check the chain's models (see the module docstring for the roles).

    ``threshold``: the mask threshold (default: the segmenter's own); ``tta``: the
    segmenter's test-time augmentation (:data:`SEGMENTATION_TTA`,
    :func:`bone_tumor_tf.inference.segmentation.predict_probability_maps`).
    """
    if tta not in SEGMENTATION_TTA:
        raise ValueError(f"tta={tta!r}: expected one of {SEGMENTATION_TTA}")
    segmenter, classifier = Path(segmenter), Path(classifier)
    seg = load_model(segmenter)
    if not is_segmentation_model(seg):
        raise ModelFileError(f"{segmenter}: is not a segmentation model; --segmenter needs a "
                             "U-Net saved by the toolkit (a classifier goes to --classifier)")
    _check_grey_input(seg, segmenter)
    seg_contract = read_contract(seg)
    _check_input_range(seg_contract, segmenter)
    if threshold is None:
        threshold = seg_contract.threshold if seg_contract.threshold is not None else 0.5
    cls, cls_size, names = _classifier(classifier, "--classifier", "gt-box")
    models = ChainModels(seg, int(seg.inputs[0].shape[1]), float(threshold), cls, cls_size,
                         names, paths={"segmenter": str(segmenter),
                                       "classifier": str(classifier)}, tta=tta)
    if whole_image is not None:
        whole_image = Path(whole_image)
        model, size, whole_names = _classifier(whole_image, "--whole-image", "none")
        models.whole_image, models.whole_image_size = model, size
        models.whole_image_class_names = whole_names
        models.paths["whole_image"] = str(whole_image)
    return models
