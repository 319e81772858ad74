"""``bone-tumor export``: a TensorFlow SavedModel for TF Serving, with the model's contract."""

from __future__ import annotations

from collections.abc import Sequence

from bone_tumor_tf.cli._runner import EXIT_OK, command_parser, run_command

EXAMPLES = """examples:
  bone-tumor export --model runs/densenet/model.keras --out serving/densenet/1
  bone-tumor export --model runs/attention-unet/model.keras --out serving/unet/1

Writes a TensorFlow SavedModel (model.export: serving signature 'serve' with the model's
input shape, float32 radiograph values in [0, 255]) and contract.json beside it (task,
class names, input size, crop mode ...: how to prepare an image for it). TF Serving loads
the numbered folder (MODEL_BASE_PATH/<version>). --out must not exist or be empty."""


def build_parser(prog: str = "bone-tumor export"):
    parser = command_parser(prog, "Export a saved .keras model as a TensorFlow SavedModel "
                                  "(TF Serving, TFLite conversion) with its contract.",
                            EXAMPLES)
    parser.add_argument("--model", required=True, help="a .keras model saved by this toolkit")
    parser.add_argument("--out", required=True, help="SavedModel folder to write")
    return parser


def run(args) -> int:
    # lazy: TensorFlow takes seconds to load; --help and option errors should not wait.
    from bone_tumor_tf.inference.export import export_saved_model

    out = export_saved_model(args.model, args.out)
    print(f"wrote SavedModel and {out / 'contract.json'} to {out}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)
