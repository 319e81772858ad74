"""Train/val/test splits without patient leakage.

Three kinds:

- ``patient`` (default): stratified by class and grouped by patient, so no patient's
  images sit on two sides (:func:`grouped_stratified_split`).
- ``image``: the naive stratified split of the published baselines (images of one patient
  can land on both sides); kept to reproduce them and to measure the leakage.
- ``center``: one acquiring center is held out as the test set (external validation); the
  others are split into train/val by patient.

Output (``splits.csv``): columns ``image_id, label, group, split``.
"""

from __future__ import annotations

from bone_tumor_tf.io import atomic_write_text

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from bone_tumor_tf.data.records import ImageRecord
from bone_tumor_tf.errors import DataError

SPLIT_KINDS = ("patient", "image", "center")
SPLIT_COLUMNS = ("image_id", "label", "group", "split")


def grouped_stratified_split(labels: Sequence[str], groups: Sequence[str],
                             fractions=(0.70, 0.15, 0.15), seed: int = 0) -> np.ndarray:
    """Split names (``train``/``val``/``test``) per item, stratified and group-disjoint.

    Whole groups are dealt one at a time, largest first (ties in seeded random order), each
    to the split whose share of the group's class lags furthest behind its target
    ``fraction x class size``. Per class, every split ends within one group of its target,
    also for small classes (e.g. 11 malignant images still give val and test their 15 %),
    where fold-based splitters leave a split without the class.
    """
    labels = np.asarray(labels).astype(str)
    groups = np.asarray(groups).astype(str)
    fractions = np.asarray(fractions, float) / np.sum(fractions)
    frame = pd.DataFrame({"label": labels, "group": groups})
    # A group's class is its most frequent label (BTXRD groups share one label).
    group_label = frame.groupby("group")["label"].agg(lambda s: s.value_counts().index[0])
    group_size = frame.groupby("group").size()
    rng = np.random.default_rng(seed)
    order = group_size.index.to_numpy()[rng.permutation(len(group_size))]
    order = sorted(order, key=lambda g: -group_size[g])  # stable: random among equal sizes
    class_total = frame["label"].value_counts()
    taken = {c: np.zeros(3) for c in class_total.index}
    assignment = {}
    for group in order:
        label, size = group_label[group], group_size[group]
        deficit = fractions * class_total[label] - taken[label]
        deficit[fractions == 0] = -np.inf
        # Largest deficit wins; among equal deficits the larger split.
        choice = int(np.lexsort((-fractions, -deficit))[0])
        taken[label][choice] += size
        assignment[group] = ("train", "val", "test")[choice]
    return frame["group"].map(assignment).to_numpy().astype(str)


def image_split(labels: Sequence[str], fractions=(0.70, 0.15, 0.15), seed: int = 0) -> np.ndarray:
    """Naive stratified split by image (ignores patients)."""
    labels = np.asarray(labels)
    index = np.arange(len(labels))
    f_train, f_val, f_test = np.asarray(fractions, float) / np.sum(fractions)
    rest, test = train_test_split(index, test_size=f_test, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=f_val / (f_train + f_val),
                                  stratify=labels[rest], random_state=seed)
    out = np.empty(len(labels), dtype=object)
    out[train], out[val], out[test] = "train", "val", "test"
    return out.astype(str)


def make_splits(records: Sequence[ImageRecord], by: str = "patient",
                fractions=(0.70, 0.15, 0.15), seed: int = 0,
                holdout_center: int | None = None) -> pd.DataFrame:
    """Split a dataset's records; returns a DataFrame with :data:`SPLIT_COLUMNS`.

    Records that carry a fixed ``split`` (folder layout ``train/val/test``) keep it.

    Args:
        records: the dataset's records.
        by: ``patient``, ``image`` or ``center``.
        fractions: train/val/test shares (``center``: train/val shares of the rest).
        seed: the split's random seed; the same seed gives the same split.
        holdout_center: center held out as test with ``by="center"`` (default: the center
            with the fewest images).
    """
    if by not in SPLIT_KINDS:
        raise ValueError(f"unknown split kind {by!r}; expected one of {SPLIT_KINDS}")
    frame = pd.DataFrame({
        "image_id": [r.image_id for r in records],
        "label": [r.label for r in records],
        "group": [r.group for r in records],
    })
    fixed = [r.split for r in records]
    if all(s is not None for s in fixed):
        frame["split"] = fixed
        return frame
    if by == "image":
        frame["split"] = image_split(frame["label"], fractions, seed)
    elif by == "patient":
        frame["split"] = grouped_stratified_split(frame["label"], frame["group"], fractions, seed)
    else:
        centers = pd.Series([r.center for r in records])
        if centers.isna().any():
            raise DataError("splits", "--by center needs a center for every image (BTXRD sheet)")
        if holdout_center is None:
            holdout_center = int(centers.value_counts().idxmin())
        if holdout_center not in set(centers):
            raise DataError("splits", f"center {holdout_center} has no images "
                                      f"(centers: {sorted(set(centers))})")
        test = (centers == holdout_center).to_numpy()
        split = np.full(len(frame), "test", dtype=object)
        rest = frame[~test]
        train_val = (fractions[0], fractions[1], 0.0)
        split[~test] = grouped_stratified_split(rest["label"], rest["group"], train_val, seed)
        frame["split"] = split.astype(str)
    return frame


def save_splits(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``splits.csv`` atomically (temp file, then rename)."""

    return atomic_write_text(path, frame[list(SPLIT_COLUMNS)].to_csv(index=False))


def load_splits(path: str | Path) -> pd.DataFrame:
    """Read a ``splits.csv`` written by :func:`save_splits`."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str)
    except FileNotFoundError:
        raise DataError(path, "missing splits file") from None
    except Exception as error:
        raise DataError(path, f"cannot read splits file ({error})") from None
    missing = [c for c in SPLIT_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(path, f"splits file lacks columns {missing}")
    bad = sorted(set(frame["split"]) - {"train", "val", "test"})
    if bad:
        raise DataError(path, f"unknown split names {bad}")
    return frame


def select_split(records: Sequence[ImageRecord], split: str, splits_csv: str | Path | None,
                 data_dir: str | Path) -> list[ImageRecord]:
    """The records of ``split`` (``train``/``val``/``test``) named in ``splits_csv``;
    every record for ``split="all"``.

    Raises:
        DataError: no splits file for a named split, or no record of that split in the data.
    """
    if split == "all":
        return list(records)
    if splits_csv is None or not Path(splits_csv).is_file():
        raise DataError(splits_csv or data_dir, f"no splits file to select --split {split} "
                                                "(pass --splits CSV or --split all)")
    frame = load_splits(splits_csv)
    wanted = set(frame.loc[frame["split"] == split, "image_id"])
    chosen = [r for r in records if r.image_id in wanted]
    if not chosen:
        raise DataError(splits_csv, f"no image of split {split!r} is in {data_dir}")
    return chosen
