"""``python -m bone_tumor_tf.predict``: old spelling of ``bone-tumor predict``.

The library part is :mod:`bone_tumor_tf.inference.predict`.
"""

if __name__ == "__main__":
    from bone_tumor_tf.cli.predict import main

    raise SystemExit(main())
