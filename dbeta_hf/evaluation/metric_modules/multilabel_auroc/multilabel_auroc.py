"""Multi-label AUROC as an `evaluate` metric: a thin wrapper of `dbeta_hf.evaluation.metrics.multilabel_auroc`."""

import datasets
import evaluate
import numpy as np

from dbeta_hf.evaluation.metrics import multilabel_auroc

_DESCRIPTION = """
Per-class AUROC of multi-label scores and their mean (macro AUROC) over the classes that have at least one positive
and one negative record; the other classes are reported as skipped, with the reason. Each class's AUROC equals
scikit-learn's `roc_auc_score` of that class (a positive and a negative with the same score count one half).
This module wraps `dbeta_hf.evaluation.metrics.multilabel_auroc`, the implementation the dbeta_hf evaluation uses.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: (N, C) scores, one row per record, any monotone scale (logits, probabilities, similarities).
    references: (N, C) binary multi-hot labels (0/1).
    class_names: optional names of the C classes (default "0", "1", ...).
Returns:
    macro_auroc: mean AUROC over the classes with both labels (NaN if none);
    per_class: {name: AUROC} of those classes; per_class_all: {name: AUROC or None} of every class;
    skipped_classes: {name: reason}; num_classes_scored; num_samples.
Examples:
    >>> auroc = evaluate.load("path/to/multilabel_auroc")
    >>> auroc.compute(predictions=[[0.9, 0.2], [0.1, 0.8], [0.95, 0.4]], references=[[1, 0], [0, 1], [0, 0]])["macro_auroc"]
    0.75
"""

_CITATION = """
@inproceedings{dbeta2025,
  title     = {Boosting Masked ECG-Text Auto-Encoders as Discriminative Learners},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2025},
  note      = {arXiv:2410.02131}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MultilabelAUROC(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("float64")),
                "references": datasets.Sequence(datasets.Value("float64")),
            }),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.roc_auc_score.html"],
        )

    def _compute(self, predictions, references, class_names=None):
        return multilabel_auroc(np.asarray(references, dtype=np.float64), np.asarray(predictions, dtype=np.float64),
                                class_names=class_names)
