"""Class activation maps of a saved classifier: the same as ``bone-tumor gradcam``."""

from bone_tumor_tf.cli.gradcam import main

if __name__ == "__main__":
    raise SystemExit(main())
