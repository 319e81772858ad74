"""Class activation maps of a saved classifier (thin CLI over bone_tumor_tf.explain.cli).

Examples:
    python gradcam.py --model runs/densenet/model.keras --images xray.png folder/ --out cams
    python gradcam.py --model runs/densenet/model.keras --data /data/BTXRD --split test \\
        --method gradcam gradcam++ --panel --out cams
"""

import sys

from bone_tumor_tf.explain.cli import main

if __name__ == "__main__":
    sys.exit(main())
