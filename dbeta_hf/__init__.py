"""dbeta_hf: a Hugging Face-native implementation of D-BETA (ECG-text foundation model).

Importing the package registers the D-BETA classes with the transformers Auto classes.
"""

from transformers import AutoConfig, AutoModel, AutoModelForPreTraining
from transformers import AutoFeatureExtractor, AutoProcessor

from .configuration_dbeta import CANONICAL_LEAD_NAMES, DBetaConfig, DBetaECGConfig
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
AutoFeatureExtractor.register(DBetaConfig, DBetaECGFeatureExtractor)
AutoFeatureExtractor.register(DBetaECGConfig, DBetaECGFeatureExtractor)
AutoProcessor.register(DBetaConfig, DBetaProcessor)

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
__version__ = "0.1.0"
