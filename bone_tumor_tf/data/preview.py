"""A PNG contact sheet of augmented training images, one row per class.

Lets a user see, before training, what the model will see: the crop mode, the padding and
the augmentation's strength.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bone_tumor_tf.data import load_dataset
from bone_tumor_tf.data.pipeline import (
    build_augmentation,
    prepare_images,
)
from bone_tumor_tf.data.splits import make_splits
from bone_tumor_tf.errors import DataError


def contact_sheet(rows: list[np.ndarray], row_titles: list[str], out_path: str | Path,
                  title: str = "") -> Path:
    """Save images as a grid: ``rows[i]`` is an array (n, S, S) shown as row i."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(1.6 * n_cols, 1.8 * len(rows)),
                             squeeze=False)
    for i, (images, name) in enumerate(zip(rows, row_titles, strict=True)):
        for j in range(n_cols):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(images):
                ax.imshow(images[j], cmap="gray", vmin=0, vmax=255)
        axes[i][0].set_title(name, loc="left", fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=100)
    plt.close(fig)
    return out_path


def preview_dataset(data_dir, out_path, crop_mode: str = "gt-box", image_size: int = 128,
                    per_class: int = 8, augmentation: str = "standard", seed: int = 0) -> Path:
    """Prepare ``per_class`` training images of each class, augment them, save a sheet."""
    dataset = load_dataset(data_dir)
    if crop_mode == "gt-box" and not hasattr(dataset, "sheet"):
        crop_mode = "none"  # class-per-folder sets carry no boxes
    splits = make_splits(dataset.records, seed=seed)
    train = [r for r, s in zip(dataset.records, splits["split"], strict=True) if s == "train"]
    rng = np.random.default_rng(seed)
    chosen = []
    for name in dataset.class_names:
        members = [r for r in train if r.label == name]
        pick = rng.choice(len(members), size=min(per_class, len(members)), replace=False)
        chosen.append([members[i] for i in sorted(pick)])
    flat = [r for group in chosen for r in group]
    prepared = prepare_images(flat, image_size, crop_mode=crop_mode, seed=seed)
    if prepared.failures:
        raise DataError(prepared.failures[0].file, prepared.failures[0].problem)
    augment = build_augmentation(augmentation, seed)
    images = prepared.images[..., None].astype(np.float32)
    if augment is not None:
        images = np.clip(np.asarray(augment(images, training=True)), 0, 255)
    rows, start = [], 0
    for group in chosen:
        rows.append(images[start:start + len(group), ..., 0].astype(np.uint8))
        start += len(group)
    titles = [f"{name} ({len(g)})" for name, g in zip(dataset.class_names, chosen, strict=True)]
    return contact_sheet(rows, titles, out_path,
                         title=f"augmented training images, crop {crop_mode}, {image_size}px")
