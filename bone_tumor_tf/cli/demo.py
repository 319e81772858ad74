"""``bone-tumor demo``: the whole pipeline on synthetic data (what ``make demo`` runs)."""

from __future__ import annotations

from collections.abc import Sequence

from bone_tumor_tf.cli._runner import EXIT_OK, command_parser, run_command

EXAMPLES = """examples:
  bone-tumor demo                      # writes runs/demo (15-20 min on 2 CPU cores)
  bone-tumor demo --out /tmp/demo --quick
  python -m bone_tumor_tf demo --out runs/demo

Steps: synthetic BTXRD-format and class-folder data; inspect, split, preview; DenseNet121
three-class and ResNet50 binary (crop gt-box), DenseNet121 whole-image; an attention U-Net;
Grad-CAM. The figures show that the pipeline learns, not clinical performance. Runs that
already finished are reused, so an interrupted demo picks up where it stopped; summary.md
lists the headline figures and every report."""


def build_parser(prog: str = "bone-tumor demo"):
    parser = command_parser(prog, "The main job on the embedded synthetic data.", EXAMPLES)
    parser.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo)")
    parser.add_argument("--quick", action="store_true", help="tiny settings (smoke test)")
    return parser


def run(args) -> int:
    # lazy: TensorFlow takes seconds to load; --help and option errors should not wait.
    from bone_tumor_tf.demo import run_demo

    summary = run_demo(args.out, quick=args.quick)
    print(f"\n{summary.read_text()}")
    print(f"demo finished; summary: {summary}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)
