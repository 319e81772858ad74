"""``bone-tumor evaluate``: re-evaluate a saved classifier or U-Net; compare segmentation runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bone_tumor_tf.cli._runner import EXIT_OK, command_parser, run_command
from bone_tumor_tf.errors import BoneTumorError

EXAMPLES = """examples:
  bone-tumor evaluate --model runs/densenet/model.keras --data /data/BTXRD --split test
  bone-tumor evaluate --model runs/densenet/model.keras --data /data/other --split all
  bone-tumor evaluate --model runs/unet/model.keras --data /data/BTXRD --split val \
      --splits runs/densenet/splits.csv
  bone-tumor evaluate --compare runs/unet runs/attention-unet --out comparison.md

--model: the split comes from --splits CSV, else the splits.csv beside the model (the run's
own split), else the whole dataset (--split all). Images are prepared exactly as the
model's contract says (input size, crop mode). Writes metrics.json, the plots and
report.md to --out (default RUN/eval-<split>). A U-Net is scored at the original resolution
on the split's tumor images and normal radiographs (a tumor-only U-Net's splits.csv has no
normals: give a classifier run's splits.csv, the same split, to count the normals marked).
--compare: one Markdown table of finished segmentation runs (e.g. U-Net vs Attention
U-Net) read from their metrics.json (default --out: comparison.md in the first run)."""


def build_parser(prog: str = "bone-tumor evaluate"):
    parser = command_parser(prog, "Re-evaluate a saved classifier or U-Net on a dataset split, or "
                                  "compare finished segmentation runs.", EXAMPLES)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help="RUN/model.keras (a classifier or a U-Net)")
    what.add_argument("--compare", nargs="+", action="extend", metavar="RUN",
                      help="segmentation run folders to compare (repeatable)")
    parser.add_argument("--data", help="dataset folder or 'demo' (with --model)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    parser.add_argument("--splits", default=None, help="splits.csv (default: beside the model)")
    parser.add_argument("--out", default=None, help="output folder (--model) or Markdown file "
                                                    "(--compare)")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def run(args) -> int:
    # lazy: TensorFlow takes seconds to load; --help and option errors should not wait.
    if args.compare:
        from bone_tumor_tf.evaluation.reports.segmentation import write_comparison_report

        out = Path(args.out) if args.out else Path(args.compare[0]) / "comparison.md"
        path = write_comparison_report(args.compare, out)
        print(path.read_text(encoding="utf-8"))
        print(f"comparison: {path}")
        return EXIT_OK
    from bone_tumor_tf.evaluate import evaluate_saved_model

    if args.data is None:
        raise BoneTumorError("--model needs --data (the dataset folder, or 'demo')")
    out = evaluate_saved_model(args.model, args.data, args.split, args.splits, args.out,
                               args.n_bootstrap, args.seed)
    print(f"report: {out / 'report.md'}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)
