"""``bone-tumor convert-chexpert``: torchxrayvision's CheXpert DenseNet121 -> Keras weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bone_tumor_tf.cli._runner import EXIT_OK, command_parser, run_command

EXAMPLES = """examples:
  bone-tumor convert-chexpert \\
      ~/.torchxrayvision/models_data/chex-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt \\
      ~/.keras/models/densenet121-res224-chex.weights.h5
  bone-tumor convert-chexpert state_dict.pt chex3.weights.h5 --channels 3

SRC is a state_dict saved with torch.save, or torchxrayvision's own checkpoint (a whole
pickled model; unpickling it needs torchxrayvision installed and can execute code: only
convert files from a source you trust). Needs PyTorch. Training then uses the file with
--weights chexpert (default folder: $BONE_TUMOR_WEIGHTS_DIR or ~/.keras/models)."""


def build_parser(prog: str = "bone-tumor convert-chexpert"):
    parser = command_parser(prog, "Convert torchxrayvision's CheXpert DenseNet121 "
                                  "(PyTorch) to layer weights of the Keras DenseNet121.",
                            EXAMPLES)
    parser.add_argument("src", help="torchxrayvision checkpoint (.pt: state_dict or model)")
    parser.add_argument("dst", help="output file, e.g. "
                                    "~/.keras/models/densenet121-res224-chex.weights.h5")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=1,
                        help="input channels of the Keras backbone (default 1, as xrv)")
    return parser


def run(args) -> int:
    # lazy: NumPy/h5py/PyTorch load in seconds; --help and option errors should not wait.
    from bone_tumor_tf.models.chexpert import convert_checkpoint, densenet121_weighted_layers

    dst = convert_checkpoint(args.src, Path(args.dst).expanduser(), channels=args.channels)
    print(f"wrote {dst} ({len(densenet121_weighted_layers())} layers, "
          f"channels={args.channels})")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)
