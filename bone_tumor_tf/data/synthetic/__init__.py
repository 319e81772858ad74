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

Modules: :mod:`.sampling` (the sheet: patients, views, labels, sites), :mod:`.rendering`
(the images and lesion outlines), :mod:`.writing` (files, LabelMe JSON, sheet, marker).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from bone_tumor_tf.data.synthetic.rendering import render_radiograph
from bone_tumor_tf.data.synthetic.sampling import image_id, sample_metadata
from bone_tumor_tf.data.synthetic.writing import (
    MARKER_FILE_NAME,
    SHEET_FILE_NAME,
    generate_btxrd,
    generate_folders,
    is_synthetic_dataset,
)
from bone_tumor_tf.errors import BoneTumorError

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
