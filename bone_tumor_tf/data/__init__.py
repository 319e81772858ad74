"""Data layer: read BTXRD and class-per-folder sets, inspect, split, build ``tf.data``.

Entry point: :func:`load_dataset` returns a :class:`BTXRDDataset` or a
:class:`FolderDataset`, both with ``records`` and ``class_names``.
"""

from __future__ import annotations

from pathlib import Path

from bone_tumor_tf.data.btxrd import BTXRDDataset, is_btxrd_folder
from bone_tumor_tf.data.folders import FolderDataset
from bone_tumor_tf.data.records import ImageRecord


def load_dataset(root: str | Path) -> BTXRDDataset | FolderDataset:
    """Read a BTXRD-format folder (has ``images/`` and a sheet) or a class-per-folder set."""
    if is_btxrd_folder(root):
        return BTXRDDataset.load(root)
    return FolderDataset.load(root)


__all__ = ["BTXRDDataset", "FolderDataset", "ImageRecord", "load_dataset"]
