"""evaluation: test-set metrics with bootstrap intervals, figures, and the Markdown reports.

- :mod:`.probabilities`: checked labels and probability matrices (the input conventions).
- :mod:`.classification`: :func:`evaluate_predictions` and sensitivity at a fixed specificity.
- :mod:`.calibration`: reliability bins, expected calibration error, multi-class Brier score.
- :mod:`.stats`: bootstrap resampling and percentile confidence intervals.
- :mod:`.segmentation`: Dice / IoU / pixel AUC at each image's original resolution (the
  probability maps it scores come from :mod:`bone_tumor_tf.inference.segmentation`).
- :mod:`.detection`: AP50 per class and mAP50 of predicted boxes;
  :mod:`.diagnosis`: the diagnosis chain against the gt-box oracle (paired bootstrap).
- :mod:`.plots`: training curves, ROC / PR curves, confusion matrices, reliability diagram.
- :mod:`.reports`: ``report.md`` laid out like the thesis tables (classification,
  segmentation), with the shared Markdown formatting of :mod:`.reports.markdown`.
"""

from bone_tumor_tf.evaluation.calibration import (
    expected_calibration_error,
    multiclass_brier_score,
)
from bone_tumor_tf.evaluation.classification import (
    evaluate_predictions,
    sensitivity_at_specificity,
)
from bone_tumor_tf.evaluation.plots import (
    plot_confusion_matrix,
    plot_pr_curves,
    plot_reliability_diagram,
    plot_roc_curves,
    plot_training_curves,
)
from bone_tumor_tf.evaluation.reports.classification import write_classification_report
from bone_tumor_tf.evaluation.stats import bootstrap_ci

__all__ = [
    "bootstrap_ci",
    "evaluate_predictions",
    "expected_calibration_error",
    "multiclass_brier_score",
    "plot_confusion_matrix",
    "plot_pr_curves",
    "plot_reliability_diagram",
    "plot_roc_curves",
    "plot_training_curves",
    "sensitivity_at_specificity",
    "write_classification_report",
]
