"""``bone-tumor diagnose``: find the tumor on new radiographs, classify it, explain it."""

from __future__ import annotations

from collections.abc import Sequence

from bone_tumor_tf.cli._runner import EXIT_NO, EXIT_OK, command_parser, run_command
from bone_tumor_tf.diagnosis.chain import DEFAULT_SEGMENTER_TTA, DEFAULT_WHOLE_IMAGE_WEIGHT
from bone_tumor_tf.diagnosis.regions import DEFAULT_BOX_THRESHOLD
from bone_tumor_tf.inference.inputs import SEGMENTATION_TTA

EXAMPLES = """examples:
  bone-tumor diagnose --segmenter runs/attention-unet/model.keras \\
      --classifier runs/densenet-gtbox/model.keras new_images/ --out diagnosis
  bone-tumor diagnose --segmenter SEG.keras --classifier CLS.keras \\
      --whole-image runs/densenet-whole/model.keras study.dcm --out diagnosis
  # evaluate the chain like a detector on an annotated dataset's test split
  bone-tumor diagnose --segmenter SEG.keras --classifier CLS.keras --data /data/BTXRD \\
      --split test --out diagnosis-test

The segmenter (a U-Net) proposes tumor regions: connected components of its mask at its
own threshold, specks under --min-area original pixels dropped (--box-threshold widens each
box to the region's extent at a lower level), strongly overlapping boxes merged. Each
region is cropped exactly as gt-box training crops a ground-truth box and read by the crop
classifier (normal / benign / malignant); the most suspicious region speaks for
the image. Writes OUT/diagnoses.jsonl (one line per image), OUT/panels/*.png (boxes, mask
contours, Grad-CAM++ of each region), OUT/index.html (open it in a browser). With --data:
also diagnosis_metrics.json and diagnosis_report.md (AP50 per class, chain vs gt-box oracle
vs whole-image model with paired bootstrap intervals, normal false-tumor rate)."""


def build_parser(prog: str = "bone-tumor diagnose"):
    parser = command_parser(prog, "Diagnose radiographs with a segmenter and a gt-box crop "
                                  "classifier (and optionally a whole-image classifier).",
                            EXAMPLES)
    parser.add_argument("--segmenter", required=True, action="append",
                        help="U-Net .keras saved by the toolkit; repeat it for an ensemble "
                             "(the mean of the U-Nets' maps; then choose --threshold on a "
                             "validation split)")
    parser.add_argument("--classifier", required=True,
                        help="three-class classifier trained with --crop gt-box")
    parser.add_argument("--whole-image", default=None,
                        help="optional three-class classifier trained with --crop none")
    parser.add_argument("--whole-image-weight", type=float, default=DEFAULT_WHOLE_IMAGE_WEIGHT,
                        help="weight w of the whole-image model: (1 - w) chain + w whole")
    parser.add_argument("--tumor-threshold", type=float, default=None,
                        help="operating point: report a tumor when P(benign) + P(malignant) "
                             ">= T, else normal (default: the most probable class); choose it "
                             "on a validation split, e.g. to bound false alarms on normals")
    parser.add_argument("inputs", nargs="*", help="images, DICOM files or folders")
    parser.add_argument("--data", default=None,
                        help="annotated dataset to evaluate the chain on (instead of inputs)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    parser.add_argument("--splits", default=None, metavar="CSV",
                        help="splits file (default: the classifier run's splits.csv)")
    parser.add_argument("--out", required=True, help="output folder (a rerun resumes)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="mask threshold (default: the (first) segmenter's own)")
    parser.add_argument("--tta", default=DEFAULT_SEGMENTER_TTA, choices=SEGMENTATION_TTA,
                        help="segmenter test-time augmentation: flip averages the map with "
                             "the mirrored map of the mirrored radiograph (default: "
                             "%(default)s, chosen on the real validation split)")
    parser.add_argument("--min-area", type=int, default=64,
                        help="smallest region, in original pixels")
    parser.add_argument("--box-threshold", type=float, default=DEFAULT_BOX_THRESHOLD,
                        help="each region's box (drawn, scored as a detection and read by the "
                             "classifier) spans the component of the map >= this level that "
                             "holds it, e.g. 0.5 under a mask --threshold of 0.9; regions are "
                             "still found at --threshold (default: the region's own box; on "
                             "real BTXRD 0.5 gave better boxes but a lower balanced accuracy)")
    parser.add_argument("--merge-overlap", type=float, default=0.5,
                        help="merge two boxes when their intersection covers this share of "
                             "the smaller one")
    parser.add_argument("--cam", default="gradcam++", choices=("gradcam", "gradcam++", "none"),
                        help="explanation of each region's classification")
    parser.add_argument("--layer", default=None, help="CAM layer (default: the last conv)")
    parser.add_argument("--n-bootstrap", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def run(args) -> int:
    # lazy: TensorFlow takes seconds to load; --help and option errors should not wait.
    from bone_tumor_tf.diagnosis.command import diagnose_command

    summary = diagnose_command(args)
    print(summary["message"])
    return EXIT_NO if summary.get("failed") else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)
