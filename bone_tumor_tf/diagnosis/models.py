"""The three models of the diagnosis chain, loaded and checked against their roles.

``--segmenter`` must be a segmentation model (several: an ensemble whose mean map the chain
thresholds; all of one input size), ``--classifier`` a three-class crop
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
    """Loaded models with what the chain needs of their contracts.

    ``segmenters``: the segmentation models, one or more (an ensemble: the chain thresholds
    the mean of their maps)."""

    segmenters: list
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
        grid: one model call per segmenter (two with ``tta="flip"``); with several
        segmenters the mean of their maps, each made with the same ``tta``."""
        if not originals:
            return []
        geometries = [plan_geometry(o.shape[:2], self.segmenter_size, upscale=True)
                      for o in originals]
        x = np.stack([apply_geometry(o, g) for o, g in zip(originals, geometries, strict=True)])
        probs = np.mean([predict_probability_maps(model, x, batch_size=len(x), tta=self.tta)
                         for model in self.segmenters], axis=0).astype(np.float32)
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


def _segmenter(path: Path):
    model = load_model(path)
    if not is_segmentation_model(model):
        raise ModelFileError(f"{path}: is not a segmentation model; --segmenter needs a "
                             "U-Net saved by the toolkit (a classifier goes to --classifier)")
    _check_grey_input(model, path)
    contract = read_contract(model)
    _check_input_range(contract, path)
    return model, contract


def segmenter_paths(segmenter: str | Path | Sequence[str | Path]) -> list[Path]:
    """``--segmenter`` as a list of paths: one path, or several (an ensemble)."""
    return [Path(p) for p in ([segmenter] if isinstance(segmenter, (str, Path))
                              else segmenter)]


def segmenter_roles(paths: Sequence[str | Path]) -> dict[str, str]:
    """``{"segmenter": first, "segmenter_2": second, ...}``: how the chain's settings, reports
    and review page name the segmenters (one segmenter: the key it always had)."""
    return {("segmenter" if k == 0 else f"segmenter_{k + 1}"): str(path)
            for k, path in enumerate(paths)}


def load_chain_models(segmenter: str | Path | Sequence[str | Path], classifier: str | Path,
                      whole_image: str | Path | None = None,
                      threshold: float | None = None,
                      tta: str = DEFAULT_SEGMENTER_TTA) -> ChainModels:
    """Load and check the chain's models (see the module docstring for the roles).

    ``segmenter``: one path, or several (an ensemble; every one must take the first's
    input size). ``threshold``: the mask threshold (default: the first segmenter's own,
    which was chosen for that model's map alone: choose an ensemble's on a validation
    split); ``tta``: the segmenters' test-time augmentation (:data:`SEGMENTATION_TTA`,
    :func:`bone_tumor_tf.inference.segmentation.predict_probability_maps`).
    """
    if tta not in SEGMENTATION_TTA:
        raise ValueError(f"tta={tta!r}: expected one of {SEGMENTATION_TTA}")
    seg_paths = segmenter_paths(segmenter)
    if not seg_paths:
        raise ValueError("at least one segmenter is needed")
    loaded = [_segmenter(path) for path in seg_paths]
    size = int(loaded[0][0].inputs[0].shape[1])
    for path, (model, _) in zip(seg_paths[1:], loaded[1:], strict=True):
        if int(model.inputs[0].shape[1]) != size:
            raise ModelFileError(f"{path}: input size {model.inputs[0].shape[1]} differs from "
                                 f"the first segmenter's {size} ({seg_paths[0]}); an "
                                 "ensemble's maps are averaged on one grid")
    if threshold is None:
        own = loaded[0][1].threshold
        threshold = own if own is not None else 0.5
    classifier = Path(classifier)
    cls, cls_size, names = _classifier(classifier, "--classifier", "gt-box")
    models = ChainModels([model for model, _ in loaded], size, float(threshold), cls,
                         cls_size, names,
                         paths={**segmenter_roles(seg_paths), "classifier": str(classifier)},
                         tta=tta)
    if whole_image is not None:
        whole_image = Path(whole_image)
        model, size, whole_names = _classifier(whole_image, "--whole-image", "none")
        models.whole_image, models.whole_image_size = model, size
        models.whole_image_class_names = whole_names
        models.paths["whole_image"] = str(whole_image)
    return models
