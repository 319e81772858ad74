"""The diagnosis chain on one radiograph: segment -> regions -> classify crops -> explain.

1. The segmenter's tumor probability map (crop mode ``none``) is mapped back onto the
   original radiograph and turned into scored boxes (:mod:`.regions`): regions are found
   at the mask threshold, and each box spans the region's extent at ``box_threshold``.
2. Each region is cropped exactly as ``gt-box`` preprocessing crops a ground-truth box
   (:func:`bone_tumor_tf.data.preprocess.crop_to_box`, the function training uses) and
   read by the crop classifier (normal / benign / malignant).
3. Image level: the region with the most tumor evidence speaks for the image. With
   ``s`` the region's score (mean tumor probability inside it) and ``q`` its class
   probabilities, the evidence is ``e = s * (1 - q_normal)`` and the image's probabilities
   are ``(1 - e, s * q_benign, s * q_malignant)`` (they sum to 1). Without any region
   the image is ``(1, 0, 0)``. Every region is still reported with its own
   classification.
4. Optional whole-image model (three classes): the image probabilities become
   ``(1 - w) * chain + w * whole``. The finding is the most probable class or, with a
   tumor threshold ``t`` (an operating point), a tumor when ``P(benign) + P(malignant) >=
   t`` and normal otherwise (:func:`bone_tumor_tf.evaluation.diagnosis.decide`).
5. Explanation: a class activation map of the crop classifier for each region's predicted
   tumor class, mapped back onto the original radiograph inside the region's crop.

The models are passed in as plain callables on arrays, so the chain is independent of how
they were loaded (:mod:`bone_tumor_tf.diagnosis.command` wires real ``.keras`` models).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bone_tumor_tf.data.preprocess import CropGeometry, crop_to_box, map_to_original
from bone_tumor_tf.diagnosis.regions import (
    DEFAULT_BOX_THRESHOLD,
    DEFAULT_MERGE_OVERLAP,
    DEFAULT_MIN_AREA,
    Region,
    regions_from_probabilities,
)
from bone_tumor_tf.evaluation.diagnosis import decide

CLASSES = ("normal", "benign", "malignant")
TUMOR_CLASSES = ("benign", "malignant")
#: Weight of the whole-image model in the image probabilities, unless chosen otherwise.
DEFAULT_WHOLE_IMAGE_WEIGHT = 0.5
#: The segmenter's test-time augmentation unless told otherwise
#: (:data:`bone_tumor_tf.inference.inputs.SEGMENTATION_TTA`): on the real validation split
#: ``flip`` gave +0.02 tumor Dice at an equal rate of marked normals, and the chain's
#: balanced accuracy under the 15% false-alarm cap +0.021 with one segmenter, -0.002 with
#: another; 1.2x the chain's time (``docs/real-data-decisions.md``, eleventh session).
DEFAULT_SEGMENTER_TTA = "flip"


@dataclass
class RegionFinding:
    """A proposed tumor with the crop classifier's reading of it.

    Attributes:
        region: box (original pixels), score and area.
        probabilities: the crop classifier's class probabilities.
        geometry: how the crop became the classifier's input.
        heatmap: float32 ``(H, W)`` in [0, 1] on the original image (zero outside the
            crop), or None when not explained.
        crop: the classifier's input, ``uint8`` ``(S, S)`` (kept so that the regions of
            several radiographs can be explained in one batch, :func:`explain_findings`).
    """

    region: Region
    probabilities: dict[str, float]
    geometry: CropGeometry
    heatmap: np.ndarray | None = None
    crop: np.ndarray | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """The region's class: the more probable of benign and malignant."""
        return max(TUMOR_CLASSES, key=lambda c: self.probabilities.get(c, 0.0))

    @property
    def detection_score(self) -> float:
        """Score of the region as a detection of class :attr:`label`: ``s * q_label``."""
        return float(self.region.score * self.probabilities.get(self.label, 0.0))

    def to_dict(self, scale: float = 1.0) -> dict:
        box = [int(round(v / scale)) for v in self.region.box]
        return {"box": box, "score": round(float(self.region.score), 6),
                "area": int(round(self.region.area / scale ** 2)), "label": self.label,
                "probabilities": {k: round(float(v), 6) for k, v in self.probabilities.items()}}


@dataclass
class Diagnosis:
    """The chain's result for one radiograph.

    Attributes:
        probabilities: image-level class probabilities (normal, benign, malignant).
        regions: every proposed region, in descending segmentation score.
        probability_map: float32 ``(H, W)`` tumor probabilities on the original image.
        chain_probabilities: the chain's own image-level probabilities (before any
            whole-image model was combined).
        tumor_threshold: the finding's operating point (None: the most probable class).
    """

    probabilities: dict[str, float]
    regions: list[RegionFinding]
    probability_map: np.ndarray
    chain_probabilities: dict[str, float] = field(default_factory=dict)
    tumor_threshold: float | None = None

    @property
    def finding(self) -> str:
        """``normal``, ``benign`` or ``malignant`` by the rule in the module docstring."""
        row = np.array([[self.probabilities[c] for c in CLASSES]])
        return CLASSES[int(decide(row, self.tumor_threshold)[0])]


def check_crop_classifier_classes(class_names: Sequence[str], source: str = "classifier"):
    """The crop classifier must name normal, benign and malignant (any order)."""
    missing = [c for c in CLASSES if c not in class_names]
    if missing:
        raise ValueError(f"{source}: the diagnosis chain needs a three-class normal / benign / "
                         f"malignant model; its classes are {list(class_names)}")


def image_probabilities(findings: Sequence[RegionFinding]) -> dict[str, float]:
    """Image-level probabilities from the regions (rule in the module docstring)."""
    if not findings:
        return {"normal": 1.0, "benign": 0.0, "malignant": 0.0}

    def evidence(f: RegionFinding) -> float:
        return f.region.score * (1.0 - f.probabilities["normal"])

    top = max(findings, key=evidence)
    s, q = top.region.score, top.probabilities
    return {"normal": 1.0 - evidence(top), "benign": s * q["benign"],
            "malignant": s * q["malignant"]}


def combine_with_whole_image(chain: Mapping[str, float], whole: Mapping[str, float],
                             weight: float) -> dict[str, float]:
    """``(1 - weight) * chain + weight * whole``, class by class."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"whole-image weight {weight}: must be in [0, 1]")
    return {c: (1.0 - weight) * chain[c] + weight * whole[c] for c in CLASSES}


def explain_findings(findings: Sequence[RegionFinding], class_names: Sequence[str],
                     explain: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> None:
    """Set each finding's heatmap: a class activation map of its crop for its tumor class.

    ``explain`` gets every crop at once (``(n, S, S)`` uint8 and the n class indices) and
    returns ``(n, S, S)`` maps in [0, 1]; each is mapped back onto its radiograph inside the
    region's crop. Findings may come from several radiographs (one batched call).
    """
    findings = list(findings)
    if not findings:
        return
    targets = np.array([list(class_names).index(f.label) for f in findings])
    cams = explain(np.stack([f.crop for f in findings]), targets)
    for finding, cam in zip(findings, cams, strict=True):
        finding.heatmap = np.clip(map_to_original(cam, finding.geometry), 0.0, 1.0)


def diagnose_image(original: np.ndarray,
                   segment: Callable[[np.ndarray], np.ndarray],
                   classify: Callable[[np.ndarray], np.ndarray],
                   class_names: Sequence[str], crop_size: int, threshold: float = 0.5,
                   min_area: int = DEFAULT_MIN_AREA,
                   merge_overlap: float = DEFAULT_MERGE_OVERLAP,
                   box_threshold: float | None = DEFAULT_BOX_THRESHOLD,
                   explain: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                   whole_image: Mapping[str, float] | None = None,
                   whole_image_weight: float = DEFAULT_WHOLE_IMAGE_WEIGHT,
                   tumor_threshold: float | None = None) -> Diagnosis:
    """Run the chain on one decoded radiograph.

    Args:
        original: ``uint8`` ``(H, W)`` radiograph as decoded.
        segment: original image -> float ``(H, W)`` tumor probabilities on the original
            image (the segmenter, with its own input mapping).
        classify: ``uint8`` crops ``(n, S, S)`` -> class probabilities ``(n, K)``.
        class_names: the classifier's K class names (must include the three classes).
        crop_size: the classifier's input side ``S``.
        threshold: the segmenter's mask threshold.
        min_area: minimum region area in ``original``'s pixels.
        box_threshold: each region's box spans the component of the map ``>= box_threshold``
            that holds it (None: the component at ``threshold`` itself; see
            :mod:`bone_tumor_tf.diagnosis.regions`).
        explain: optional ``(crops (n, S, S), class indices (n,)) -> heatmaps (n, S, S)``.
        whole_image: optional whole-image model probabilities of this image.
        tumor_threshold: operating point of the finding (None: the most probable class).
    """
    check_crop_classifier_classes(class_names)
    probability_map = np.asarray(segment(original), np.float32)
    if probability_map.shape != original.shape[:2]:
        raise ValueError(f"segmenter returned {probability_map.shape}, expected "
                         f"{original.shape[:2]}")
    regions = regions_from_probabilities(probability_map, threshold, min_area, merge_overlap,
                                         box_threshold)
    findings: list[RegionFinding] = []
    if regions:
        crops = [crop_to_box(original, region.box, crop_size) for region in regions]
        inputs = np.stack([image for image, _ in crops])
        probs = np.asarray(classify(inputs), np.float64)
        for region, (crop, geometry), p in zip(regions, crops, probs, strict=True):
            findings.append(RegionFinding(
                region, {name: float(v) for name, v in zip(class_names, p, strict=True)},
                geometry, crop=crop))
        if explain is not None:
            explain_findings(findings, class_names, explain)
    chain = image_probabilities(findings)
    final = chain if whole_image is None else combine_with_whole_image(
        chain, whole_image, whole_image_weight)
    return Diagnosis(final, findings, probability_map, chain, tumor_threshold)
