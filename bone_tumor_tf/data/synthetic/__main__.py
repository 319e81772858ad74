"""``python -m bone_tumor_tf.data.synthetic``: old spelling of ``bone-tumor data synthetic``."""

import sys

from bone_tumor_tf.cli.data import main

if __name__ == "__main__":
    raise SystemExit(main(["synthetic", *sys.argv[1:]]))
