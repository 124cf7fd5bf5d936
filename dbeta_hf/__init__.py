"""dbeta_hf: a Hugging Face-native implementation of D-BETA (ECG-text foundation model).

Importing the package registers the D-BETA classes with the transformers Auto classes.
"""

import importlib

from transformers import AutoConfig, AutoModel, AutoModelForPreTraining, AutoModelForSequenceClassification
from transformers import AutoFeatureExtractor, AutoProcessor

from .configuration_dbeta import DBetaConfig, DBetaECGConfig
from .ecg_signal import CANONICAL_LEAD_NAMES
from .hub.model_card import refresh_model_card
from .modeling_dbeta import (
    DBetaECGModel,
    DBetaForECGClassification,
    DBetaForPreTraining,
    DBetaForPreTrainingOutput,
    DBetaModel,
    DBetaModelOutput,
    DBetaPreTrainedModel,
)
from .text_normalization import normalize_report
from .feature_extraction_dbeta import DBetaECGFeatureExtractor
from .processing_dbeta import DBetaProcessor

AutoConfig.register("dbeta", DBetaConfig)
AutoConfig.register("dbeta_ecg", DBetaECGConfig)
AutoModel.register(DBetaConfig, DBetaModel)
AutoModelForPreTraining.register(DBetaConfig, DBetaForPreTraining)
AutoModelForSequenceClassification.register(DBetaConfig, DBetaForECGClassification)
AutoFeatureExtractor.register(DBetaConfig, DBetaECGFeatureExtractor)
AutoFeatureExtractor.register(DBetaECGConfig, DBetaECGFeatureExtractor)
AutoProcessor.register(DBetaConfig, DBetaProcessor)

# `save_pretrained` writes an `auto_map` and copies the code files, so saved folders load with trust_remote_code=True
# where dbeta_hf is not installed (the Hub route of transformers' custom models)
DBetaConfig.register_for_auto_class()
DBetaModel.register_for_auto_class("AutoModel")
DBetaForPreTraining.register_for_auto_class("AutoModelForPreTraining")
DBetaForECGClassification.register_for_auto_class("AutoModelForSequenceClassification")
DBetaECGFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
DBetaProcessor.register_for_auto_class("AutoProcessor")

# every save of a model or processor (re)writes the folder's model card; the code files copied into saved folders
# (trust_remote_code) do not import dbeta_hf, so the card writer is hooked in here
DBetaPreTrainedModel.save_hooks.append(refresh_model_card)
DBetaProcessor.save_hooks.append(refresh_model_card)

__all__ = [
    "CANONICAL_LEAD_NAMES",
    "DBetaConfig",
    "DBetaECGConfig",
    "DBetaECGModel",
    "DBetaForECGClassification",
    "DBetaForPreTraining",
    "DBetaForPreTrainingOutput",
    "DBetaModel",
    "DBetaModelOutput",
    "DBetaPreTrainedModel",
    "normalize_report",
]
__all__ += ["DBetaECGFeatureExtractor", "DBetaProcessor"]

from .pipelines import ZeroShotECGClassificationPipeline, register_pipelines  # noqa: E402

register_pipelines()
__all__ += ["ZeroShotECGClassificationPipeline", "register_pipelines"]

# the training, N3S and evaluation classes import on first use (`from dbeta_hf import DBetaPreTrainer`), so that
# `import dbeta_hf` stays as light as the model and processor it registers
_LAZY_IMPORTS = {
    "DBetaPreTrainer": ".pretraining.trainer",
    "dbeta_training_arguments": ".pretraining.trainer",
    "DBetaTrainingArguments": ".pretraining.trainer",
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
__all__ += list(_LAZY_IMPORTS)


def __getattr__(name: str):
    if name in _LAZY_IMPORTS:
        value = getattr(importlib.import_module(_LAZY_IMPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY_IMPORTS))


__version__ = "0.1.0"
