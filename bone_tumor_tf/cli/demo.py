"""``bone-tumor demo``: the whole pipeline on synthetic data (what ``make demo`` runs)."""

from __future__ import annotations

from collections.abc import Sequence

from bone_tumor_tf.cli._runner import EXIT_OK, command_parser, run_command

EXAMPLES = """examples:
  bone-tumor demo                      # writes runs/demo (15-20 min on 2 CPU cores)
  bone-tumor demo --out /tmp/demo --quick
  python -m bone_tumor_tf demo --out runs/demo
  bone-tumor demo --data ~/data/btxrd256 --out runs/demo-real   # real BTXRD (about 2 h)

Steps: synthetic BTXRD-format and class-folder data; inspect, split, preview; DenseNet121
three-class and ResNet50 binary (crop gt-box), DenseNet121 whole-image; an attention U-Net;
Grad-CAM. The figures show that the pipeline learns, not clinical performance. Runs that
already finished are reused, so an interrupted demo picks up where it stopped; summary.md
lists the headline figures and every report.

With --data, the steps run on a real BTXRD-layout folder (or a resized copy with the original
LabelMe files and sheet) through the toolkit's own commands, from random initialisation:
DenseNet121 three-class on tumor-box crops and on whole images, an attention U-Net on the
tumor images, Grad-CAM with method and layer chosen on the validation split, the
diagnosis chain with its whole-image weight chosen on the validation split, and ResNet50
tumor vs normal; summary.md holds one table with 95% intervals and the exact commands."""


def build_parser(prog: str = "bone-tumor demo"):
    parser = command_parser(prog, "The main job on the embedded synthetic data.", EXAMPLES)
    parser.add_argument("--data", default=None, metavar="DIR",
                        help="a real BTXRD-layout folder or resized copy (default: the "
                             "embedded synthetic data)")
    parser.add_argument("--out", default=None,
                        help="output folder (default: runs/demo, or runs/demo-real with --data)")
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    return parser


def run(args) -> int:
    # lazy: TensorFlow takes seconds to load; --help and option errors should not wait.
    if args.data is not None:
        from bone_tumor_tf.real_demo import run_real_demo

        summary = run_real_demo(args.data, args.out or "runs/demo-real", quick=args.quick)
    else:
        from bone_tumor_tf.demo import run_demo

        summary = run_demo(args.out or "runs/demo", quick=args.quick)
    print(f"\n{summary.read_text()}")
    print(f"demo finished; summary: {summary}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)
