"""Train a tumor segmentation U-Net: the same as ``bone-tumor segment`` (same options)."""

from bone_tumor_tf.cli.segment import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
