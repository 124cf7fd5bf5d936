"""The PhysioNet/CinC Challenge 2021 score as an `evaluate` metric: a thin wrapper of
`dbeta_hf.evaluation.metrics.cinc2021_metrics`."""

import datasets
import evaluate
import numpy as np

from dbeta_hf.evaluation.metrics import cinc2021_metrics

_DESCRIPTION = """
The challenge score of the PhysioNet/Computing in Cardiology Challenge 2021 ("Will Two Do?"): every record adds
1 / |labels U outputs| to a confusion matrix for each (label, output) pair, the matrix is weighted with the
challenge's weights (1 on the diagonal, partial credit between similar classes) and normalised so that a classifier
that outputs only sinus rhythm scores 0 and a perfect one 1. Classes of equivalent codes are merged as the
challenge merges them. Also returned: the macro F1 of the same outputs and the macro AUROC of the scores. This
module wraps `dbeta_hf.evaluation.metrics.cinc2021_metrics`, the implementation the dbeta_hf evaluation uses.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: (N, C) probabilities (or 0/1 outputs); a class is output when its value is >= `threshold`.
    references: (N, C) binary multi-hot labels (0/1).
    classes: names of the C columns as the challenge's weights file writes them ("164889003", merged classes as
        "733534002|164909002") or abbreviations ("CLBBB|LBBB"); default: the 26 scored classes in the weights
        file's order. The normal class (sinus rhythm, 426783006) must be among them.
    threshold: output threshold (default 0.5).
Returns:
    challenge_score, macro_f1, macro_auroc, threshold.
"""

_CITATION = """
@article{reyna2021will,
  title   = {Will Two Do? Varying Dimensions in Electrocardiography: The PhysioNet/Computing in Cardiology Challenge 2021},
  author  = {Reyna, Matthew A. and Sadr, Nadi and Perez Alday, Erick A. and Gu, Annie and Shah, Amit J. and
             Robichaux, Chad and Rad, Ali Bahrami and Elola, Andoni and Seyedi, Salman and Ansari, Sardar and
             Ghanbari, Hamid and Li, Qiao and Sharma, Ashish and Clifford, Gari D.},
  journal = {Computing in Cardiology},
  year    = {2021}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Cinc2021ChallengeScore(evaluate.Metric):
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
            reference_urls=["https://physionetchallenges.org/2021/", "https://github.com/physionetchallenges/evaluation-2021"],
        )

    def _compute(self, predictions, references, classes=None, threshold=0.5):
        return cinc2021_metrics(np.asarray(references, dtype=np.float64), np.asarray(predictions, dtype=np.float64),
                                classes=classes, threshold=threshold)
