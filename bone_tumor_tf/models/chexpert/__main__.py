"""``python -m bone_tumor_tf.models.chexpert``: see :func:`bone_tumor_tf.models.chexpert.main`."""

from bone_tumor_tf.models.chexpert import main

if __name__ == "__main__":
    raise SystemExit(main())
