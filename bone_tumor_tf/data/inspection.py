"""Find every problem in a dataset before training starts.

:func:`inspect_dataset` reads everything once (sheet, every image, every annotation) and
returns an :class:`InspectionReport`: counts per class, center and view, annotation
coverage, notes about the set as a whole (a resized copy, images under another extension,
unknown patients), and a list of problems, each naming its file. A problem is an ``error``
when it would break training (the CLI then exits 1) and a ``warning`` otherwise.

Layouts, recognised as :func:`bone_tumor_tf.data.load_dataset` does: BTXRD (``images/`` and
a sheet), mask-folder sets (``images/`` and ``masks/``, no sheet; kind ``masks``) and
class-per-folder sets.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bone_tumor_tf.data import schema
from bone_tumor_tf.data.btxrd import (
    ANNOTATIONS_DIR,
    IMAGES_DIR,
    BTXRDDataset,
    find_sheet,
    is_btxrd_folder,
)
from bone_tumor_tf.data.annotations import read_record_annotation
from bone_tumor_tf.data.folders import FolderDataset
from bone_tumor_tf.data.images import is_image_file, read_image
from bone_tumor_tf.data.mask_folders import MaskFolderDataset, is_mask_folder
from bone_tumor_tf.data.prepare import default_workers
from bone_tumor_tf.data.records import ImageRecord
from bone_tumor_tf.errors import DataError

ERROR, WARNING = "error", "warning"


@dataclass
class Problem:
    file: str
    problem: str
    severity: str = ERROR

    def to_dict(self) -> dict:
        return {"file": self.file, "problem": self.problem, "severity": self.severity}


@dataclass
class InspectionReport:
    """What :func:`inspect_dataset` found. ``to_dict()`` is the ``--json`` output."""

    root: str
    kind: str
    images: int = 0
    classes: dict = field(default_factory=dict)
    centers: dict = field(default_factory=dict)
    views: dict = field(default_factory=dict)
    annotated: int = 0
    notes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """True when no problem would break training."""
        return not any(p.severity == ERROR for p in self.problems)

    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    def to_dict(self) -> dict:
        return {
            "root": self.root, "kind": self.kind, "images": self.images,
            "classes": self.classes, "centers": self.centers, "views": self.views,
            "annotated": self.annotated, "notes": list(self.notes), "usable": self.usable,
            "problems": [p.to_dict() for p in self.problems],
        }

    def format_text(self) -> str:
        lines = [f"dataset: {self.root} ({self.kind})", f"images: {self.images}",
                 "classes: " + ", ".join(f"{k} {v}" for k, v in self.classes.items())]
        if self.centers:
            lines.append("centers: " + ", ".join(f"{k}: {v}" for k, v in self.centers.items()))
        if self.views:
            lines.append("views: " + ", ".join(f"{k} {v}" for k, v in self.views.items()))
        if self.kind == "btxrd":
            tumors = self.classes.get("benign", 0) + self.classes.get("malignant", 0)
            lines.append(f"annotated: {self.annotated} of {tumors} tumor images")
        if self.kind == "masks":
            lines.append(f"masks: {self.annotated} of {self.images} read")
        lines += [f"note: {note}" for note in self.notes]
        n_errors = len(self.errors())
        lines.append(f"problems: {n_errors} errors, {len(self.problems) - n_errors} warnings")
        lines += [f"  [{p.severity}] {p.file}: {p.problem}" for p in self.problems]
        lines.append("usable for training: " + ("yes" if self.usable else "NO"))
        return "\n".join(lines)


def sheet_problems(dataset: BTXRDDataset) -> list[Problem]:
    """Problems visible in the BTXRD sheet alone (no file is opened)."""
    sheet, problems = dataset.sheet, []
    sheet_file = find_sheet(dataset.root).name

    def where(row) -> str:
        return f"{sheet_file}: {row['image_id']}"

    duplicated = sheet["image_id"][sheet["image_id"].duplicated()].unique()
    for image_id in duplicated:
        problems.append(Problem(f"{sheet_file}: {image_id}", "duplicate image_id"))
    for _, row in sheet.iterrows():
        def flag(column, row=row) -> int:
            try:
                return int(row[column])
            except (TypeError, ValueError):
                return -1

        bad_flags = [c for c in schema.SHEET_COLUMNS[4:] if flag(c) not in (0, 1)]
        if bad_flags:
            problems.append(Problem(where(row), f"non-0/1 values in {', '.join(bad_flags)}"))
        tumor, benign, malignant = flag("tumor"), flag("benign"), flag("malignant")
        if benign == 1 and malignant == 1:
            problems.append(Problem(where(row), "contradictory labels: benign and malignant "
                                                "are both 1"))
        elif tumor == 1 and benign != 1 and malignant != 1:
            problems.append(Problem(where(row), "contradictory labels: tumor=1 but neither "
                                                "benign nor malignant"))
        elif tumor == 0 and (benign == 1 or malignant == 1):
            problems.append(Problem(where(row), "contradictory labels: tumor=0 but benign or "
                                                "malignant is 1"))
        if flag("center") not in schema.CENTERS:
            problems.append(Problem(where(row), f"center {row['center']!r} is not one of 1, 2, 3"))
        if str(row["gender"]).strip() not in schema.GENDERS:
            problems.append(Problem(where(row), f"gender {row['gender']!r} is not M or F",
                                    WARNING))
        try:
            age_ok = float(row["age"]) >= 0
        except (TypeError, ValueError):
            age_ok = False
        if not age_ok:
            problems.append(Problem(where(row), f"age {row['age']!r} is not a number >= 0",
                                    WARNING))
        n_views = sum(flag(c) == 1 for c in schema.VIEW_COLUMNS)
        if n_views != 1:
            problems.append(Problem(where(row), f"{n_views} view columns are 1 (expected "
                                                "exactly one)", WARNING))
        n_subtypes = sum(flag(c) == 1 for c in schema.SUBTYPE_COLUMNS)
        if tumor == 1 and n_subtypes != 1:
            problems.append(Problem(where(row), f"tumor row has {n_subtypes} subtype columns "
                                                "set (expected one)", WARNING))
        if tumor == 0 and n_subtypes:
            problems.append(Problem(where(row), "normal row has a tumor subtype set"))
    return problems


def _check_record(record: ImageRecord, is_tumor: bool, resized_rule: str | None = None
                  ) -> tuple[int, list[Problem]]:
    """Decode the image and its annotation or mask; returns (has valid one, problems).

    ``resized_rule``: the rule of a resized copy, named in the error of an annotation that
    disagrees with its image unlike the rest of the copy.
    """
    problems = []
    try:
        read_image(record.path)
    except DataError as error:
        return 0, [Problem(error.file, error.problem)]
    if record.annotation is None and record.mask is None:
        if is_tumor:
            problems.append(Problem(str(record.path), "tumor image has no annotation in "
                                                      f"{ANNOTATIONS_DIR}/"))
        return 0, problems
    try:
        annotation = read_record_annotation(record)
    except DataError as error:
        problem = error.problem
        if resized_rule and "disagrees with the image" in problem:
            problem += f", unlike the rest of this resized copy ({resized_rule})"
        return 0, [Problem(error.file, problem)]
    problems += [Problem(str(annotation.path), w, WARNING) for w in annotation.warnings]
    if record.annotation is not None and not is_tumor:
        problems.append(Problem(str(record.annotation), "annotation for an image labelled "
                                                        "normal", WARNING))
    return 1, problems


def inspect_dataset(root: str | Path, workers: int | None = None) -> InspectionReport:
    """Inspect a BTXRD-format folder or a class-per-folder image set."""
    root = Path(root).expanduser().resolve()
    if is_btxrd_folder(root):
        return _inspect_btxrd(root, workers)
    if is_mask_folder(root):
        return _inspect_mask_folders(root, workers)
    if (root / IMAGES_DIR).is_dir() or (root / ANNOTATIONS_DIR).is_dir():
        report = InspectionReport(str(root), "btxrd")
        try:
            find_sheet(root)
        except DataError as error:
            report.problems.append(Problem(error.file, error.problem))
        return report
    return _inspect_folders(root, workers)


def _inspect_btxrd(root: Path, workers) -> InspectionReport:
    report = InspectionReport(str(root), "btxrd")
    try:
        dataset = BTXRDDataset.load(root)
    except DataError as error:
        report.problems.append(Problem(error.file, error.problem))
        return report
    records = dataset.records
    report.images = len(records)
    report.classes = {name: 0 for name in schema.CLASS_NAMES}
    report.classes.update(Counter(r.label for r in records))
    report.centers = {str(k): v for k, v in sorted(Counter(r.center for r in records).items(),
                                                   key=lambda kv: str(kv[0]))}
    report.views = dict(Counter(r.view or "unknown" for r in records))
    report.notes = list(dataset.notes)
    report.problems += sheet_problems(dataset)
    rule = dataset.resized_copy.rule if dataset.resized_copy else None
    rule_text = rule.describe() if rule else None
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        results = list(pool.map(lambda r: _check_record(r, r.label != "normal", rule_text),
                                records))
    for annotated, problems in results:
        report.annotated += annotated
        report.problems += problems
    listed_stems = {Path(r.image_id).stem for r in records}
    listed_names = {r.path.name for r in records}  # found under another extension, too
    if dataset.annotations_dir.is_dir():
        for path in sorted(dataset.annotations_dir.glob("*.json")):
            if path.stem not in listed_stems:
                report.problems.append(Problem(str(path), "annotation without a sheet row",
                                               WARNING))
    for path in sorted(dataset.images_dir.iterdir()):
        if path.is_file() and is_image_file(path) and path.name not in listed_names:
            report.problems.append(Problem(str(path), "image without a sheet row", WARNING))
    return report


def _load_and_check(report: InspectionReport, load, workers):
    """Load a folder-style dataset into ``report`` and check every record's files.

    Returns ``(dataset, [(has_annotation, problems)] per record)``, or ``(None, [])`` when
    the dataset itself cannot be read (the problem is in ``report``).
    """
    try:
        dataset = load()
    except DataError as error:
        report.problems.append(Problem(error.file, error.problem))
        return None, []
    report.images = len(dataset.records)
    report.classes = {name: 0 for name in dataset.class_names}
    report.classes.update(Counter(r.label for r in dataset.records))
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        results = list(pool.map(lambda r: _check_record(r, False), dataset.records))
    return dataset, results


def _inspect_folders(root: Path, workers) -> InspectionReport:
    report = InspectionReport(str(root), "folders")
    _, results = _load_and_check(report, lambda: FolderDataset.load(root), workers)
    for _, problems in results:
        report.problems += problems
    return report


def _inspect_mask_folders(root: Path, workers) -> InspectionReport:
    report = InspectionReport(str(root), "masks")
    dataset, results = _load_and_check(
        report, lambda: MaskFolderDataset.load(root, workers=workers), workers)
    if dataset is None:
        return report
    report.notes = list(dataset.notes)
    for has_mask, problems in results:
        report.annotated += has_mask
        report.problems += problems
    report.problems += [Problem(str(p), "image without a mask (left out)", WARNING)
                        for p in dataset.images_without_mask]
    report.problems += [Problem(str(p), "mask without an image", WARNING)
                        for p in dataset.masks_without_image]
    return report
