"""``bone-tumor gradcam`` (and ``gradcam.py``): CAM heatmaps of a saved classifier."""

from __future__ import annotations

from collections.abc import Sequence

from bone_tumor_tf.cli._runner import EXIT_OK, command_parser, progress_enabled, run_command
from bone_tumor_tf.errors import BoneTumorError

# As bone_tumor_tf.explain.cam.METHODS, repeated so that --help needs no TensorFlow.
METHODS = ("gradcam", "gradcam++", "scorecam")

DESCRIPTION = """Class activation maps (Grad-CAM, Grad-CAM++, Score-CAM; tf-keras-vis) of
a saved classifier, drawn over the original radiographs. With --data on a
BTXRD-format folder, also scores how well the maps point at the annotated
tumors (pointing game, energy inside the mask, top-15% IoU) with 95%
bootstrap intervals, next to the pointing game's chance level."""

EXAMPLES = """examples:
  bone-tumor gradcam --model runs/densenet/model.keras --images xray.png folder/ --out cams
  bone-tumor gradcam --model runs/densenet/model.keras --data /data/BTXRD --split test \\
      --method gradcam gradcam++ --class true --panel --out cams
  python gradcam.py --model runs/densenet/model.keras --images xray.png --out cams

outputs in --out:
  <stem>_<method>.png   one per image and method, at the image's original size
                        (--panel: image | heatmap | overlay, three times as wide)
  summary.csv           file, method, predicted_class, probability, target_class, ...
  with --data also      cam_localization.csv (per image), cam_metrics.json, cam_report.md

--images: whole radiographs, scaled and padded to the model's input (a model trained on
tumor-box crops, crop mode gt-box, then sees images unlike its training ones; a warning
says so). --data with a gt-box model: tumor images cropped to their annotated tumor box,
as in training; scores are computed inside the region the model saw.

Bad input: one line 'error: ...' on stderr and exit status 2."""


def build_parser(prog: str = "bone-tumor gradcam"):
    parser = command_parser(prog, DESCRIPTION, EXAMPLES)
    parser.add_argument("--model", required=True, help="a .keras classifier saved by this "
                                                       "toolkit (e.g. RUN/model.keras)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", nargs="+", metavar="PATH",
                        help="image files and/or folders (searched recursively)")
    source.add_argument("--data", metavar="DIR",
                        help="dataset folder (BTXRD layout: images/, Annotations/, sheet; or "
                             "class folders): explain one split and score localisation")
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                        help="split of --data to explain (default: test)")
    parser.add_argument("--splits", metavar="CSV", default=None,
                        help="splits.csv (image_id,label,group,split); default: splits.csv "
                             "next to the model, else all images")
    parser.add_argument("--out", required=True, help="output folder (created)")
    parser.add_argument("--method", nargs="+", action="extend", choices=METHODS,
                        default=None, metavar="METHOD",
                        help=f"one or more of {', '.join(METHODS)} (default: gradcam)")
    parser.add_argument("--class", dest="target_class", default=None, metavar="NAME",
                        help="explain this class for every image instead of the predicted "
                             "one; 'true' = each image's ground-truth class (--data only)")
    parser.add_argument("--alpha", type=float, default=0.4,
                        help="heatmap opacity of the overlay, in [0, 1] (default: 0.4)")
    parser.add_argument("--panel", action="store_true",
                        help="write image | heatmap | overlay side by side instead of the "
                             "overlay alone")
    parser.add_argument("--layer", default=None, metavar="NAME",
                        help="layer whose feature map is explained (default: the last one, "
                             "conv5_block3_out for ResNet50, relu for DenseNet121)")
    parser.add_argument("--batch-size", type=int, default=16,
                        help="images per model / tf-keras-vis call (default: 16)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="explain only the first N images")
    parser.add_argument("--scorecam-max-n", type=int, default=None, metavar="N",
                        help="Faster Score-CAM: use the N feature channels of largest "
                             "variance (default: all channels; 1,024 to 2,048 forward passes "
                             "per image)")
    parser.add_argument("--top-fraction", type=float, default=0.15,
                        help="hottest fraction of pixels compared with the tumor mask by IoU "
                             "(default: 0.15)")
    parser.add_argument("--n-bootstrap", type=int, default=1000,
                        help="bootstrap resamples for the 95%% intervals (default: 1000)")
    parser.add_argument("--seed", type=int, default=0,
                        help="bootstrap seed, and the seed of the normal radiographs' gt-box "
                             "crops, as in training (default: 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def run(args) -> int:
    # lazy: TensorFlow takes seconds to load; --help and option errors should not wait.
    from bone_tumor_tf.explain.scoring import CamOptions, explain

    options = CamOptions(
        model=args.model, out=args.out, images=args.images, data=args.data, split=args.split,
        splits=args.splits, methods=args.method or ["gradcam"], target_class=args.target_class,
        alpha=args.alpha, panel=args.panel, layer=args.layer, batch_size=args.batch_size,
        limit=args.limit, scorecam_max_n=args.scorecam_max_n, top_fraction=args.top_fraction,
        n_bootstrap=args.n_bootstrap, seed=args.seed,
        progress=not args.quiet and progress_enabled())
    try:
        written = explain(options)
    except MemoryError:
        raise BoneTumorError("out of memory; lower --batch-size (or --scorecam-max-n for "
                             "scorecam)") from None
    print(f"wrote {', '.join(written)} to {args.out}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``bone-tumor gradcam``; the exit status (0 ok, 2 bad input, 130 interrupted)."""
    return run_command(build_parser(), run, argv)
