"""Train a radiograph classifier: the same as ``bone-tumor train`` (same options)."""

from bone_tumor_tf.cli.train import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
