"""Registration of the D-BETA classes with transformers.

Each module of the model bundle registers its own classes when the installed package imports it: the configs with
`AutoConfig` (`configuration_dbeta`), the feature extractor with `AutoFeatureExtractor`, the processor with
`AutoProcessor`, the models with `AutoModel`, `AutoModelForPreTraining` and `AutoModelForSequenceClassification`,
and each class for the `auto_map` that saved folders carry for ``trust_remote_code=True``. `register_auto_classes`
imports them all and adds what no single module owns: the ``zero-shot-ecg-classification`` pipeline and the model
card written on every save of a model or processor.

`import dbeta_hf` loads none of this (so that a command's ``--help`` answers at once); the first name taken from
the package (``dbeta_hf.DBetaModel``, ``from dbeta_hf import DBetaProcessor``, ...) runs `register_auto_classes`,
and so does calling it::

    >>> import dbeta_hf
    >>> dbeta_hf.register_auto_classes()   # AutoModel / AutoProcessor / pipeline(...) now know D-BETA folders
"""

from __future__ import annotations

from . import configuration_dbeta, feature_extraction_dbeta  # noqa: F401  (each registers its classes on import)
from .hub.model_card import refresh_model_card
from .modeling_dbeta import DBetaPreTrainedModel
from .pipelines import register_pipelines
from .processing_dbeta import DBetaProcessor

__all__ = ["register_auto_classes"]


def register_auto_classes() -> None:
    """Make the Auto classes, `transformers.pipeline` and every save know D-BETA: the bundle's modules are imported
    (each registers its classes), the pipeline is registered, and saving a model or processor (re)writes the
    folder's model card. Idempotent."""
    # the code files copied into saved folders (trust_remote_code) do not import dbeta_hf, so the card writer is
    # hooked in here rather than in the classes
    for hooks in (DBetaPreTrainedModel.save_hooks, DBetaProcessor.save_hooks):
        if refresh_model_card not in hooks:
            hooks.append(refresh_model_card)
    register_pipelines()
