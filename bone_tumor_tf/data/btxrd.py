"""Reader for the BTXRD dataset (Yao et al., Scientific Data 12:88, 2025).

Exact on-disk format read here::

    BTXRD/
      images/IMG000001.jpeg ... IMG003746.jpeg   # 27 of them end in .jpg instead
      Annotations/IMG000001.json ...             # LabelMe, one per tumor image, same stem
      dataset.xlsx                               # or dataset.csv; 37 columns, one row per image

Sheet columns (exact spelling, see :mod:`bone_tumor_tf.data.schema`): ``image_id``
(with extension), ``center`` (1-3), ``age``, ``gender`` (M/F), 15 anatomical-site
indicators, ``tumor``/``benign``/``malignant``, 9 subtype indicators, 3 region indicators
and 3 view indicators (all 0/1).

Labels: ``malignant`` if ``malignant == 1``, else ``benign`` if ``benign == 1``, else
``normal``; the binary task is tumor (benign or malignant) vs normal.

Redistributed copies are read too: an image whose extension differs from its ``image_id``
(``images/IMG000001.png`` for ``IMG000001.jpeg``) is found by its stem (two files of one
stem are an error naming both), and a resized copy that kept the original LabelMe files
has its annotations scaled to the images (rule in :mod:`bone_tumor_tf.data.annotations`).
Each is said once (a log line and a note of ``inspect``), not per image.

Patients: BTXRD has no patient id, but one patient's views sit on consecutive rows.
Consecutive rows (in ``image_id`` order) that agree on center, age, gender, the site
columns and all label and subtype columns are taken as one patient (``group``).
"""

from __future__ import annotations

import difflib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from bone_tumor_tf.data import schema
from bone_tumor_tf.data.annotations import ResizedCopy, mark_resized_annotations
from bone_tumor_tf.data.folders import image_files_by_stem
from bone_tumor_tf.data.records import ImageRecord
from bone_tumor_tf.errors import DataError

logger = logging.getLogger(__name__)

SHEET_NAMES = ("dataset.xlsx", "dataset.csv")
IMAGES_DIR = "images"
ANNOTATIONS_DIR = "Annotations"

#: Columns on which consecutive rows must agree to be one patient.
PATIENT_KEY_COLUMNS = (
    ("center", "age", "gender") + schema.SITE_COLUMNS + schema.LABEL_COLUMNS
    + schema.SUBTYPE_COLUMNS
)


def find_sheet(root: Path) -> Path:
    """``dataset.xlsx`` (preferred) or ``dataset.csv`` under ``root``."""
    for name in SHEET_NAMES:
        if (root / name).is_file():
            return root / name
    raise DataError(root, f"no metadata sheet ({' or '.join(SHEET_NAMES)}) in this folder")


def is_btxrd_folder(root: str | Path) -> bool:
    """True when ``root`` looks like a BTXRD download (an ``images/`` folder and a sheet)."""
    root = Path(root)
    return (root / IMAGES_DIR).is_dir() and any((root / n).is_file() for n in SHEET_NAMES)


def column_problems(columns) -> list[str]:
    """Describe missing, misspelled and unexpected sheet columns (empty when exact)."""
    present = [str(c) for c in columns]
    problems = []
    missing = [c for c in schema.SHEET_COLUMNS if c not in present]
    extra = [c for c in present if c not in schema.SHEET_COLUMNS]
    for name in missing:
        close = difflib.get_close_matches(name, extra, n=1, cutoff=0.6)
        if close:
            problems.append(f"column {close[0]!r} is misspelled: expected {name!r}")
        else:
            problems.append(f"missing column {name!r}")
    return problems


def read_sheet(path: str | Path) -> pd.DataFrame:
    """Read ``dataset.xlsx``/``.csv`` as a DataFrame with the columns as spelled in the file.

    Raises:
        DataError: the file cannot be parsed, or a required column is missing or misspelled
            (the message names them and the closest expected name).
    """
    path = Path(path)
    try:
        if path.suffix.lower() == ".csv":
            sheet = pd.read_csv(path, dtype={"image_id": str})
        else:
            sheet = pd.read_excel(path, engine="openpyxl", dtype={"image_id": str})
    except FileNotFoundError:
        raise DataError(path, "missing metadata sheet") from None
    except Exception as error:  # openpyxl/pandas raise many types for broken files
        raise DataError(path, f"cannot read sheet ({type(error).__name__}: {error})") from None
    sheet.columns = [str(c) for c in sheet.columns]
    problems = column_problems(sheet.columns)
    if problems:
        raise DataError(path, "; ".join(problems))
    sheet["image_id"] = sheet["image_id"].astype(str).str.strip()
    return sheet


def derive_labels(sheet: pd.DataFrame) -> pd.Series:
    """Class name per row: malignant > benign > normal, from the indicator columns."""
    malignant = sheet["malignant"].fillna(0).astype(int) == 1
    benign = sheet["benign"].fillna(0).astype(int) == 1
    labels = np.where(malignant, "malignant", np.where(benign, "benign", "normal"))
    return pd.Series(labels, index=sheet.index, name="label")


def assign_patient_groups(sheet: pd.DataFrame) -> pd.Series:
    """Patient group per row: consecutive rows (``image_id`` order) with equal key columns.

    Returns a Series aligned with ``sheet.index`` holding, for every row, the ``image_id``
    stem of the first row of its run (e.g. ``P-IMG000001``).
    """
    order = sheet.sort_values("image_id", kind="stable").index
    keys = sheet.loc[order, list(PATIENT_KEY_COLUMNS)].astype(str).agg("|".join, axis=1)
    new_patient = keys.ne(keys.shift())
    first_ids = sheet.loc[order, "image_id"].where(new_patient).ffill()
    groups = "P-" + first_ids.map(lambda s: Path(s).stem)
    return groups.reindex(sheet.index)


def find_image_paths(images_dir: Path, image_ids) -> tuple[list[Path], str | None]:
    """Each ``image_id``'s file: ``images_dir / image_id``, else the one file of its stem.

    Returns ``(paths, note)``; ``note`` counts the images found under another extension
    (None when there are none). A missing image keeps its exact path (reported as missing
    when read).

    Raises:
        DataError: an image is missing under its exact name and two files share its stem.
    """
    paths, moved, index = [], Counter(), None
    for image_id in image_ids:
        exact = images_dir / image_id
        if exact.is_file() or not images_dir.is_dir():
            paths.append(exact)
            continue
        if index is None:
            index = image_files_by_stem(images_dir)
        candidates = index.get(Path(image_id).stem, [])
        if len(candidates) > 1:
            raise DataError(candidates[0], f"two images with stem {Path(image_id).stem!r} "
                                           f"({candidates[0].name} and {candidates[1].name}) "
                                           f"for the sheet's {image_id!r}; keep one")
        if candidates:
            moved[(candidates[0].suffix, Path(image_id).suffix)] += 1
        paths.append(candidates[0] if candidates else exact)
    if not moved:
        return paths, None
    pairs = ", ".join(f"{found} for {listed}" for found, listed in sorted(moved))
    return paths, f"{sum(moved.values()):,} images found under another extension ({pairs})"


def view_of(row: pd.Series) -> str | None:
    """The view whose indicator is 1, or None when none or several are."""
    views = [v for v in schema.VIEW_COLUMNS if int(row.get(v, 0) or 0) == 1]
    return views[0] if len(views) == 1 else None


@dataclass
class BTXRDDataset:
    """A BTXRD-format folder, read once.

    Attributes:
        root: the dataset folder.
        sheet: the metadata sheet with two added columns, ``label`` and ``group``.
        records: one :class:`ImageRecord` per sheet row, in sheet order.
        class_names: ``("normal", "benign", "malignant")``.
        notes: what ``inspect`` says about the set as a whole (images found under another
            extension, annotations scaled from their original sizes).
        resized_copy: what the resized-copy check found (see
            :func:`bone_tumor_tf.data.annotations.find_resized_copy`).
        annotated: True: tumor images carry LabelMe annotations (see ``data.dataset.Dataset``).
    """

    annotated: ClassVar[bool] = True
    root: Path
    sheet: pd.DataFrame
    records: list[ImageRecord] = field(default_factory=list)
    class_names: tuple[str, ...] = schema.CLASS_NAMES
    notes: list[str] = field(default_factory=list)
    resized_copy: ResizedCopy | None = None

    @property
    def images_dir(self) -> Path:
        return self.root / IMAGES_DIR

    @property
    def annotations_dir(self) -> Path:
        return self.root / ANNOTATIONS_DIR

    @classmethod
    def load(cls, root: str | Path) -> BTXRDDataset:
        """Read the sheet and build the records.

        Image pixels are not decoded (see ``inspect``); annotated images' headers and their
        annotations are read to recognise a resized copy.
        """
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise DataError(root, "dataset folder does not exist")
        sheet = read_sheet(find_sheet(root))
        sheet["label"] = derive_labels(sheet)
        sheet["group"] = assign_patient_groups(sheet)
        paths, extension_note = find_image_paths(root / IMAGES_DIR, sheet["image_id"])
        records = []
        for path, (_, row) in zip(paths, sheet.iterrows(), strict=True):
            image_id = row["image_id"]
            annotation = root / ANNOTATIONS_DIR / (Path(image_id).stem + ".json")
            try:
                center = int(row["center"])
            except (TypeError, ValueError):
                center = None
            records.append(ImageRecord(
                image_id=image_id,
                path=path,
                label=row["label"],
                group=row["group"],
                annotation=annotation if annotation.is_file() else None,
                center=center,
                view=view_of(row),
            ))
        records, resized_copy = mark_resized_annotations(records)
        notes = [n for n in (extension_note, resized_copy.note()) if n]
        for note in notes:
            logger.warning("%s: %s", root, note)
        return cls(root=root, sheet=sheet, records=records, notes=notes,
                   resized_copy=resized_copy)
