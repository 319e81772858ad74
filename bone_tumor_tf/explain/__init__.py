"""explain: class activation maps of the classifiers and how well they find the tumor.

- :mod:`.cam`: :func:`compute_cams` / :class:`CamExplainer` (Grad-CAM, Grad-CAM++,
  Score-CAM via tf-keras-vis), heatmaps (N, S, S) in [0, 1] on the model's input grid.
- :mod:`.overlay`: colour overlay on the original radiograph, caption, three-panel figure.
- :mod:`.localization`: pointing game, energy inside the tumor mask, top-15 % IoU, and
  their bootstrap summary.
- :mod:`.scoring`: :func:`~.scoring.explain`, one CAM job over a folder or a dataset split
  (heatmap PNGs, localisation scores); command ``bone-tumor gradcam``.
- :mod:`.report`: its tables, ``cam_metrics.json`` and ``cam_report.md``.

Importing this package does not import TensorFlow; :mod:`.cam` does.
"""

from bone_tumor_tf.explain.localization import (
    energy_inside,
    mask_fraction,
    pointing_game_hit,
    summarize_localization,
    top_fraction_iou,
)
from bone_tumor_tf.explain.overlay import (
    annotate,
    colorize_heatmap,
    overlay_heatmap,
    side_by_side_panel,
)

__all__ = [
    "annotate",
    "colorize_heatmap",
    "energy_inside",
    "mask_fraction",
    "overlay_heatmap",
    "pointing_game_hit",
    "side_by_side_panel",
    "summarize_localization",
    "top_fraction_iou",
]
