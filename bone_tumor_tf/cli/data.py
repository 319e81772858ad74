"""``bone-tumor data inspect | split | preview | synthetic``: the data layer's commands."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from bone_tumor_tf.cli._runner import EXIT_NO, EXIT_OK, run_command
from bone_tumor_tf.errors import BoneTumorError

EXAMPLES = """examples:
  bone-tumor data inspect /data/BTXRD            # exit 0 usable, 1 not usable
  bone-tumor data inspect /data/BTXRD --json
  bone-tumor data split /data/BTXRD --out splits.csv --by patient --seed 0
  bone-tumor data split /data/BTXRD --out splits.csv --by center --holdout-center 3
  bone-tumor data preview /data/BTXRD --out batch.png --crop gt-box
  bone-tumor data synthetic --out data/synthetic --n 400 --seed 0   # BTXRD format
  bone-tumor data synthetic --out data/mri --kind folders --n 200   # cancer/ normal/"""


def _subcommand(commands, name: str, help: str, description: str):
    """A sub-command parser whose --help ends with the examples of that sub-command."""
    return commands.add_parser(
        name, help=help, description=description,
        epilog="examples:\n" + "\n".join(line for line in EXAMPLES.splitlines()
                                         if line.startswith(f"  bone-tumor data {name} ")),
        formatter_class=argparse.RawDescriptionHelpFormatter)


def build_parser(prog: str = "bone-tumor data") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Inspect, split and preview BTXRD-format or class-per-folder datasets, "
                    "or write a synthetic one.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="<subcommand>")

    inspect = _subcommand(
        commands, "inspect", "read everything once and list every problem",
        "Count images per class/center/view, check every image and annotation, and list "
        "each problem with its file. Exit 0 when the data is usable for training, 1 when a "
        "problem would break it.")
    inspect.add_argument("data", help="dataset folder (BTXRD layout or DIR/<class>/...)")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.add_argument("--workers", type=int, default=None, help="decoding threads")
    inspect.set_defaults(run=run_inspect)

    split = _subcommand(
        commands, "split", "write a train/val/test split without patient leakage",
        "Write splits.csv (image_id, label, group, split).")
    split.add_argument("data", help="dataset folder")
    split.add_argument("--out", required=True, help="output CSV path")
    split.add_argument("--by", choices=("patient", "image", "center"), default="patient",
                       help="patient: stratified, no patient on two sides (default); image: "
                            "naive per-image split; center: hold out one center as test")
    split.add_argument("--holdout-center", type=int, default=None,
                       help="center held out with --by center (default: the smallest)")
    split.add_argument("--fractions", type=float, nargs=3, default=(0.70, 0.15, 0.15),
                       metavar=("TRAIN", "VAL", "TEST"), help="default 0.70 0.15 0.15")
    split.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    split.set_defaults(run=run_split)

    preview = _subcommand(
        commands, "preview", "PNG contact sheet of augmented training images per class",
        "Prepare the training split and save one augmented batch per class.")
    preview.add_argument("data", help="dataset folder")
    preview.add_argument("--out", required=True, help="output PNG path")
    preview.add_argument("--crop", choices=("gt-box", "none"), default="gt-box")
    preview.add_argument("--image-size", type=int, default=128)
    preview.add_argument("--per-class", type=int, default=8)
    preview.add_argument("--augmentation", choices=("standard", "randaugment", "none"),
                         default="standard")
    preview.add_argument("--seed", type=int, default=0)
    preview.set_defaults(run=run_preview)

    synthetic = _subcommand(
        commands, "synthetic", "write a SYNTHETIC dataset (no real patients)",
        "Write a SYNTHETIC radiograph dataset (no real patients) for demos and tests. "
        "--kind btxrd: the BTXRD layout (images/, Annotations/ LabelMe JSON, dataset.xlsx "
        "with the 37 BTXRD columns). --kind folders: one sub-folder of PNG/JPG images per "
        "class. Both write a SYNTHETIC.txt marker with the seed.")
    synthetic.add_argument("--out", required=True, type=Path,
                           help="output directory (new, empty, or an earlier synthetic one)")
    synthetic.add_argument("--kind", choices=("btxrd", "folders"), default="btxrd",
                           help="dataset layout (default: btxrd)")
    synthetic.add_argument("--n", type=int, default=None,
                           help="number of images (default: 120 for btxrd, 80 for folders)")
    synthetic.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    synthetic.add_argument("--min-side", type=int, default=None,
                           help="smallest image side in px (default: 320 btxrd, 192 folders)")
    synthetic.add_argument("--max-side", type=int, default=None,
                           help="largest image side in px (default: 640 btxrd, 320 folders)")
    synthetic.add_argument("--classes", default="normal,cancer",
                           help="folders only: comma-separated class folder names, the first "
                                "without lesions (default: normal,cancer)")
    synthetic.set_defaults(run=run_synthetic)
    return parser


# Library imports inside the commands are lazy: OpenCV and pandas take a second to load,
# and --help or a mistyped option should not wait for them.


def run_inspect(args) -> int:
    from bone_tumor_tf.data.inspection import inspect_dataset

    report = inspect_dataset(args.data, workers=args.workers)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format_text())
    return EXIT_OK if report.usable else EXIT_NO


def run_split(args) -> int:
    from bone_tumor_tf.data import load_dataset
    from bone_tumor_tf.data.splits import make_splits, save_splits

    dataset = load_dataset(args.data)
    frame = make_splits(dataset.records, by=args.by, fractions=tuple(args.fractions),
                        seed=args.seed, holdout_center=args.holdout_center)
    path = save_splits(frame, args.out)
    counts = frame.groupby(["split", "label"]).size().unstack(fill_value=0)
    print(counts.to_string())
    print(f"wrote {path} ({len(frame)} images, {frame['group'].nunique()} groups, by {args.by})")
    return EXIT_OK


def run_preview(args) -> int:
    from bone_tumor_tf.data.preview import preview_dataset

    path = preview_dataset(args.data, args.out, crop_mode=args.crop, image_size=args.image_size,
                           per_class=args.per_class, augmentation=args.augmentation,
                           seed=args.seed)
    print(f"wrote {path}")
    return EXIT_OK


def run_synthetic(args) -> int:
    import pandas as pd

    from bone_tumor_tf.data.synthetic import SHEET_FILE_NAME, generate_btxrd, generate_folders

    try:
        if args.kind == "btxrd":
            n = 120 if args.n is None else args.n
            out_dir = generate_btxrd(
                args.out, n=n, seed=args.seed,
                min_side=320 if args.min_side is None else args.min_side,
                max_side=640 if args.max_side is None else args.max_side)
            sheet = pd.read_excel(out_dir / SHEET_FILE_NAME, engine="openpyxl")
            counts = (f"normal={int((sheet['tumor'] == 0).sum())} "
                      f"benign={int(sheet['benign'].sum())} "
                      f"malignant={int(sheet['malignant'].sum())}")
        else:
            n = 80 if args.n is None else args.n
            classes = tuple(name.strip() for name in args.classes.split(",") if name.strip())
            out_dir = generate_folders(
                args.out, n=n, seed=args.seed, classes=classes,
                size=(192 if args.min_side is None else args.min_side,
                      320 if args.max_side is None else args.max_side))
            counts = " ".join(
                f"{name}={sum(1 for f in (out_dir / name).iterdir() if f.is_file())}"
                for name in classes)
    except ValueError as error:  # the generators' argument checks (sizes, counts, classes)
        raise BoneTumorError(str(error)) from None
    print(f"wrote {n} synthetic {args.kind} images to {out_dir} (seed {args.seed}): {counts}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``bone-tumor data <subcommand> ...``; the exit status (see ``bone-tumor --help``)."""
    return run_command(build_parser(), lambda args: args.run(args), argv)
