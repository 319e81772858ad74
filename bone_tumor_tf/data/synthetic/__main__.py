"""``python -m bone_tumor_tf.data.synthetic``: see :func:`bone_tumor_tf.data.synthetic.main`."""

import sys

from bone_tumor_tf.data.synthetic import main

if __name__ == "__main__":
    sys.exit(main())
