"""``python -m bone_tumor_tf <command>``: the same as the ``bone-tumor`` console script."""

from bone_tumor_tf.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
