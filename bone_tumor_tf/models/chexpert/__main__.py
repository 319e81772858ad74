"""``python -m bone_tumor_tf.models.chexpert convert``: old spelling of
``bone-tumor convert-chexpert``."""

import sys

from bone_tumor_tf.cli.convert_chexpert import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    raise SystemExit(main(argv[1:] if argv[:1] == ["convert"] else argv))
