"""Synthetic radiograph datasets in the exact on-disk format of BTXRD (and of class folders).

The real BTXRD dataset cannot be downloaded everywhere, so demos and tests use data that
is laid out exactly like it but drawn from scratch. Nothing here comes from a patient.

``generate_btxrd`` writes::

    DIR/SYNTHETIC.txt              marker: synthetic data, never real patients, with the seed
    DIR/dataset.xlsx               the 37 columns of ``schema.SHEET_COLUMNS``, one row per image
    DIR/images/IMG000001.jpeg      8-bit grayscale radiograph-like JPEGs of varied sizes;
    DIR/images/IMG000021.jpg       ... about 1 % end in ``.jpg`` (see ``image_id``)
    DIR/Annotations/IMG000021.json LabelMe 5.2.1 JSON, one per tumor image only

``generate_folders`` writes a class-per-folder set (``DIR/normal/*.png|*.jpg``,
``DIR/cancer/...``) such as many public MRI/X-ray collections use.

Images show a dark background, a soft-tissue envelope, one long bone (bright cortex,
textured marrow; sometimes a thinner parallel bone) with film noise and blur. Tumor images
carry lesions at the bone: benign ones are small, round/oval, well defined, either lucent
with a thin sclerotic rim or sclerotic; malignant ones are larger, irregular, ill defined,
mixed lucent/sclerotic, with a periosteal reaction (sunburst spicules and/or a Codman
triangle). Each lesion's LabelMe polygon is exactly the outline that was filled, and its
rectangle is the polygon's bounding box (plus 0-3 px, clipped to the image).

Everything is a pure function of ``seed``: metadata comes from one generator, and image
``i`` is drawn from its own generator keyed by ``(seed, i)``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from bone_tumor_tf.data import schema
from bone_tumor_tf.errors import BoneTumorError, DataError

__all__ = [
    "MARKER_FILE_NAME",
    "generate_btxrd",
    "generate_folders",
    "image_id",
    "is_synthetic_dataset",
    "main",
    "render_radiograph",
    "sample_metadata",
]

MARKER_FILE_NAME = "SYNTHETIC.txt"
SHEET_FILE_NAME = "dataset.xlsx"
IMAGES_DIR_NAME = "images"
ANNOTATIONS_DIR_NAME = "Annotations"
LABELME_VERSION = "5.2.1"

# Image i (0-based) is written as .jpg instead of .jpeg when i % 97 == 20: about 1 % of
# the files, as in BTXRD, and at least one (IMG000021.jpg) in every set of >= 21 images.
_JPG_EVERY = 97
_JPG_OFFSET = 20
_JPEG_QUALITY = 90

# Image-level class shares of BTXRD (1879 normal / 1525 benign / 342 malignant).
_CLASS_FRACTIONS = {"normal": 1879 / 3746, "benign": 1525 / 3746, "malignant": 342 / 3746}
# Image counts per subtype in BTXRD, used as sampling weights within benign / malignant.
_SUBTYPE_WEIGHTS = {
    "osteochondroma": 754, "multiple osteochondromas": 263, "simple bone cyst": 206,
    "giant cell tumor": 93, "osteofibroma": 44, "synovial osteochondroma": 50, "other bt": 115,
    "osteosarcoma": 297, "other mt": 45,
}
# Benign subtypes drawn as sclerotic (bony) lesions; the others are drawn lucent.
_SCLEROTIC_SUBTYPES = ("osteochondroma", "multiple osteochondromas", "synovial osteochondroma")
_CENTER_WEIGHTS = (0.72, 0.18, 0.10)
_SITE_WEIGHTS = {
    "hand": 0.04, "ulna": 0.02, "radius": 0.03, "humerus": 0.10, "foot": 0.04, "tibia": 0.16,
    "fibula": 0.05, "femur": 0.22, "hip bone": 0.05, "ankle-joint": 0.03, "knee-joint": 0.14,
    "hip-joint": 0.04, "wrist-joint": 0.02, "elbow-joint": 0.02, "shoulder-joint": 0.04,
}
_SITE_REGION = {
    **dict.fromkeys(
        ("hand", "ulna", "radius", "humerus", "wrist-joint", "elbow-joint", "shoulder-joint"),
        "upper limb",
    ),
    **dict.fromkeys(
        ("foot", "tibia", "fibula", "femur", "ankle-joint", "knee-joint"), "lower limb"
    ),
    **dict.fromkeys(("hip bone", "hip-joint"), "pelvis"),
}
# Views of a single-view patient; multi-view patients get distinct views.
_SINGLE_VIEW_WEIGHTS = (0.57, 0.40, 0.03)
# Number of views (images) per patient: about 35 % of patients have 2-3 views.
_VIEWS_PER_PATIENT_WEIGHTS = (0.65, 0.27, 0.08)
# Columns on which all views of one patient agree (everything but image_id and the view).
_PATIENT_COLUMNS = (
    schema.DEMOGRAPHIC_COLUMNS + schema.SITE_COLUMNS + schema.LABEL_COLUMNS
    + schema.SUBTYPE_COLUMNS + schema.REGION_COLUMNS
)

_OWNED_BTXRD_IMAGE = re.compile(r"^IMG\d{6}\.(jpeg|jpg)$")
_OWNED_BTXRD_ANNOTATION = re.compile(r"^IMG\d{6}\.json$")
_OWNED_FOLDER_IMAGE = re.compile(r"^[\w-]+_\d{4,}\.(png|jpg)$")
_MIN_SIDE_LIMIT = 32


# --------------------------------------------------------------------------- metadata


def image_id(index: int) -> str:
    """File name of image ``index`` (0-based): ``IMG000001.jpeg``, or ``.jpg`` for ~1 %.

    The ``.jpg`` choice does not depend on the seed: index ``i`` gets ``.jpg`` when
    ``i % 97 == 20`` (``IMG000021.jpg``, ``IMG000118.jpg``, ...).
    """
    if index < 0:
        raise ValueError(f"image index must be >= 0, got {index}")
    extension = "jpg" if index % _JPG_EVERY == _JPG_OFFSET else "jpeg"
    return f"IMG{index + 1:06d}.{extension}"


def _sample_patient_view_counts(rng: np.random.Generator, n: int) -> list[int]:
    """Views per patient, summing to exactly ``n`` (the last patient is cut to fit)."""
    counts: list[int] = []
    total = 0
    while total < n:
        count = int(rng.choice((1, 2, 3), p=_VIEWS_PER_PATIENT_WEIGHTS))
        count = min(count, n - total)
        counts.append(count)
        total += count
    return counts


def _assign_patient_classes(rng: np.random.Generator, view_counts: list[int]) -> list[str]:
    """Class per patient so that image-level shares track ``_CLASS_FRACTIONS`` closely.

    Patients are visited in random order and each gets the class whose image count lags
    its target share the most, so ratios are near target for any ``n`` and seed while the
    class sequence in image order stays random.
    """
    class_names = schema.CLASS_NAMES
    fractions = np.array([_CLASS_FRACTIONS[name] for name in class_names])
    image_counts = np.zeros(len(class_names))
    assigned = 0
    classes = [""] * len(view_counts)
    for patient in rng.permutation(len(view_counts)):
        views = view_counts[patient]
        deficit = fractions * (assigned + views) - image_counts
        deficit += rng.uniform(0.0, 1e-6, size=deficit.shape)  # random tie-break
        chosen = int(np.argmax(deficit))
        classes[patient] = class_names[chosen]
        image_counts[chosen] += views
        assigned += views
    return classes


def _sample_age(rng: np.random.Generator, class_name: str) -> int:
    # Bone tumors peak in the second decade; keep a wide spread so patients rarely collide.
    if class_name != "normal" and rng.random() < 0.55:
        return int(rng.integers(8, 31))
    return int(rng.integers(5, 81))


def _sample_views(rng: np.random.Generator, count: int) -> list[str]:
    views = schema.VIEW_COLUMNS
    if count == 1:
        return [views[int(rng.choice(3, p=_SINGLE_VIEW_WEIGHTS))]]
    if count == 2:
        pair = ["frontal", "lateral"] if rng.random() < 0.9 else ["frontal", "oblique"]
        return pair if rng.random() < 0.8 else pair[::-1]
    return ["frontal", "lateral", "oblique"]


def sample_metadata(n: int, seed: int = 0, *, with_patient_id: bool = False) -> pd.DataFrame:
    """Sample the BTXRD metadata sheet of a synthetic dataset, without drawing images.

    Rows are grouped into patients of 1-3 views on consecutive rows (about 35 % of the
    patients have 2-3 views). The views of one patient agree on center, age, gender, site,
    label, subtype and region columns and differ in the view columns; consecutive patients
    never agree on all of those. Image-level class shares track BTXRD (about 50 % normal,
    41 % benign, 9 % malignant).

    Args:
        n: Number of images (rows), >= 1.
        seed: Seed of the generator; the sheet is a pure function of ``(n, seed)``.
        with_patient_id: Append a ``patient_id`` column (0-based, in row order). It is not
            part of the BTXRD sheet and is never written to ``dataset.xlsx``.

    Returns:
        A DataFrame with exactly the columns of ``schema.SHEET_COLUMNS`` in that order
        (plus ``patient_id`` if requested): ``image_id`` (str, with extension), ``center``
        (1-3), ``age`` (5-80), ``gender`` ("M"/"F") and 0/1 integer indicators.
    """
    _check_count_and_seed(n, seed)
    rng = np.random.default_rng([seed, 0])
    view_counts = _sample_patient_view_counts(rng, n)
    patient_classes = _assign_patient_classes(rng, view_counts)
    site_names = list(_SITE_WEIGHTS)
    site_probabilities = np.array(list(_SITE_WEIGHTS.values()))
    site_probabilities /= site_probabilities.sum()

    rows: list[dict] = []
    previous_patient: dict | None = None
    for patient_id, (views, class_name) in enumerate(zip(view_counts, patient_classes)):
        patient = dict.fromkeys(_PATIENT_COLUMNS, 0)
        patient["center"] = int(rng.choice(schema.CENTERS, p=_CENTER_WEIGHTS))
        patient["age"] = _sample_age(rng, class_name)
        patient["gender"] = schema.GENDERS[int(rng.integers(2))]
        site = site_names[int(rng.choice(len(site_names), p=site_probabilities))]
        patient[site] = 1
        patient[_SITE_REGION[site]] = 1
        if class_name != "normal":
            subtypes = schema.BENIGN_SUBTYPES if class_name == "benign" else (
                schema.MALIGNANT_SUBTYPES
            )
            weights = np.array([_SUBTYPE_WEIGHTS[name] for name in subtypes], dtype=float)
            patient[subtypes[int(rng.choice(len(subtypes), p=weights / weights.sum()))]] = 1
            patient["tumor"] = 1
            patient[class_name] = 1
        if previous_patient is not None and all(
            patient[column] == previous_patient[column] for column in _PATIENT_COLUMNS
        ):
            # Neighbours identical on every field would read as one patient: nudge the age.
            patient["age"] += 1 if patient["age"] < 80 else -1
        previous_patient = patient
        for view in _sample_views(rng, views):
            index = len(rows)
            row = {schema.IMAGE_ID: image_id(index), **patient}
            row.update(dict.fromkeys(schema.VIEW_COLUMNS, 0))
            row[view] = 1
            if with_patient_id:
                row["patient_id"] = patient_id
            rows.append(row)

    columns = list(schema.SHEET_COLUMNS) + (["patient_id"] if with_patient_id else [])
    sheet = pd.DataFrame(rows, columns=columns)
    integer_columns = [c for c in columns if c not in (schema.IMAGE_ID, "gender")]
    sheet[integer_columns] = sheet[integer_columns].astype(np.int64)
    return sheet


# --------------------------------------------------------------------------- drawing


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


class _BoneFrame:
    """Axis-aligned coordinates of one long bone: ``u`` along the shaft, ``v`` across.

    The shaft has half-width ``shaft_half_width``; it flares toward its end at
    ``u = end_u`` (metaphysis) and closes with an elliptical cap (epiphysis).
    """

    def __init__(self, center_xy, angle, shaft_half_width, end_u, flare):
        self.cx, self.cy = center_xy
        self.dx, self.dy = float(np.cos(angle)), float(np.sin(angle))
        self.shaft_half_width = shaft_half_width
        self.end_half_width = shaft_half_width * (1.0 + flare)
        self.end_u = end_u
        self.flare_length = 2.5 * shaft_half_width

    def to_uv(self, x, y):
        x = x - self.cx
        y = y - self.cy
        return x * self.dx + y * self.dy, -x * self.dy + y * self.dx

    def to_xy(self, u, v):
        return self.cx + u * self.dx - v * self.dy, self.cy + u * self.dy + v * self.dx

    def flare_fraction(self, u):
        """0 along the shaft, rising smoothly to 1 where the end cap starts."""
        cap_start = self.end_u - self.end_half_width
        return _smoothstep(cap_start - self.flare_length, cap_start, u)

    def half_width(self, u):
        span = self.end_half_width - self.shaft_half_width
        return self.shaft_half_width + span * self.flare_fraction(u)

    def radius(self, u, v):
        """Normalised distance from the axis: < 1 inside the bone, 1 on its surface."""
        beyond_cap = np.maximum(u - (self.end_u - self.end_half_width), 0.0)
        return np.sqrt((v / self.half_width(u)) ** 2 + (beyond_cap / self.end_half_width) ** 2)


def _bone_intensity(frame, u, v, marrow, cortex, cortex_fraction, texture):
    """Additive intensity of one bone: bright cortex shell, darker textured marrow."""
    radius = frame.radius(u, v)
    # The cortex thins toward the end of the bone, as at a real metaphysis.
    cortex_width = cortex_fraction * (1.0 - 0.6 * frame.flare_fraction(u))
    in_cortex = _smoothstep(1.0 - cortex_width - 0.04, 1.0 - cortex_width + 0.04, radius)
    in_bone = 1.0 - _smoothstep(0.97, 1.03, radius)
    return in_bone * (marrow + texture + (cortex - marrow) * in_cortex)


def _low_frequency_noise(rng, height, width, cell_px) -> np.ndarray:
    """Zero-mean, unit-ish noise with blobs about ``cell_px`` wide (cheap: upsampled)."""
    grid_h = max(2, int(round(height / cell_px)) + 1)
    grid_w = max(2, int(round(width / cell_px)) + 1)
    coarse = rng.standard_normal((grid_h, grid_w), dtype=np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def _fill_mask(shape, polygon_xy, blur_sigma: float) -> np.ndarray:
    """Anti-aliased float mask (0-1) of a polygon, optionally with a blurred border."""
    mask = np.zeros(shape, np.uint8)
    points = np.round(np.asarray(polygon_xy) * 16.0).astype(np.int32)
    cv2.fillPoly(mask, [points], 255, lineType=cv2.LINE_AA, shift=4)
    mask = mask.astype(np.float32) / 255.0
    if blur_sigma > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), blur_sigma)
    return mask


def _lesion_outline(rng, frame, center_uv, radius, kind, n_points) -> np.ndarray:
    """Closed lesion outline in image (x, y) coordinates, rounded to 1/100 px."""
    angles = np.linspace(0.0, 2.0 * np.pi, n_points, endpoint=False)
    if kind == "malignant":
        # Irregular: a few random low harmonics on the radius.
        radial = np.ones_like(angles)
        for harmonic in range(2, 6):
            amplitude = rng.uniform(0.0, 0.45 / harmonic)
            radial += amplitude * np.cos(harmonic * angles + rng.uniform(0, 2 * np.pi))
        radial = np.maximum(radial, 0.45)
        elongation = rng.uniform(1.1, 1.7)
    else:
        # Smooth oval with a slight, smooth wobble.
        radial = 1.0 + 0.03 * np.cos(3 * angles + rng.uniform(0, 2 * np.pi))
        elongation = rng.uniform(1.0, 1.5)
    tilt = rng.uniform(-0.35, 0.35)
    along = elongation * radius * radial * np.cos(angles)
    across = radius * radial * np.sin(angles)
    u = center_uv[0] + along * np.cos(tilt) - across * np.sin(tilt)
    v = center_uv[1] + along * np.sin(tilt) + across * np.cos(tilt)
    x, y = frame.to_xy(u, v)
    return np.round(np.stack([x, y], axis=1), 2)


def _place_lesions(rng, frame, height, width, kind, subtype, n_lesions, visible_u):
    """Sample up to ``n_lesions`` non-overlapping lesion outlines inside the image.

    The first lesion is always placed; further ones are dropped only if a tiny image has no
    room for them. Returns a list of ``(outline_xy, center_uv, radius, style)`` with
    ``style`` one of "lucent", "sclerotic", "malignant".
    """
    margin = 2.0
    low_u, high_u = visible_u
    lesions: list[tuple] = []
    for _ in range(n_lesions):
        fallback = None
        for attempt in range(60):
            shrink = 0.985**attempt  # big lesions that keep failing are shrunk
            # Prefer the metaphysis, but search the whole shaft once that keeps failing.
            near_end = frame.end_u < high_u and attempt < 20 and rng.random() < 0.75
            last_u = min(high_u, frame.end_u - 0.7 * frame.end_half_width)
            if near_end:
                start = frame.end_u - frame.end_half_width - frame.flare_length
                first_u = min(max(low_u, start), last_u)
            else:
                first_u = min(low_u, last_u)
            u_c = rng.uniform(first_u, last_u)
            half_width = float(frame.half_width(u_c))
            if kind == "malignant":
                style = "malignant"
                radius = shrink * half_width * rng.uniform(0.85, 1.35)
                v_c = rng.uniform(-0.5, 0.5) * half_width
            elif subtype in _SCLEROTIC_SUBTYPES or (subtype is None and rng.random() < 0.4):
                style = "sclerotic"
                radius = shrink * half_width * rng.uniform(0.4, 0.75)
                if subtype == "synovial osteochondroma" or rng.random() < 0.3:
                    v_c = rng.uniform(-0.5, 0.5) * half_width  # within the bone
                else:  # exostosis at the cortex, bulging out of the bone
                    v_c = rng.choice((-1.0, 1.0)) * (half_width - rng.uniform(0.0, 0.4) * radius)
            else:
                style = "lucent"
                radius = shrink * half_width * rng.uniform(0.4, 0.7)
                room = max(half_width * 0.85 - 1.3 * radius, 0.0)  # stay inside the cortex
                v_c = rng.uniform(-room, room)
            radius = max(radius, 3.0)
            outline = _lesion_outline(
                rng, frame, (u_c, v_c), radius, kind, 48 if style == "malignant" else 32
            )
            inside = (
                outline[:, 0].min() >= margin and outline[:, 1].min() >= margin
                and outline[:, 0].max() <= width - 1 - margin
                and outline[:, 1].max() <= height - 1 - margin
            )
            apart = all(
                np.hypot(u_c - other[1][0], v_c - other[1][1]) > 1.75 * (radius + other[2]) + 4
                for other in lesions
            )
            candidate = (outline, (u_c, v_c), radius, style)
            if inside and apart:
                lesions.append(candidate)
                break
            if apart or (fallback is None and not lesions):
                fallback = candidate
        else:
            # Nothing fits (tiny image): clip an outline that does not touch the others to
            # the image (the clipped outline is what gets drawn), or drop this lesion.
            if fallback is not None:
                outline = fallback[0]
                outline[:, 0] = np.clip(outline[:, 0], 0.0, width - 1.0)
                outline[:, 1] = np.clip(outline[:, 1], 0.0, height - 1.0)
                lesions.append(fallback)
    return lesions


def _draw_periosteal_reaction(rng, frame, layer, outline, center_uv, radius, line_px):
    """Bright sunburst spicules and/or a Codman triangle outside the cortex."""
    style = rng.choice(("sunburst", "codman", "both"), p=(0.5, 0.3, 0.2))
    brightness = rng.uniform(45.0, 75.0)
    u_c, v_c = center_uv
    if style in ("sunburst", "both"):
        outline_u, outline_v = frame.to_uv(outline[:, 0], outline[:, 1])
        half_width = frame.half_width(outline_u)
        for index in np.flatnonzero(np.abs(outline_v) > 0.75 * half_width):
            if rng.random() < 0.35:
                continue
            du, dv = outline_u[index] - u_c, outline_v[index] - v_c
            norm = np.hypot(du, dv) + 1e-6
            length = radius * rng.uniform(0.3, 0.8)
            start = frame.to_xy(outline_u[index] - 0.1 * du, outline_v[index] - 0.1 * dv)
            stop = frame.to_xy(
                outline_u[index] + length * du / norm, outline_v[index] + length * dv / norm
            )
            cv2.line(
                layer, (int(round(start[0])), int(round(start[1]))),
                (int(round(stop[0])), int(round(stop[1]))),
                int(round(brightness * rng.uniform(0.7, 1.0))), line_px, cv2.LINE_AA,
            )
    if style in ("codman", "both"):
        outline_u, _ = frame.to_uv(outline[:, 0], outline[:, 1])
        side = 1.0 if rng.random() < 0.5 else -1.0
        # The periosteum lifts where the tumor meets normal cortex, on the shaft side.
        u0 = float(outline_u.min())
        half_width = float(frame.half_width(u0))
        length = radius * rng.uniform(0.5, 0.9)
        lift = radius * rng.uniform(0.15, 0.3)
        corners_uv = [
            (u0 + 0.1 * length, side * half_width),
            (u0 - length, side * half_width),
            (u0 + 0.1 * length, side * (half_width + lift)),
        ]
        corners = np.array([frame.to_xy(u, v) for u, v in corners_uv])
        cv2.fillPoly(
            layer, [np.round(corners * 16).astype(np.int32)], int(round(brightness)), cv2.LINE_AA, 4
        )


def render_radiograph(
    rng: np.random.Generator,
    height: int,
    width: int,
    lesion: str | None = None,
    subtype: str | None = None,
    n_lesions: int = 1,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Draw one radiograph-like image of a long bone, optionally with lesions.

    Args:
        rng: Generator that supplies all randomness (the image is a pure function of it).
        height, width: Image size in pixels.
        lesion: None or "normal" (no lesion), "benign" or "malignant".
        subtype: Optional BTXRD subtype; benign osteochondromas are drawn sclerotic, other
            benign subtypes lucent with a sclerotic rim. Without it the style is random.
        n_lesions: Number of lesions (e.g. 2-3 for "multiple osteochondromas"); they do
            not overlap. On a tiny image, lesions after the first may be dropped for lack
            of room.

    Returns:
        ``(image, outlines)``: a ``uint8`` ``(height, width)`` array, and one float
        ``(k, 2)`` array of (x, y) polygon vertices per lesion, exactly as filled.
    """
    if lesion not in (None, "normal", "benign", "malignant"):
        raise ValueError(f"lesion must be None, 'normal', 'benign' or 'malignant', got {lesion!r}")
    shape = (height, width)
    short_side, long_side = min(shape), max(shape)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)

    # Bone along the long image axis, tilted, off-centre; its end is usually in view.
    base_angle = 0.0 if width >= height else np.pi / 2
    angle = base_angle + rng.uniform(-0.4, 0.4) + (np.pi if rng.random() < 0.5 else 0.0)
    center = (width * rng.uniform(0.4, 0.6), height * rng.uniform(0.4, 0.6))
    shaft_half_width = short_side * rng.uniform(0.07, 0.12)
    end_visible = rng.random() < 0.8
    end_u = long_side * rng.uniform(0.18, 0.38) if end_visible else 10.0 * long_side
    frame = _BoneFrame(center, angle, shaft_half_width, end_u, flare=rng.uniform(0.3, 0.8))
    u, v = frame.to_uv(xx, yy)
    corner_u, _ = frame.to_uv(np.array([0, width, 0, width]), np.array([0, 0, height, height]))
    visible_u = (float(corner_u.min()) + shaft_half_width, float(corner_u.max()))

    # Background: dark, with a gentle exposure gradient.
    gradient_angle = rng.uniform(0.0, 2.0 * np.pi)
    image = rng.uniform(8.0, 30.0) + rng.uniform(0.0, 15.0) * (
        np.cos(gradient_angle) * xx / width + np.sin(gradient_angle) * yy / height
    )
    # Soft tissue: a smooth, wobbly envelope around the bone.
    tissue_half_width = frame.end_half_width * rng.uniform(1.8, 2.8)
    wobble = tissue_half_width * 0.12 * _low_frequency_noise(rng, height, width, long_side / 3)
    tissue_end = end_u + frame.end_half_width * rng.uniform(0.8, 1.6)
    beyond = np.maximum(u - tissue_end + tissue_half_width, 0.0)
    tissue_radius = np.sqrt(v**2 + beyond**2) + wobble
    image = image + rng.uniform(35.0, 60.0) * (
        1.0 - _smoothstep(0.8 * tissue_half_width, 1.2 * tissue_half_width, tissue_radius)
    )
    # Main bone: bright cortex, textured (trabecular) marrow.
    marrow = rng.uniform(55.0, 85.0)
    texture = rng.uniform(5.0, 10.0) * _low_frequency_noise(
        rng, height, width, max(2.0, short_side / 60)
    )
    image += _bone_intensity(
        frame, u, v, marrow, rng.uniform(110.0, 150.0), rng.uniform(0.18, 0.32), texture
    )
    # Sometimes a thinner parallel bone (fibula / ulna), additive like X-ray attenuation.
    if rng.random() < 0.4:
        offset = rng.choice((-1.0, 1.0)) * frame.end_half_width * rng.uniform(1.4, 1.9)
        partner = _BoneFrame(
            frame.to_xy(0.0, offset), angle + rng.uniform(-0.06, 0.06),
            shaft_half_width * rng.uniform(0.35, 0.55), end_u * rng.uniform(0.7, 1.0),
            flare=rng.uniform(0.2, 0.5),
        )
        pu, pv = partner.to_uv(xx, yy)
        image += _bone_intensity(
            partner, pu, pv, marrow * 0.8, rng.uniform(90.0, 130.0), 0.35, texture * 0.5
        )
    # Side marker ("L"/"R") burnt into a corner, as on many films.
    if rng.random() < 0.5:
        scale = short_side / 300.0
        corner = (int(width * rng.choice((0.04, 0.86))), int(height * rng.choice((0.1, 0.96))))
        marker = np.zeros(shape, np.uint8)  # OpenCV draws text on 8-bit images only
        cv2.putText(
            marker, "L" if rng.random() < 0.5 else "R", corner, cv2.FONT_HERSHEY_SIMPLEX,
            scale, 255, max(1, int(round(2 * scale))), cv2.LINE_AA,
        )
        alpha = marker.astype(np.float32) / 255.0
        image = image * (1.0 - alpha) + rng.uniform(180.0, 230.0) * alpha

    outlines: list[np.ndarray] = []
    if lesion in ("benign", "malignant"):
        periosteal_layer = np.zeros(shape, np.uint8)  # OpenCV anti-aliases 8-bit only
        line_px = max(1, int(round(short_side / 300)))
        lesions = _place_lesions(
            rng, frame, height, width, lesion, subtype, n_lesions, visible_u
        )
        for outline, center_uv, radius, style in lesions:
            outlines.append(outline)
            if style == "lucent":
                # Well-defined lytic hole with a thin sclerotic rim.
                mask = _fill_mask(shape, outline, rng.uniform(0.6, 1.2))
                rim_px = max(1, int(round(radius * rng.uniform(0.08, 0.16))))
                hard = (_fill_mask(shape, outline, 0.0) > 0.5).astype(np.uint8)
                kernel = np.ones((2 * rim_px + 1, 2 * rim_px + 1), np.uint8)
                rim = cv2.dilate(hard, kernel).astype(np.float32) - hard
                rim = cv2.GaussianBlur(rim, (0, 0), 0.8)
                image += rng.uniform(30.0, 55.0) * rim - rng.uniform(45.0, 70.0) * mask
            elif style == "sclerotic":
                mask = _fill_mask(shape, outline, rng.uniform(0.6, 1.2))
                image += mask * (rng.uniform(45.0, 75.0) + 0.5 * texture)
            else:
                # Ill-defined, mixed lytic/sclerotic, replacing bone (cortex destruction).
                mask = _fill_mask(shape, outline, radius * rng.uniform(0.08, 0.16))
                mixed = np.tanh(2.0 * _low_frequency_noise(rng, height, width, radius / 2.5))
                # Net lytic or sclerotic against what surrounds it, so it reads as a lesion.
                hard = (_fill_mask(shape, outline, 0.0) > 0.5).astype(np.uint8)
                ring_px = max(3, int(round(0.6 * radius)))
                ring = cv2.dilate(hard, np.ones((ring_px, ring_px), np.uint8)) > hard
                surround = float(image[ring].mean()) if ring.any() else marrow
                shift = rng.choice((-1.0, 1.0), p=(0.45, 0.55)) * rng.uniform(35.0, 55.0)
                content = surround + shift + rng.uniform(20.0, 35.0) * mixed
                image = image * (1.0 - mask) + content * mask
                _draw_periosteal_reaction(
                    rng, frame, periosteal_layer, outline, center_uv, radius, line_px
                )
        image += cv2.GaussianBlur(periosteal_layer.astype(np.float32), (0, 0), 0.7)

    # Film: slight blur, grain, and a random tone curve.
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), rng.uniform(0.5, 1.1))
    image += rng.uniform(2.0, 6.0) * rng.standard_normal(shape, dtype=np.float32)
    image = np.clip(image, 0.0, 255.0) / 255.0
    image = 255.0 * image ** rng.uniform(0.8, 1.2)
    return np.clip(np.round(image), 0, 255).astype(np.uint8), outlines


# --------------------------------------------------------------------------- writing


def is_synthetic_dataset(path) -> bool:
    """True if ``path`` is a directory that carries the ``SYNTHETIC.txt`` marker."""
    return (Path(path) / MARKER_FILE_NAME).is_file()


def _check_count_and_seed(n, seed) -> None:
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")


def _check_sides(min_side, max_side) -> None:
    if min_side < _MIN_SIDE_LIMIT or max_side < min_side:
        raise ValueError(
            f"need {_MIN_SIDE_LIMIT} <= min_side <= max_side, got min_side={min_side}, "
            f"max_side={max_side}"
        )


def _prepare_output_dir(out_dir: Path) -> None:
    """Create ``out_dir``; clear the files an earlier synthetic run wrote there.

    A non-empty directory without the marker is refused, so real data is never mixed
    with, or overwritten by, synthetic files. In a marked directory only files named as
    this module names them are deleted; anything else is left alone.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(out_dir, "exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not is_synthetic_dataset(out_dir):
            raise DataError(
                out_dir,
                f"is not empty and has no {MARKER_FILE_NAME} marker; refusing to write "
                "synthetic data into it (use an empty or new directory)",
            )
        for owned in (out_dir / MARKER_FILE_NAME, out_dir / SHEET_FILE_NAME):
            owned.unlink(missing_ok=True)
        for folder in out_dir.iterdir():
            if not folder.is_dir():
                continue
            for file in folder.iterdir():
                if file.is_file() and (
                    _OWNED_BTXRD_IMAGE.match(file.name)
                    or _OWNED_BTXRD_ANNOTATION.match(file.name)
                    or _OWNED_FOLDER_IMAGE.match(file.name)
                ):
                    file.unlink()
            if not any(folder.iterdir()):
                folder.rmdir()
    out_dir.mkdir(parents=True, exist_ok=True)


def _write_marker(out_dir: Path, kind: str, n: int, seed: int, sides: tuple[int, int]) -> None:
    (out_dir / MARKER_FILE_NAME).write_text(
        "SYNTHETIC DATA - NOT REAL PATIENTS.\n"
        "Every image and record here was drawn by bone_tumor_tf.data.synthetic from random\n"
        "numbers. No patient data was used; do not present it as real or use it clinically.\n"
        f"kind: {kind}\nn: {n}\nseed: {seed}\nmin_side: {sides[0]}\nmax_side: {sides[1]}\n",
        encoding="utf-8",
    )


def _sample_size(rng: np.random.Generator, min_side: int, max_side: int) -> tuple[int, int]:
    height, width = rng.integers(min_side, max_side + 1, size=2)
    return int(height), int(width)


def _write_image(path: Path, image: np.ndarray, as_three_channels: bool) -> None:
    if as_three_channels:  # some real JPEGs store gray pixels as RGB
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY] if path.suffix != ".png" else []
    if not cv2.imwrite(str(path), image, params):
        raise DataError(path, "could not be written")


def _rectangle_points(rng, outline, height, width) -> list[list[float]]:
    """Bounding box of ``outline`` (+0-3 px), as two corners in a random order."""
    pad = rng.uniform(0.0, 3.0)
    x0 = round(max(0.0, float(outline[:, 0].min()) - pad), 2)
    y0 = round(max(0.0, float(outline[:, 1].min()) - pad), 2)
    x1 = round(min(width - 1.0, float(outline[:, 0].max()) + pad), 2)
    y1 = round(min(height - 1.0, float(outline[:, 1].max()) + pad), 2)
    orders = (
        [[x0, y0], [x1, y1]], [[x1, y1], [x0, y0]], [[x1, y0], [x0, y1]], [[x0, y1], [x1, y0]]
    )
    return orders[int(rng.choice(4, p=(0.55, 0.25, 0.1, 0.1)))]


def _labelme_shape(label: str, points, shape_type: str) -> dict:
    return {
        "label": label, "points": points, "group_id": None, "description": "",
        "shape_type": shape_type, "flags": {}, "mask": None,
    }


def _labelme_document(rng, file_name, label, outlines, height, width) -> dict:
    rectangles = [
        _labelme_shape(label, _rectangle_points(rng, outline, height, width), "rectangle")
        for outline in outlines
    ]
    polygons = [_labelme_shape(label, outline.tolist(), "polygon") for outline in outlines]
    if rng.random() < 0.75:  # usually rectangle then polygon per lesion ...
        shapes = [shape for pair in zip(rectangles, polygons) for shape in pair]
    else:  # ... sometimes all rectangles first
        shapes = rectangles + polygons
    return {
        "version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": file_name,
        "imageData": None, "imageHeight": height, "imageWidth": width,
    }


def generate_btxrd(
    out_dir, n: int = 120, seed: int = 0, min_side: int = 320, max_side: int = 640
) -> Path:
    """Write a synthetic dataset in the exact on-disk format of BTXRD.

    Args:
        out_dir: Target directory. Created if missing. A non-empty directory is refused
            (``DataError``) unless it holds ``SYNTHETIC.txt`` from an earlier run; then the
            files this module owns there (images, annotations, sheet, marker) are deleted
            and rewritten, and other files are left alone.
        n: Number of images (sheet rows), >= 1.
        seed: Seed; the dataset is a pure function of ``(n, seed, min_side, max_side)``.
        min_side, max_side: Range of image heights and widths, drawn independently.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    _check_count_and_seed(n, seed)
    _check_sides(min_side, max_side)
    out_dir = Path(out_dir)
    _prepare_output_dir(out_dir)
    _write_marker(out_dir, "btxrd", n, seed, (min_side, max_side))
    images_dir = out_dir / IMAGES_DIR_NAME
    annotations_dir = out_dir / ANNOTATIONS_DIR_NAME
    images_dir.mkdir(exist_ok=True)
    annotations_dir.mkdir(exist_ok=True)

    sheet = sample_metadata(n, seed)
    subtype_values = sheet[list(schema.SUBTYPE_COLUMNS)].to_numpy()
    for index, row in enumerate(sheet.itertuples(index=False)):
        rng = np.random.default_rng([seed, 1, index])
        file_name = row[0]
        height, width = _sample_size(rng, min_side, max_side)
        lesion, subtype = "normal", None
        if row[schema.SHEET_COLUMNS.index("tumor")]:
            lesion = "malignant" if row[schema.SHEET_COLUMNS.index("malignant")] else "benign"
            subtype = schema.SUBTYPE_COLUMNS[int(np.argmax(subtype_values[index]))]
        n_lesions = int(rng.integers(2, 4)) if subtype == "multiple osteochondromas" else 1
        image, outlines = render_radiograph(rng, height, width, lesion, subtype, n_lesions)
        _write_image(images_dir / file_name, image, as_three_channels=rng.random() < 0.05)
        if outlines:
            document = _labelme_document(rng, file_name, subtype, outlines, height, width)
            annotation_path = annotations_dir / (Path(file_name).stem + ".json")
            annotation_path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    sheet.to_excel(out_dir / SHEET_FILE_NAME, index=False, engine="openpyxl")
    return out_dir


def generate_folders(
    out_dir,
    n: int = 80,
    seed: int = 0,
    classes: Sequence[str] = ("normal", "cancer"),
    size: int | tuple[int, int] = (192, 320),
) -> Path:
    """Write a synthetic class-per-folder image set: ``out_dir/<class>/<class>_0001.png``.

    The first class has no lesion; every other class gets one lesion per image, drawn
    benign-style if its name contains "benign" and malignant-style otherwise. Images are
    split as evenly as possible over the classes; within a class, even-numbered files are
    PNG and odd-numbered ones JPEG (``.jpg``).

    Args:
        out_dir: Target directory; same refusal/overwrite rules as ``generate_btxrd``.
        n: Total number of images, >= 1.
        seed: Seed; the set is a pure function of its arguments.
        classes: Folder names, at least two, distinct, made of letters, digits, ``_``, ``-``.
        size: ``side`` for square images, or ``(min_side, max_side)`` for varied ones.

    Returns:
        ``out_dir`` as a ``Path``.
    """
    _check_count_and_seed(n, seed)
    classes = tuple(classes)
    if len(classes) < 2 or len(set(classes)) != len(classes) or not all(
        re.fullmatch(r"[\w-]+", name) for name in classes
    ):
        raise ValueError(f"classes must be >= 2 distinct simple names, got {classes!r}")
    min_side, max_side = (size, size) if isinstance(size, int | np.integer) else size
    _check_sides(min_side, max_side)
    out_dir = Path(out_dir)
    _prepare_output_dir(out_dir)
    _write_marker(out_dir, "folders", n, seed, (min_side, max_side))

    per_class = [n // len(classes) + (k < n % len(classes)) for k in range(len(classes))]
    index = 0
    for class_index, (name, count) in enumerate(zip(classes, per_class)):
        class_dir = out_dir / name
        class_dir.mkdir(exist_ok=True)
        lesion = "normal" if class_index == 0 else (
            "benign" if "benign" in name.lower() else "malignant"
        )
        for number in range(1, count + 1):
            rng = np.random.default_rng([seed, 2, index])
            index += 1
            height, width = _sample_size(rng, min_side, max_side)
            image, _ = render_radiograph(rng, height, width, lesion)
            extension = "png" if number % 2 == 0 else "jpg"
            _write_image(
                class_dir / f"{name}_{number:04d}.{extension}", image,
                as_three_channels=rng.random() < 0.05,
            )
    return out_dir


# --------------------------------------------------------------------------- CLI


def _class_counts_btxrd(out_dir: Path) -> str:
    sheet = pd.read_excel(out_dir / SHEET_FILE_NAME, engine="openpyxl")
    normal = int((sheet["tumor"] == 0).sum())
    benign, malignant = int(sheet["benign"].sum()), int(sheet["malignant"].sum())
    return f"normal={normal} benign={benign} malignant={malignant}"


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bone_tumor_tf.data.synthetic",
        description=(
            "Write a SYNTHETIC radiograph dataset (no real patients) for demos and tests. "
            "--kind btxrd: the BTXRD layout (images/, Annotations/ LabelMe JSON, dataset.xlsx "
            "with the 37 BTXRD columns). --kind folders: one sub-folder of PNG/JPG images "
            "per class. Both write a SYNTHETIC.txt marker with the seed."
        ),
    )
    parser.add_argument("--out", required=True, type=Path,
                        help="output directory (new, empty, or an earlier synthetic one)")
    parser.add_argument("--kind", choices=("btxrd", "folders"), default="btxrd",
                        help="dataset layout (default: btxrd)")
    parser.add_argument("--n", type=int, default=None,
                        help="number of images (default: 120 for btxrd, 80 for folders)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--min-side", type=int, default=None,
                        help="smallest image side in px (default: 320 btxrd, 192 folders)")
    parser.add_argument("--max-side", type=int, default=None,
                        help="largest image side in px (default: 640 btxrd, 320 folders)")
    parser.add_argument("--classes", default="normal,cancer",
                        help="folders only: comma-separated class folder names, the first "
                        "without lesions (default: normal,cancer)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code (0 ok, 2 bad input)."""
    args = _build_parser().parse_args(argv)
    try:
        if args.kind == "btxrd":
            n = 120 if args.n is None else args.n
            out_dir = generate_btxrd(
                args.out, n=n, seed=args.seed,
                min_side=320 if args.min_side is None else args.min_side,
                max_side=640 if args.max_side is None else args.max_side,
            )
            counts = _class_counts_btxrd(out_dir)
        else:
            n = 80 if args.n is None else args.n
            classes = tuple(name.strip() for name in args.classes.split(",") if name.strip())
            out_dir = generate_folders(
                args.out, n=n, seed=args.seed, classes=classes,
                size=(192 if args.min_side is None else args.min_side,
                      320 if args.max_side is None else args.max_side),
            )
            counts = " ".join(
                f"{name}={sum(1 for f in (out_dir / name).iterdir() if f.is_file())}"
                for name in classes
            )
    except (ValueError, BoneTumorError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {n} synthetic {args.kind} images to {out_dir} (seed {args.seed}): {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
