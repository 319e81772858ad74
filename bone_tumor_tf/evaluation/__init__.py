"""evaluation: test-set metrics with bootstrap intervals, figures, and the Markdown report.

- :mod:`.classification`: :func:`evaluate_predictions` and the metrics scikit-learn lacks
  (expected calibration error, sensitivity at a fixed specificity, multi-class Brier score,
  bootstrap confidence intervals).
- :mod:`.plots`: training curves, ROC / PR curves, confusion matrices, reliability diagram.
- :mod:`.report`: ``report.md`` laid out like the thesis tables.
"""

from bone_tumor_tf.evaluation.classification import (
    bootstrap_ci,
    evaluate_predictions,
    expected_calibration_error,
    multiclass_brier_score,
    sensitivity_at_specificity,
)
from bone_tumor_tf.evaluation.plots import (
    plot_confusion_matrix,
    plot_pr_curves,
    plot_reliability_diagram,
    plot_roc_curves,
    plot_training_curves,
)
from bone_tumor_tf.evaluation.report import write_classification_report

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
