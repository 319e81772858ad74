"""Drawing the metadata of a synthetic BTXRD set: patients, views, labels, sites.

:func:`sample_metadata` is a pure function of ``(n, seed)``; the shares follow BTXRD
(Yao et al., 2025): classes, tumor subtypes, centers, anatomical sites and views per patient.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bone_tumor_tf.data import schema

__all__ = ["check_count_and_seed", "image_id", "sample_metadata"]

# Image i (0-based) is written as .jpg instead of .jpeg when i % 97 == 20: about 1 % of
# the files, as in BTXRD, and at least one (IMG000021.jpg) in every set of >= 21 images.
_JPG_EVERY = 97
_JPG_OFFSET = 20

# Image-level class shares of BTXRD (1879 normal / 1525 benign / 342 malignant).
_CLASS_FRACTIONS = {"normal": 1879 / 3746, "benign": 1525 / 3746, "malignant": 342 / 3746}
# Image counts per subtype in BTXRD, used as sampling weights within benign / malignant.
_SUBTYPE_WEIGHTS = {
    "osteochondroma": 754, "multiple osteochondromas": 263, "simple bone cyst": 206,
    "giant cell tumor": 93, "osteofibroma": 44, "synovial osteochondroma": 50, "other bt": 115,
    "osteosarcoma": 297, "other mt": 45,
}
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


def check_count_and_seed(n, seed) -> None:
    """Raise ``ValueError`` unless ``n >= 1`` and ``seed >= 0`` are integers."""
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")


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
    check_count_and_seed(n, seed)
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
