"""Data layer: read BTXRD, mask-folder and class-per-folder sets, inspect, split, build ``tf.data``.

Entry point: :func:`load_dataset` returns a :class:`BTXRDDataset`, a
:class:`MaskFolderDataset` or a :class:`FolderDataset`, each satisfying
:class:`bone_tumor_tf.data.dataset.Dataset` (``records``, ``class_names``, ``annotated``).
"""

from __future__ import annotations

from pathlib import Path

from bone_tumor_tf.data.btxrd import BTXRDDataset, is_btxrd_folder
from bone_tumor_tf.data.folders import FolderDataset
from bone_tumor_tf.data.mask_folders import MaskFolderDataset, is_mask_folder
from bone_tumor_tf.data.records import ImageRecord


def load_dataset(root: str | Path) -> BTXRDDataset | MaskFolderDataset | FolderDataset:
    """Read a dataset folder, recognising its layout in this order:

    1. BTXRD: ``images/`` and a sheet (``dataset.xlsx``/``.csv``), even when a ``masks/``
       folder is present too (the sheet carries labels, patients and centers);
    2. mask-folder set: ``images/`` and ``masks/`` without a sheet;
    3. class-per-folder set: ``DIR/<class>/...`` or ``DIR/{train,val,test}/<class>/...``.
    """
    if is_btxrd_folder(root):
        return BTXRDDataset.load(root)
    if is_mask_folder(root):
        return MaskFolderDataset.load(root)
    return FolderDataset.load(root)


__all__ = ["BTXRDDataset", "FolderDataset", "ImageRecord", "MaskFolderDataset", "load_dataset"]
