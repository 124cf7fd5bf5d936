"""dbeta_hf: a Hugging Face-native implementation of D-BETA (ECG-text foundation model).

`import dbeta_hf` is light: it loads no model code (a command's ``--help`` answers at once). The first name taken
from the package (``dbeta_hf.DBetaModel``, ``from dbeta_hf import DBetaProcessor``, ...) loads it and registers the
D-BETA classes with transformers' Auto classes and the ``zero-shot-ecg-classification`` pipeline
(`register_auto_classes`, which can also be called directly)::

    >>> import dbeta_hf
    >>> dbeta_hf.register_auto_classes()   # then AutoModel / AutoProcessor / pipeline(...) load D-BETA folders

Submodules imported directly (``from dbeta_hf.pretraining.n3s import N3SIndex``) load only what they need.
"""

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it (relative to this package); each loads on first use
_LAZY_IMPORTS = {
    "register_auto_classes": ".auto_registration",
    "CANONICAL_LEAD_NAMES": ".ecg_signal",
    "DBetaConfig": ".configuration_dbeta",
    "DBetaECGConfig": ".configuration_dbeta",
    "DBetaECGModel": ".modeling_dbeta",
    "DBetaForECGClassification": ".modeling_dbeta",
    "DBetaForPreTraining": ".modeling_dbeta",
    "DBetaForPreTrainingOutput": ".modeling_dbeta",
    "DBetaModel": ".modeling_dbeta",
    "DBetaModelOutput": ".modeling_dbeta",
    "DBetaPreTrainedModel": ".modeling_dbeta",
    "normalize_report": ".text_normalization",
    "DBetaECGFeatureExtractor": ".feature_extraction_dbeta",
    "DBetaProcessor": ".processing_dbeta",
    "ZeroShotECGClassificationPipeline": ".pipelines",
    "register_pipelines": ".pipelines",
    "DBetaPreTrainer": ".pretraining.trainer",
    "dbeta_training_arguments": ".pretraining.arguments",
    "DBetaTrainingArguments": ".pretraining.arguments",
    "DBetaPreTrainingCollator": ".pretraining.collator",
    "DBetaCollatorEpochCallback": ".pretraining.collator",
    "N3SIndex": ".pretraining.n3s",
    "build_n3s_index": ".pretraining.n3s",
    "class_descriptions": ".evaluation.prompts",
    "MissingClassDescriptionError": ".evaluation.prompts",
    "DBetaZeroShotClassifier": ".evaluation.zero_shot",
    "LinearProbe": ".evaluation.linear_probe",
    "LinearProbeConfig": ".evaluation.linear_probe",
    "ECGClassificationCollator": ".evaluation.finetune",
}
__all__ = list(_LAZY_IMPORTS)


def __getattr__(name: str):
    if name not in _LAZY_IMPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # the first name taken from the package registers the Auto classes, as `import dbeta_hf` did when it was eager
    importlib.import_module(".auto_registration", __name__).register_auto_classes()
    value = getattr(importlib.import_module(_LAZY_IMPORTS[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY_IMPORTS))
