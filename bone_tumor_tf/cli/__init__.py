"""The command line: ``bone-tumor <command> [<args>]`` (= ``python -m bone_tumor_tf <command>``).

One module per command in this package, each with ``main(argv) -> int``: it parses the
command's arguments and makes one call into the library, through the shared wrapper of
:mod:`bone_tumor_tf.cli._runner` (logging, one-line errors, exit codes). This dispatcher
reads the options common to all commands (``-v`` / ``-q``), then imports only the chosen
command's module, so that ``--help`` never waits for TensorFlow.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from bone_tumor_tf import __version__
from bone_tumor_tf.cli import _runner

#: name -> (module with ``main(argv)``, one-line summary for ``bone-tumor --help``).
COMMANDS = {
    "train": ("bone_tumor_tf.cli.train", "train a classifier (DenseNet121 / ResNet50) and "
                                         "evaluate it"),
    "segment": ("bone_tumor_tf.cli.segment", "train a tumor segmentation U-Net and evaluate "
                                             "it"),
    "gradcam": ("bone_tumor_tf.cli.gradcam", "class activation maps of a classifier, and "
                                             "how well they find the tumors"),
    "predict": ("bone_tumor_tf.cli.predict", "class probabilities or tumor masks of new "
                                             "images"),
    "evaluate": ("bone_tumor_tf.cli.evaluate", "re-evaluate a saved classifier on a split; "
                                               "compare segmentation runs"),
    "data": ("bone_tumor_tf.cli.data", "inspect, split, preview or generate (synthetic) a "
                                       "dataset"),
    "convert-chexpert": ("bone_tumor_tf.cli.convert_chexpert", "convert torchxrayvision's "
                                                               "CheXpert DenseNet121 to Keras"),
    "export": ("bone_tumor_tf.cli.export", "write a TensorFlow SavedModel (TF Serving) and "
                                           "its contract"),
    "diagnose": ("bone_tumor_tf.cli.diagnose", "find, classify and explain tumors on new "
                                               "radiographs; evaluate the chain like a "
                                               "detector"),
    "demo": ("bone_tumor_tf.cli.demo", "the whole pipeline on synthetic data (make demo)"),
}

EXAMPLES = """commands:
{commands}

examples:
  bone-tumor data inspect /data/BTXRD
  bone-tumor train --data /data/BTXRD --arch densenet121 --task multiclass --out runs/densenet
  bone-tumor predict --model runs/densenet/model.keras new_images/ --json
  bone-tumor -q gradcam --model runs/densenet/model.keras --images xray.png --out cams
  python -m bone_tumor_tf demo --out runs/demo

'bone-tumor <command> --help' shows a command's options and examples. Exit status: 0 done,
1 ran and the answer is no (e.g. unusable data), 2 user error (one line 'error: ...'),
130 interrupted."""


def build_parser() -> argparse.ArgumentParser:
    width = max(map(len, COMMANDS))
    listing = "\n".join(f"  {name:<{width}}  {summary}"
                        for name, (_, summary) in COMMANDS.items())
    parser = argparse.ArgumentParser(
        prog="bone-tumor", usage="%(prog)s [-h] [--version] [-v | -q] <command> [<args>]",
        description="Train, evaluate and explain deep-learning models of primary bone "
                    "tumors on radiographs.",
        epilog=EXAMPLES.format(commands=listing),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    level = parser.add_mutually_exclusive_group()
    level.add_argument("-v", "--verbose", action="store_true",
                       help="also debug messages of the library")
    level.add_argument("-q", "--quiet", action="store_true",
                       help="only warnings and errors; no progress bars")
    parser.add_argument("command", choices=COMMANDS, metavar="<command>",
                        help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="<args>",
                        help="the command's arguments (see bone-tumor <command> --help)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``bone-tumor`` and ``python -m bone_tumor_tf``; the exit status."""
    args = build_parser().parse_args(argv)
    level = -1 if args.quiet else 1 if args.verbose else 0
    module = importlib.import_module(COMMANDS[args.command][0])
    _runner.configure_logging(level)
    with _runner.verbosity(level):
        return _runner.guarded(module.main, args.args)
