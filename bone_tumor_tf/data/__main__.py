"""``python -m bone_tumor_tf.data inspect|split|preview``: old spelling of ``bone-tumor data``."""

from bone_tumor_tf.cli.data import main

if __name__ == "__main__":
    raise SystemExit(main())
