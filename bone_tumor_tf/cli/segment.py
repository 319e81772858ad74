"""``bone-tumor segment`` (and ``train_segmentation.py``): train, evaluate and report a U-Net.

Argument parsing and one call into :func:`bone_tumor_tf.training.segmentation.train_segmentation`
(then, with ``--compare``, the comparison table of the runs).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bone_tumor_tf.cli._runner import EXIT_OK, run_command
from bone_tumor_tf.cli.training_args import HelpFormatter, add_training_arguments, training_fields
from bone_tumor_tf.training.options import DICE_ON, ENCODERS, SegmentationOptions

EXAMPLES = """examples:
  bone-tumor segment --data /data/BTXRD --arch attention-unet --image-size 256 \\
      --base-filters 32 --epochs 60 --include-normals --out runs/attention-unet
  bone-tumor segment --data demo --out runs/demo-attention-unet
  bone-tumor segment --data demo --arch unet --out runs/demo-unet \\
      --compare runs/demo-attention-unet
  python train_segmentation.py --data demo --out runs/demo-attention-unet"""


def build_parser(prog: str = "bone-tumor segment") -> argparse.ArgumentParser:
    defaults = SegmentationOptions
    p = argparse.ArgumentParser(
        prog=prog,
        description="Train a U-Net or Attention U-Net on the tumor polygons of BTXRD-format "
                    "data (whole image padded to square), evaluate it on the held-out test "
                    "split at the original resolution against an empty prediction, and write "
                    "a run folder (model.keras, config.json, splits.csv, "
                    "history.csv, metrics.json, report.md, overlays).",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    groups = add_training_arguments(
        p, SegmentationOptions,
        data_help="BTXRD-format dataset folder, a mask-folder set (DIR/images + DIR/masks, "
                  "same file stems, nonzero mask = tumor), or 'demo' for the embedded "
                  "synthetic set",
        epochs_help="epochs (at most)",
        image_size_help="model input side S (multiple of 2**depth, of 32 with an encoder)",
        dropout_help="after the bottleneck", lr_help="Adam learning rate",
        augmentation_help="standard: joint flip/rotation/zoom of image and mask, contrast and "
                          "brightness of the image")
    data, model, training = groups["data"], groups["model"], groups["training"]
    data.add_argument("--include-normals", action="store_true",
                      help="train and test on normal radiographs too (empty masks)")
    model.add_argument("--encoder", choices=ENCODERS, default=defaults.encoder)
    model.add_argument("--encoder-weights", default=defaults.encoder_weights,
                       help="none | imagenet (from the local Keras cache) | PATH (with --encoder)")
    model.add_argument("--init-from", default=None, metavar="RUN",
                       help="start from the weights of an earlier segmentation run (its folder "
                            "or model.keras; same --arch, --encoder, --base-filters and "
                            "--depth; the input size may differ): fine-tuning, e.g. a "
                            "tumor-only U-Net trained on with --include-normals, or a 128-px "
                            "U-Net at 256 px")
    model.add_argument("--base-filters", type=int, default=defaults.base_filters)
    model.add_argument("--depth", type=int, default=defaults.depth, help="down-sampling levels")
    model.add_argument("--bn-momentum", type=float, default=defaults.bn_momentum,
                       help="BatchNorm moving-statistics momentum (Keras default 0.99)")
    model.add_argument("--threshold", type=float, default=defaults.threshold,
                       help="probability threshold of the predicted mask during training; "
                            "the saved model's threshold unless --choose-threshold")
    model.add_argument("--choose-threshold", action=argparse.BooleanOptionalAction,
                       default=defaults.choose_threshold,
                       help="after training, set the mask threshold (0.1 ... 0.9) with the best "
                            "mean per-image Dice on the validation split (normal images count "
                            "1 when left empty, else 0)")
    model.add_argument("--max-normal-marked", type=float, default=defaults.max_normal_marked,
                       metavar="SHARE",
                       help="with --include-normals: choose the threshold (0.1 ... 0.99) with "
                            "the best tumor Dice among those that give at most this share of "
                            "the normal validation images a tumor mask (a false-alarm budget, "
                            "e.g. 0.15)")
    training.add_argument("--alpha", type=float, default=defaults.alpha,
                          help="loss = alpha * BCE + (1 - alpha) * (1 - soft Dice)")
    training.add_argument("--dice-on", choices=DICE_ON, default=defaults.dice_on,
                          help="images whose soft Dice enters the loss: all, or tumor (images "
                               "with a non-empty mask; normal images then train through BCE "
                               "only), for --include-normals: with Dice on all images the "
                               "loss rewards an empty mask (on real BTXRD, from random weights "
                               "neither choice gave a usable U-Net with normals; a tumor-only "
                               "U-Net trained on with them (--init-from) did; see "
                               "docs/real-data-decisions.md)")
    comparison = p.add_argument_group("comparison")
    comparison.add_argument("--compare", action="append", default=[], metavar="RUN",
                            help="finished run folder to compare with in OUT/comparison.md "
                                 "(e.g. the U-Net run when training the Attention U-Net; "
                                 "repeatable)")
    return p


def options_from_args(args: argparse.Namespace) -> SegmentationOptions:
    """The validated options of parsed arguments (raises BoneTumorError)."""
    return SegmentationOptions(
        **training_fields(args), encoder=args.encoder, encoder_weights=args.encoder_weights,
        base_filters=args.base_filters, depth=args.depth, bn_momentum=args.bn_momentum,
        alpha=args.alpha, dice_on=args.dice_on, threshold=args.threshold,
        choose_threshold=args.choose_threshold, max_normal_marked=args.max_normal_marked,
        include_normals=args.include_normals, init_from=args.init_from)


def run(args: argparse.Namespace) -> int:
    # Lazy: the trainer imports TensorFlow; --help and option errors should not wait for it.
    from bone_tumor_tf.evaluation.reports.segmentation import write_comparison_report
    from bone_tumor_tf.training.segmentation import train_segmentation

    run_dir = train_segmentation(options_from_args(args))
    if args.compare:
        comparison = write_comparison_report([run_dir, *args.compare],
                                             run_dir / "comparison.md")
        print(f"comparison: {comparison}")
    print(f"run folder: {run_dir}\nreport: {run_dir / 'report.md'}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)
