"""What every dataset offers, and the data of one training run.

:class:`Dataset` is the protocol that :class:`~bone_tumor_tf.data.btxrd.BTXRDDataset`,
:class:`~bone_tumor_tf.data.mask_folders.MaskFolderDataset` and
:class:`~bone_tumor_tf.data.folders.FolderDataset` satisfy (``load_dataset`` returns one of
them). :func:`load_run_data` reads a dataset for a training run: it validates the files,
splits the records (or re-uses the run's ``splits.csv`` when the run resumes) and prepares
the images; :func:`split_arrays` cuts the prepared images into the three splits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from bone_tumor_tf.data import load_dataset
from bone_tumor_tf.data.btxrd import BTXRDDataset
from bone_tumor_tf.data.inspection import sheet_problems
from bone_tumor_tf.data.prepare import PreparedImages, encode_labels, prepare_images
from bone_tumor_tf.data.records import ImageRecord
from bone_tumor_tf.data.splits import load_splits, make_splits, save_splits
from bone_tumor_tf.data.synthetic import generate_btxrd, generate_folders
from bone_tumor_tf.errors import DataError
from bone_tumor_tf.io import atomic_write_text

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")
BAD_FILES = "bad_files.txt"
#: Where ``data="demo"`` generates the embedded synthetic sets (one folder per kind).
DEMO_DATA_DIR = Path("runs") / "demo-data"


@runtime_checkable
class Dataset(Protocol):
    """A dataset read once: its folder, its images and its classes.

    Attributes:
        root: the dataset folder.
        records: one :class:`ImageRecord` per image.
        class_names: the classes in label-index order.
        annotated: whether records can carry tumor annotations (LabelMe shapes in
            ``record.annotation``, or masks in ``record.mask``): what crop mode ``gt-box``
            and segmentation need. BTXRD and mask-folder sets are, class-per-folder sets
            are not.
    """

    annotated: ClassVar[bool]
    root: Path
    records: list[ImageRecord]
    class_names: tuple[str, ...]


@dataclass
class SplitArrays:
    """Prepared images and integer targets of one split.

    Attributes:
        images: ``uint8`` ``(N, S, S)`` in [0, 255].
        targets: ``int32`` ``(N,)``, index into the task's class names.
        records: per image, its record.
    """

    images: np.ndarray
    targets: np.ndarray
    records: list

    def __len__(self) -> int:
        return len(self.targets)


def resolve_data_dir(data: str, kind: str = "btxrd", seed: int = 0) -> tuple[Path, bool]:
    """The dataset folder of ``data``; returns ``(path, is_synthetic)``.

    ``"demo"`` is the embedded synthetic set of ``kind`` (``"btxrd"`` or ``"folders"``),
    generated under :data:`DEMO_DATA_DIR` on first use; any other value is a folder, synthetic
    when it holds the generator's ``SYNTHETIC.txt``.
    """
    if data == "demo":
        root = DEMO_DATA_DIR / kind
        if not (root / "SYNTHETIC.txt").is_file():
            if kind == "btxrd":
                generate_btxrd(root, n=400, seed=seed, min_side=192, max_side=384)
            else:
                generate_folders(root, n=240, seed=seed)
        return root, True
    path = Path(data).expanduser()
    return path, (path / "SYNTHETIC.txt").is_file()


def write_bad_files(run_dir: Path, failures) -> Path:
    """``RUN/bad_files.txt``: one ``file: problem`` line per bad file."""
    return atomic_write_text(Path(run_dir) / BAD_FILES, "".join(f"{f}\n" for f in failures))


def load_run_data(options, run_dir: Path, resuming: bool, with_masks: bool = False,
                  records_filter: Callable[[ImageRecord], bool] | None = None):
    """Dataset, validated split and prepared images of a training run.

    Args:
        options: the run's options (a :class:`~bone_tumor_tf.training.options.TrainingOptions`:
            ``data``, ``seed``, ``crop``, ``split_by``, ``holdout_center``, ``image_size``,
            ``cache_dir``, ``on_bad_file``).
        run_dir: the run folder; ``splits.csv`` and ``bad_files.txt`` are written there.
        resuming: re-use the run's ``splits.csv`` when there is one.
        with_masks: also rasterise the tumor masks (segmentation).
        records_filter: keep only the records it accepts (after splitting the whole
            dataset, so the split of an image does not depend on the filter).

    Returns:
        ``(dataset, splits DataFrame, PreparedImages, data_dir, synthetic)``; the splits
        rows are in the order of the prepared records.

    Raises:
        DataError: crop mode ``gt-box`` on a class-per-folder set; bad files (every one
            listed in ``bad_files.txt``) unless ``options.on_bad_file == "skip"``.
    """
    data_dir, synthetic = resolve_data_dir(options.data, seed=options.seed)
    dataset = load_dataset(data_dir)
    if options.crop == "gt-box" and not dataset.annotated:
        raise DataError(data_dir, "crop mode gt-box needs BTXRD annotations; this is a "
                                  "class-per-folder set: use --crop none")
    records = list(dataset.records)
    problems = []
    if isinstance(dataset, BTXRDDataset):
        problems = [p for p in sheet_problems(dataset) if p.severity == "error"]
    splits_path = run_dir / "splits.csv"
    if resuming and splits_path.is_file():
        splits = load_splits(splits_path)
        known = {r.image_id: r for r in records}
        records = [known[i] for i in splits["image_id"] if i in known]
    else:
        # Split the whole dataset, then filter: every run with the same seed and split kind
        # puts an image on the same side, whatever subset it trains on (a U-Net on tumor
        # images and a classifier on all images share their test images, so the diagnosis
        # chain is tested on images none of its models saw).
        splits = make_splits(records, by=options.split_by, seed=options.seed,
                             holdout_center=options.holdout_center)
    if records_filter is not None:
        records = [r for r in records if records_filter(r)]
        kept = {r.image_id for r in records}
        splits = splits[splits["image_id"].isin(kept)].reset_index(drop=True)
    prepared = prepare_images(records, options.image_size, crop_mode=options.crop,
                              seed=options.seed, with_masks=with_masks,
                              cache_dir=options.cache_dir, progress=True)
    failures = [f"{p.file}: {p.problem}" for p in problems] + [str(e) for e in prepared.failures]
    if failures:
        write_bad_files(run_dir, failures)
        if options.on_bad_file != "skip":
            raise DataError(failures[0].split(": ")[0],
                            f"{failures[0].split(': ', 1)[1]} (and {len(failures) - 1} more "
                            f"problems; all listed in {run_dir / BAD_FILES}; "
                            "--on-bad-file skip trains without them)")
        prepared, splits = _without_bad_files(prepared, splits, failures)
    splits = splits.set_index("image_id").loc[[r.image_id for r in prepared.records]]
    splits = splits.reset_index()
    if not (resuming and splits_path.is_file()):
        save_splits(splits, splits_path)
    return dataset, splits, prepared, data_dir, synthetic


def _without_bad_files(prepared: PreparedImages, splits, failures: list[str]):
    """``prepared`` and ``splits`` without the files named in ``failures``."""
    bad = {f.split(": ")[0] for f in failures}
    keep = np.array([str(r.path) not in bad and not any(r.image_id in b for b in bad)
                     for r in prepared.records])
    keep &= prepared.ok()
    prepared = prepared.subset(keep)
    splits = splits[splits["image_id"].isin({r.image_id for r in prepared.records})]
    logger.warning("skipping %d bad files (listed in %s)", int((~keep).sum()), BAD_FILES)
    return prepared, splits


def split_arrays(prepared: PreparedImages, splits, class_names, task: str
                 ) -> dict[str, SplitArrays]:
    """Per split (``train``, ``val``, ``test``): images, integer targets of ``task`` and
    records. ``splits`` rows follow ``prepared.records`` (as :func:`load_run_data` returns)."""
    targets = encode_labels([r.label for r in prepared.records], class_names, task)
    out = {}
    for name in SPLIT_NAMES:
        index = np.flatnonzero(splits["split"].to_numpy() == name)
        out[name] = SplitArrays(prepared.images[index], targets[index],
                                [prepared.records[i] for i in index])
    return out
