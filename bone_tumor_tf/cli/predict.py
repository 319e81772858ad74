"""``bone-tumor predict``: class probabilities or tumor masks of new images."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

from bone_tumor_tf.cli._runner import (
    EXIT_NO,
    EXIT_OK,
    command_parser,
    progress_enabled,
    run_command,
)
from bone_tumor_tf.errors import BoneTumorError, DataError
from bone_tumor_tf.inference.inputs import SEGMENTATION_TTA

EXAMPLES = """examples:
  bone-tumor predict --model runs/densenet/model.keras xray.png new_images/
  bone-tumor predict --model runs/densenet/model.keras new_images/ --json > predictions.jsonl
  bone-tumor predict --model runs/attention-unet/model.keras new_images/ --out masks/

Classifiers: a table (file, predicted class, one probability per class), or with --json one
object per line with file, predicted, probability and probabilities. Segmentation models:
<stem>_mask.png (0 / 255, the input's original size) and <stem>_overlay.png per image in
--out, and one line per image. JPEG, 8/16-bit PNG, grayscale or RGB, DICOM.
Exit status 1 when some file could not be read (each named on stderr; the others are
still predicted)."""


def build_parser(prog: str = "bone-tumor predict"):
    parser = command_parser(prog, "Class probabilities (classifiers) or tumor masks "
                                  "(segmentation models) for images or folders of images.",
                            EXAMPLES)
    parser.add_argument("--model", required=True, help="a .keras model saved by this toolkit")
    parser.add_argument("inputs", nargs="+", help="image files and/or folders (searched "
                                                  "recursively)")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default=None,
                        help="output folder for segmentation masks and overlays")
    parser.add_argument("--threshold", type=float, default=None,
                        help="mask threshold (segmentation; default: the one in the "
                             "model's contract, else 0.5)")
    parser.add_argument("--tta", default="none", choices=SEGMENTATION_TTA,
                        help="segmentation test-time augmentation: flip averages the map "
                             "with the mirrored map of the mirrored image (the mask threshold "
                             "in the contract was chosen without it)")
    return parser


def run(args) -> int:
    # lazy: TensorFlow takes seconds to load; --help and option errors should not wait.
    from bone_tumor_tf.inference import expand_inputs
    from bone_tumor_tf.inference.predict import predict_classifier, predict_segmentation
    from bone_tumor_tf.models import is_segmentation_model, load_model, read_contract

    model = load_model(args.model)
    files = expand_inputs(args.inputs)
    if not files:
        raise DataError(" ".join(args.inputs), "no image files found")
    if is_segmentation_model(model):
        if not args.out:
            raise BoneTumorError("--out is required for a segmentation model (masks are "
                                 "written as PNG files)")
        failed = 0
        for row in predict_segmentation(model, files, args.out, args.threshold,
                                        args.batch_size, tta=args.tta):
            if "error" in row:
                failed += 1
                print(f"error: {row['error']}", file=sys.stderr)
                continue
            print(json.dumps(row) if args.json else
                  "  ".join(f"{k}={v}" for k, v in row.items()))
        return EXIT_NO if failed else EXIT_OK
    names = list(read_contract(model).class_names)
    if not args.json:
        print("file\tpredicted\t" + "\t".join(f"p({n})" for n in names))
    failed = 0
    for row in predict_classifier(model, files, args.batch_size,
                                  progress=not args.json and progress_enabled()):
        if "error" in row:
            failed += 1
            print(f"error: {row['error']}", file=sys.stderr)
        elif args.json:
            print(json.dumps(row))
        else:
            print(f"{row['file']}\t{row['predicted']}\t" + "\t".join(
                f"{row['probabilities'][n]:.4f}" for n in names))
    return EXIT_NO if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)
