"""Train a tumor segmentation U-Net (thin CLI over bone_tumor_tf.training.segmentation).

Example:
    python train_segmentation.py --data /data/BTXRD --arch attention-unet --image-size 256 \
        --base-filters 32 --epochs 60 --include-normals --out runs/attention-unet
    python train_segmentation.py --data demo --out runs/demo-attention-unet
    python train_segmentation.py --data demo --arch unet --out runs/demo-unet \
        --compare runs/demo-attention-unet
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


EXAMPLES = """examples:
  bone-tumor segment --data /data/BTXRD --arch attention-unet --image-size 256 \\
      --base-filters 32 --epochs 60 --include-normals --out runs/attention-unet
  bone-tumor segment --data demo --out runs/demo-attention-unet
  bone-tumor segment --data demo --arch unet --out runs/demo-unet \\
      --compare runs/demo-attention-unet
  python train_segmentation.py --data demo --out runs/demo-attention-unet"""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                    argparse.RawDescriptionHelpFormatter):
    """Option defaults in --help, and the examples kept as written."""


def build_parser() -> argparse.ArgumentParser:
    from bone_tumor_tf.training.segmentation import SegmentationOptions as O

    p = argparse.ArgumentParser(
        description="Train a U-Net or Attention U-Net on the tumor polygons of BTXRD-format "
                    "data (whole image padded to square), evaluate it on the held-out test "
                    "split at the original resolution against an empty prediction, and write "
                    "a run folder (model.keras, config.json, splits.csv, "
                    "history.csv, metrics.json, report.md, overlays).",
        epilog=EXAMPLES,
        formatter_class=HelpFormatter)
    p.add_argument("--data", required=True,
                   help="BTXRD-format dataset folder, a mask-folder set (DIR/images + "
                        "DIR/masks, same file stems, nonzero mask = tumor), or 'demo' for "
                        "the embedded synthetic set")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--arch", choices=("attention-unet", "unet"), default=O.arch)
    p.add_argument("--encoder", choices=("none", "resnet50", "densenet121"), default=O.encoder)
    p.add_argument("--encoder-weights", default=O.encoder_weights,
                   help="none | imagenet (from the local Keras cache) | PATH (with --encoder)")
    p.add_argument("--epochs", type=int, default=O.epochs, help="epochs (at most)")
    p.add_argument("--image-size", type=int, default=O.image_size,
                   help="model input side S (multiple of 2**depth, of 32 with an encoder)")
    p.add_argument("--base-filters", type=int, default=O.base_filters)
    p.add_argument("--depth", type=int, default=O.depth, help="down-sampling levels")
    p.add_argument("--dropout", type=float, default=O.dropout, help="after the bottleneck")
    p.add_argument("--bn-momentum", type=float, default=O.bn_momentum,
                   help="BatchNorm moving-statistics momentum (Keras default 0.99)")
    p.add_argument("--batch-size", type=int, default=O.batch_size)
    p.add_argument("--lr", type=float, default=O.lr, help="Adam learning rate")
    p.add_argument("--alpha", type=float, default=O.alpha,
                   help="loss = alpha * BCE + (1 - alpha) * (1 - soft Dice)")
    p.add_argument("--threshold", type=float, default=O.threshold,
                   help="probability threshold of the predicted mask")
    p.add_argument("--include-normals", action="store_true",
                   help="train and test on normal radiographs too (empty masks)")
    p.add_argument("--augmentation", choices=("standard", "none"), default=O.augmentation,
                   help="standard: joint flip/rotation/zoom of image and mask, contrast and "
                        "brightness of the image")
    p.add_argument("--patience", type=int, default=O.patience, help="EarlyStopping patience")
    p.add_argument("--split-by", choices=("patient", "image", "center"), default=O.split_by)
    p.add_argument("--holdout-center", type=int, default=None)
    p.add_argument("--seed", type=int, default=O.seed)
    p.add_argument("--deterministic", action="store_true",
                   help="enable TensorFlow op determinism (slower)")
    p.add_argument("--on-bad-file", choices=("stop", "skip"), default=O.on_bad_file)
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in --out")
    p.add_argument("--cache-dir", default=None,
                   help="reuse decoded, resized images across runs (folder)")
    p.add_argument("--compare", action="append", default=[], metavar="RUN",
                   help="finished run folder to compare with in OUT/comparison.md "
                        "(e.g. the U-Net run when training the Attention U-Net; repeatable)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from bone_tumor_tf.errors import BoneTumorError
    from bone_tumor_tf.evaluation.reports.segmentation import write_comparison_report
    from bone_tumor_tf.training.segmentation import SegmentationOptions, train_segmentation

    options_dict = vars(args)
    compare = options_dict.pop("compare")
    options = SegmentationOptions(**options_dict)
    try:
        run_dir = train_segmentation(options)
        if compare:
            comparison = write_comparison_report([run_dir, *compare], run_dir / "comparison.md")
            print(f"comparison: {comparison}")
    except BoneTumorError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"run folder: {run_dir}\nreport: {run_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
