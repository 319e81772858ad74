"""Command line of the data layer.

    python -m bone_tumor_tf.data inspect DIR [--json]
    python -m bone_tumor_tf.data split DIR --out splits.csv [--by patient|image|center]
    python -m bone_tumor_tf.data preview DIR --out sheet.png [--crop gt-box|none]
"""

from __future__ import annotations

import argparse
import json
import sys

from bone_tumor_tf.errors import BoneTumorError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bone_tumor_tf.data",
        description="Inspect, split and preview BTXRD-format or class-per-folder datasets.")
    commands = parser.add_subparsers(dest="command", required=True)

    inspect = commands.add_parser(
        "inspect", help="read everything once and list every problem",
        description="Count images per class/center/view, check every image and annotation, "
                    "and list each problem with its file. Exit 0 when the data is usable "
                    "for training, 1 when a problem would break it.")
    inspect.add_argument("data", help="dataset folder (BTXRD layout or DIR/<class>/...)")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.add_argument("--workers", type=int, default=None, help="decoding threads")

    split = commands.add_parser(
        "split", help="write a train/val/test split without patient leakage",
        description="Write splits.csv (image_id, label, group, split).")
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

    preview = commands.add_parser(
        "preview", help="PNG contact sheet of augmented training images per class",
        description="Prepare the training split and save one augmented batch per class.")
    preview.add_argument("data", help="dataset folder")
    preview.add_argument("--out", required=True, help="output PNG path")
    preview.add_argument("--crop", choices=("gt-box", "none"), default="gt-box")
    preview.add_argument("--image-size", type=int, default=128)
    preview.add_argument("--per-class", type=int, default=8)
    preview.add_argument("--augmentation", choices=("standard", "randaugment", "none"),
                         default="standard")
    preview.add_argument("--seed", type=int, default=0)
    return parser


def run_inspect(args) -> int:
    from bone_tumor_tf.data.inspection import inspect_dataset

    report = inspect_dataset(args.data, workers=args.workers)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format_text())
    return 0 if report.usable else 1


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
    return 0


def run_preview(args) -> int:
    from bone_tumor_tf.data.preview import preview_dataset

    path = preview_dataset(args.data, args.out, crop_mode=args.crop, image_size=args.image_size,
                           per_class=args.per_class, augmentation=args.augmentation,
                           seed=args.seed)
    print(f"wrote {path}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"inspect": run_inspect, "split": run_split, "preview": run_preview}[
            args.command](args)
    except BoneTumorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
