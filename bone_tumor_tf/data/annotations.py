"""Tumor shapes of a record, read in one place, and resized copies of annotated sets.

:func:`read_record_annotation` is how every consumer (gt-box crops, segmentation masks,
Grad-CAM scoring, segmentation evaluation, ``inspect``) reads a record's tumor shapes: a
LabelMe annotation (BTXRD) or a mask image (mask-folder sets), in the pixels of the
record's image file as its header states them. A huge image decoded reduced
(:func:`bone_tumor_tf.data.images.read_image_with_scale`) is then handled by the caller
with ``annotation.scaled(scale, decoded_hw)``, on top of (never instead of) the per-axis
scaling below, so nothing is scaled twice.

Resized copies
--------------
Copies of BTXRD redistributed on Hugging Face, Kaggle or GitHub are often resized and
re-encoded but keep the original LabelMe files, whose ``imageWidth``/``imageHeight`` and
coordinates are those of the original radiograph. :func:`find_resized_copy` decides, once
per dataset, from every annotated image's (file size, annotation size) pair:

1. When fewer than :data:`RESIZED_SHARE` (90 %) of the annotated images disagree with their
   annotation's size, or fewer than :data:`MIN_RESIZED` do, the set is not a resized
   copy: a disagreeing annotation is an error ("annotation size ... disagrees with the
   image"), as for any set.
2. Otherwise the disagreeing images must follow one resize rule, the first of these that
   90 % of them fit: *one size* (every image has the same size, e.g. 256 x 256, so the
   factors differ per image and the aspect ratio is not kept); *one factor* (every image
   is its annotation's size times one per-axis factor pair, to a pixel); *aspect kept*
   (each image is its annotation's size times one factor, the same on both axes to a
   pixel, e.g. a long side resized to 1024). An annotation that fits has its shapes scaled
   per axis (x by ``W_image / imageWidth``, y by ``H_image / imageHeight``) when read
   (:attr:`ImageRecord.annotation_resized`); one that does not stays an error, as does
   every disagreeing annotation when no rule fits 90 %. An annotation that agrees with
   its image is used as it is.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bone_tumor_tf.data.images import image_size
from bone_tumor_tf.data.labelme import LabelMeAnnotation, parse_labelme, read_labelme_size
from bone_tumor_tf.data.mask_folders import MaskAnnotation, read_mask
from bone_tumor_tf.data.records import ImageRecord
from bone_tumor_tf.errors import DataError

#: Share of annotated images that must disagree with their annotation's size for a set to
#: be taken as a resized copy, and share of those that one resize rule must explain.
RESIZED_SHARE = 0.9
#: Fewest disagreeing annotations that make a resized copy (one or two are errors).
MIN_RESIZED = 3
#: Pixels by which a resized side may differ from annotation side x factor (rounding).
SIDE_TOLERANCE = 1.0

Size = tuple[int, int]  # (height, width)


def read_record_annotation(record: ImageRecord) -> LabelMeAnnotation | MaskAnnotation | None:
    """The record's tumor shapes in its image file's pixels (None without annotation/mask).

    Raises:
        DataError: the annotation or mask is unreadable, or its size disagrees with the
            image (an annotation of a resized copy is scaled instead, see module docstring).
    """
    if record.mask is not None:
        return read_mask(record.mask, image_hw=image_size(record.path))
    if record.annotation is None:
        return None
    file_hw = image_size(record.path)
    if record.annotation_resized:
        return parse_labelme(record.annotation).resized(file_hw)
    return parse_labelme(record.annotation, image_size=file_hw)


@dataclass(frozen=True)
class ResizeRule:
    """How a resized copy was made: ``kind`` is ``size``, ``factor`` or ``aspect``."""

    kind: str
    size: Size | None = None          # kind "size": the common (height, width)
    factors: tuple[float, float] | None = None  # kind "factor": common (fy, fx)

    def fits(self, image_hw: Size, annotation_hw: Size) -> bool:
        """True when ``image_hw`` is ``annotation_hw`` resized by this rule."""
        (h, w), (ah, aw) = image_hw, annotation_hw
        if self.kind == "size":
            return (h, w) == self.size
        if self.kind == "factor":
            fy, fx = self.factors
            return abs(ah * fy - h) <= SIDE_TOLERANCE and abs(aw * fx - w) <= SIDE_TOLERANCE
        factor = w / aw  # aspect kept: the height follows the width's factor
        return abs(ah * factor - h) <= SIDE_TOLERANCE

    def describe(self) -> str:
        if self.kind == "size":
            return f"every image {self.size[1]}x{self.size[0]}"
        if self.kind == "factor":
            return f"every image x{self.factors[1]:.3g} wide, x{self.factors[0]:.3g} high"
        return "aspect ratio kept"


@dataclass
class ResizedCopy:
    """What :func:`find_resized_copy` found.

    Attributes:
        rule: the resize rule, or None when the set is not a consistent resized copy.
        scaled: indices (into the pairs given) of annotations to scale.
        disagreeing: how many annotations disagree with their image.
    """

    rule: ResizeRule | None
    scaled: frozenset[int]
    disagreeing: int

    def note(self) -> str | None:
        """The one line ``inspect`` prints (None when nothing is scaled)."""
        if not self.scaled:
            return None
        return (f"{len(self.scaled):,} annotations scaled from their original sizes "
                f"(resized copy: {self.rule.describe()})")


def _candidate_rules(pairs: list[tuple[Size, Size]]) -> list[ResizeRule]:
    common_size = Counter(image_hw for image_hw, _ in pairs).most_common(1)[0][0]
    factors = np.array([(h / ah, w / aw) for (h, w), (ah, aw) in pairs])
    median = tuple(float(v) for v in np.median(factors, axis=0))
    return [ResizeRule("size", size=common_size), ResizeRule("factor", factors=median),
            ResizeRule("aspect")]


def find_resized_copy(pairs: Sequence[tuple[Size, Size] | None]) -> ResizedCopy:
    """Decide whether annotated images are a resized copy (rule: module docstring).

    Args:
        pairs: per annotated image, ``((image height, width), (annotation height,
            width))``, or None when either size could not be read (ignored).
    """
    known = [(i, p) for i, p in enumerate(pairs) if p is not None]
    disagreeing = [(i, p) for i, p in known if tuple(p[0]) != tuple(p[1])]
    nothing = ResizedCopy(None, frozenset(), len(disagreeing))
    if len(disagreeing) < max(MIN_RESIZED, RESIZED_SHARE * len(known)):
        return nothing
    for rule in _candidate_rules([p for _, p in disagreeing]):
        fitting = frozenset(i for i, p in disagreeing if rule.fits(*p))
        if len(fitting) >= RESIZED_SHARE * len(disagreeing):
            return ResizedCopy(rule, fitting, len(disagreeing))
    return nothing


def _size_pair(record: ImageRecord) -> tuple[Size, Size] | None:
    try:
        return image_size(record.path), read_labelme_size(record.annotation)
    except DataError:
        return None  # reported when the record is read (inspect, training)


def mark_resized_annotations(records: list[ImageRecord]) -> tuple[list[ImageRecord],
                                                                   ResizedCopy]:
    """Records with ``annotation_resized`` set where a resized copy's annotation fits.

    Opens every annotation and reads every annotated image's header (no pixel decoding).
    """
    annotated = [k for k, r in enumerate(records) if r.annotation is not None]
    found = find_resized_copy([_size_pair(records[k]) for k in annotated])
    if not found.scaled:
        return records, found
    records = list(records)
    for index in found.scaled:
        k = annotated[index]
        records[k] = dataclasses.replace(records[k], annotation_resized=True)
    return records, found
