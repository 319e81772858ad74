"""LabelMe annotations of BTXRD: tumor rectangles and polygons.

On-disk format (one JSON file per tumor image, ``Annotations/<image stem>.json``)::

    {
      "version": "5.x", "flags": {},
      "shapes": [
        {"label": "osteosarcoma", "shape_type": "rectangle",
         "points": [[x1, y1], [x2, y2]], ...},            # two corners, any order
        {"label": "osteosarcoma", "shape_type": "polygon",
         "points": [[x, y], [x, y], [x, y], ...], ...},   # tumor outline, >= 3 points
        ...                                               # more tumors: more shapes
      ],
      "imagePath": "IMG000123.jpeg", "imageData": null,
      "imageHeight": H, "imageWidth": W
    }

Coordinates are pixels, x to the right and y down, origin at the top-left pixel's corner.
Rectangles become ``(x_min, y_min, x_max, y_max)``; polygons become a binary mask at the
image's resolution (OpenCV ``fillPoly``, union of all polygons, boundary pixels included).
Consumers read a record's annotation through
:func:`bone_tumor_tf.data.annotations.read_record_annotation`, which also scales the
annotations of a resized copy (:meth:`LabelMeAnnotation.resized`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from bone_tumor_tf.errors import DataError

Box = tuple[float, float, float, float]

KNOWN_SHAPE_TYPES = ("rectangle", "polygon")


@dataclass
class LabelMeAnnotation:
    """Tumor shapes of one image.

    Attributes:
        path: the JSON file.
        image_width, image_height: the image size the annotation was drawn on (pixels).
        boxes: tumor rectangles ``(x_min, y_min, x_max, y_max)``, clipped to the image.
        polygons: tumor outlines, each a float array (N, 2) of ``(x, y)``, clipped.
        labels: the subtype label of every shape, in file order.
        warnings: non-fatal problems found while reading (e.g. clipped coordinates).
    """

    path: Path
    image_width: int
    image_height: int
    boxes: list[Box] = field(default_factory=list)
    polygons: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def union_box(self) -> Box | None:
        """The smallest box holding every tumor rectangle and polygon, or None."""
        return union_box(self.boxes + [polygon_box(p) for p in self.polygons])

    def mask(self) -> np.ndarray:
        """Union of all polygons as a ``uint8`` {0, 1} mask (image_height, image_width)."""
        return polygons_to_mask(self.polygons, self.image_height, self.image_width)

    def scaled(self, scale: float, image_hw: tuple[int, int] | None = None
               ) -> LabelMeAnnotation:
        """The annotation for the image decoded at ``scale`` x its original size.

        ``image_hw``: the decoded image's (height, width) (libjpeg rounds reduced sizes
        up, so it can differ by a pixel from ``round(size x scale)``).
        """
        if scale == 1.0 and image_hw in (None, (self.image_height, self.image_width)):
            return self
        height, width = image_hw or (round(self.image_height * scale),
                                     round(self.image_width * scale))
        return LabelMeAnnotation(
            path=self.path, image_width=int(width), image_height=int(height),
            boxes=[tuple(v * scale for v in box) for box in self.boxes],
            polygons=[p * scale for p in self.polygons], labels=list(self.labels),
            warnings=list(self.warnings))

    def resized(self, image_hw: tuple[int, int]) -> LabelMeAnnotation:
        """The annotation of the image resized to ``image_hw`` = (height, width).

        Each axis is scaled on its own (x by ``width / image_width``, y by
        ``height / image_height``), as a resized copy that did not keep the aspect
        ratio needs (e.g. every BTXRD image at 256 x 256).
        """
        height, width = int(image_hw[0]), int(image_hw[1])
        if (height, width) == (self.image_height, self.image_width):
            return self
        factors = np.array([width / self.image_width, height / self.image_height])
        return LabelMeAnnotation(
            path=self.path, image_width=width, image_height=height,
            boxes=[(x0 * factors[0], y0 * factors[1], x1 * factors[0], y1 * factors[1])
                   for x0, y0, x1, y1 in self.boxes],
            polygons=[p * factors for p in self.polygons], labels=list(self.labels),
            warnings=list(self.warnings))


def union_box(boxes: list[Box]) -> Box | None:
    """The smallest box containing all ``boxes``; None for an empty list."""
    if not boxes:
        return None
    array = np.asarray(boxes, dtype=np.float64)
    return (
        float(array[:, 0].min()), float(array[:, 1].min()),
        float(array[:, 2].max()), float(array[:, 3].max()),
    )


def polygon_box(polygon: np.ndarray) -> Box:
    """Bounding box ``(x_min, y_min, x_max, y_max)`` of a (N, 2) polygon."""
    return (
        float(polygon[:, 0].min()), float(polygon[:, 1].min()),
        float(polygon[:, 0].max()), float(polygon[:, 1].max()),
    )


def polygons_to_mask(polygons: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """Rasterise polygons to a ``uint8`` mask of shape (height, width), values {0, 1}.

    Vertices are rounded to the nearest pixel centre and filled with ``cv2.fillPoly``,
    which includes boundary pixels: the square with corners (2, 2) and (6, 5) covers
    5 x 4 = 20 pixels. Overlapping polygons give their union.
    """
    mask = np.zeros((int(height), int(width)), np.uint8)
    contours = [np.round(p).astype(np.int32).reshape(-1, 1, 2) for p in polygons if len(p) >= 3]
    if contours:
        cv2.fillPoly(mask, contours, 1)
    return mask


def _points(shape: dict, path: Path, index: int) -> np.ndarray:
    try:
        points = np.asarray(shape["points"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise DataError(path, f"shape {index} has no valid 'points'") from None
    if points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
        raise DataError(path, f"shape {index} has malformed points (expected [[x, y], ...])")
    return points


def _clip(points: np.ndarray, width: int, height: int, path: Path, index: int,
          warnings: list[str]) -> np.ndarray:
    clipped = points.copy()
    clipped[:, 0] = clipped[:, 0].clip(0, width - 1)
    clipped[:, 1] = clipped[:, 1].clip(0, height - 1)
    # Half a pixel of slack: LabelMe writes corner coordinates such as x = width.
    if np.abs(clipped - points).max() > 0.5:
        warnings.append(f"shape {index} lies partly outside the {width}x{height} image (clipped)")
    return clipped


def _read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(path, "missing annotation file") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(path, f"invalid JSON ({error})") from None
    if not isinstance(content, dict):
        raise DataError(path, "invalid LabelMe file (top level is not an object)")
    return content


def _size(content: dict, path: Path) -> tuple[int, int]:
    try:
        return int(content["imageHeight"]), int(content["imageWidth"])
    except (KeyError, TypeError, ValueError):
        raise DataError(path, "missing or invalid imageWidth/imageHeight") from None


def read_labelme_size(path: str | Path) -> tuple[int, int]:
    """``(imageHeight, imageWidth)`` of a LabelMe file: the size it was drawn on."""
    path = Path(path)
    return _size(_read_json(path), path)


def parse_labelme(path: str | Path, image_size: tuple[int, int] | None = None
                  ) -> LabelMeAnnotation:
    """Read one LabelMe JSON file of BTXRD.

    Args:
        path: the ``.json`` file.
        image_size: optional ``(height, width)`` of the actual image; when given and it
            disagrees with ``imageHeight``/``imageWidth``, a :class:`DataError` is raised.

    Returns:
        The annotation, coordinates clipped to the image (clipping is reported in
        ``warnings``).

    Raises:
        DataError: invalid JSON, missing image size, no shapes, an unknown ``shape_type``,
            a rectangle without exactly two points, or a polygon with fewer than 3 points.
    """
    path = Path(path)
    content = _read_json(path)
    height, width = _size(content, path)
    if image_size is not None and tuple(image_size) != (height, width):
        raise DataError(
            path,
            f"annotation size {width}x{height} disagrees with the image "
            f"({image_size[1]}x{image_size[0]})",
        )
    shapes = content.get("shapes")
    if not isinstance(shapes, list) or not shapes:
        raise DataError(path, "no shapes in annotation")

    annotation = LabelMeAnnotation(path=path, image_width=width, image_height=height)
    for index, shape in enumerate(shapes):
        kind = shape.get("shape_type") if isinstance(shape, dict) else None
        if kind not in KNOWN_SHAPE_TYPES:
            raise DataError(path, f"shape {index} has unknown shape_type {kind!r} "
                                  f"(expected one of {', '.join(KNOWN_SHAPE_TYPES)})")
        points = _points(shape, path, index)
        if kind == "rectangle":
            if len(points) != 2:
                raise DataError(path, f"rectangle (shape {index}) has {len(points)} points, "
                                      "expected 2 corners")
            points = _clip(points, width, height, path, index, annotation.warnings)
            (x1, y1), (x2, y2) = points
            annotation.boxes.append((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)))
        else:
            if len(points) < 3:
                raise DataError(path, f"polygon (shape {index}) has {len(points)} points, "
                                      "needs at least 3")
            annotation.polygons.append(_clip(points, width, height, path, index,
                                             annotation.warnings))
        annotation.labels.append(str(shape.get("label", "")))
    return annotation
