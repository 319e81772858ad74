"""Class-per-folder image sets (e.g. MRI ``cancer/`` vs ``normal/``).

Two layouts are read::

    DIR/<class>/*.{jpg,jpeg,png,...}                 # split made by this toolkit
    DIR/{train,val,test}/<class>/*.{jpg,png,...}     # split fixed by the dataset

Class names are the folder names, sorted, except that ``normal`` (if present) comes first,
so that in a two-class set index 1 is the abnormal (positive) class. No patient ids are
known, so every image is its own group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar
from pathlib import Path

from bone_tumor_tf.data.images import DICOM_EXTENSION, is_dicom_file, is_image_file
from bone_tumor_tf.data.records import ImageRecord
from bone_tumor_tf.errors import DataError

SPLIT_NAMES = ("train", "val", "test")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                  "validation": "val", "test": "test", "testing": "test"}


def _is_readable_file(path: Path) -> bool:
    return path.is_file() and (is_image_file(path) or is_dicom_file(path))


def image_files_by_stem(folder: Path) -> dict[str, list[Path]]:
    """Image and DICOM files directly in ``folder`` (by extension), grouped by file stem.

    A stem with two or more files (``IMG1.png`` and ``IMG1.jpeg``) is ambiguous wherever
    files are matched by stem; callers name both in their error.
    """
    index: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and (is_image_file(path) or path.suffix.lower() == DICOM_EXTENSION):
            index.setdefault(path.stem, []).append(path)
    return index


def order_class_names(names) -> tuple[str, ...]:
    """Sorted names with ``normal`` first (so binary index 1 is the abnormal class)."""
    names = sorted(set(names))
    if "normal" in names:
        names.remove("normal")
        names.insert(0, "normal")
    return tuple(names)


@dataclass
class FolderDataset:
    """A class-per-folder image set, read once.

    Attributes:
        root: the dataset folder.
        records: one :class:`ImageRecord` per image, ``split`` set for the split layout.
        class_names: ordered class names (see module docstring).
        annotated: False: no tumor annotations (see ``data.dataset.Dataset``).
    """

    annotated: ClassVar[bool] = False
    root: Path
    records: list[ImageRecord] = field(default_factory=list)
    class_names: tuple[str, ...] = ()

    @classmethod
    def load(cls, root: str | Path) -> FolderDataset:
        root = Path(root).expanduser().resolve()
        if not root.is_dir():
            raise DataError(root, "dataset folder does not exist")
        subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        split_dirs = [p for p in subdirs if p.name.lower() in _SPLIT_ALIASES]
        if split_dirs:
            sources = [(d, _SPLIT_ALIASES[d.name.lower()]) for d in split_dirs]
        else:
            sources = [(root, None)]
        records = []
        for base, split in sources:
            for class_dir in sorted(p for p in base.iterdir() if p.is_dir()):
                for path in sorted(class_dir.rglob("*")):
                    if _is_readable_file(path):
                        image_id = path.relative_to(root).as_posix()
                        records.append(ImageRecord(image_id=image_id, path=path,
                                                   label=class_dir.name, group=image_id,
                                                   split=split))
        if not records:
            raise DataError(root, "no images found in class folders (expected DIR/<class>/*.png"
                                  " or DIR/{train,val,test}/<class>/*.png)")
        class_names = order_class_names(r.label for r in records)
        if len(class_names) < 2:
            raise DataError(root, f"only one class folder ({class_names[0]!r}); need at least 2")
        return cls(root=root, records=records, class_names=class_names)
