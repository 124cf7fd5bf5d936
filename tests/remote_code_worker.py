"""Worker for the remote-code test: loads a saved D-BETA folder with `trust_remote_code=True` in a process that
cannot import dbeta_hf (an import of it raises), and writes the features it computes to an .npz file.

Usage: python remote_code_worker.py <saved folder> <output .npz>
"""

from __future__ import annotations

import importlib.abc
import sys


class _BlockDBetaHF(importlib.abc.MetaPathFinder):
    """Makes `import dbeta_hf` fail however it is installed (editable finder, .pth file, PYTHONPATH)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "dbeta_hf" or fullname.startswith("dbeta_hf."):
            raise ImportError(f"{fullname} is blocked: this process checks loading without dbeta_hf")
        return None


sys.meta_path.insert(0, _BlockDBetaHF())


def main(folder: str, output: str) -> None:
    import numpy as np
    import torch
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForPreTraining,
        AutoModelForSequenceClassification,
        AutoProcessor,
    )

    try:
        import dbeta_hf  # noqa: F401
    except ImportError:
        pass
    else:
        raise AssertionError("dbeta_hf is importable in the worker; the test would prove nothing")

    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
    pretraining = AutoModelForPreTraining.from_pretrained(folder, trust_remote_code=True).eval()
    classifier = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True, num_labels=3).eval()

    rng = np.random.default_rng(0)
    inputs = processor(ecg=rng.standard_normal((2, 12, 5000)).astype(np.float32), sampling_rate=500,
                       text=["Sinus rhythm. Normal ECG", "*** Atrial fibrillation ***"])
    with torch.no_grad():
        ecg = base.get_ecg_features(inputs["ecg_values"])
        text = base.get_text_features(inputs["input_ids"], inputs["attention_mask"])
        ecg_pretraining = pretraining.model.get_ecg_features(inputs["ecg_values"])
        pooled = classifier.model(inputs["ecg_values"]).pooler_output
    classes = [type(obj) for obj in (config, processor, processor.feature_extractor, base, pretraining, classifier)]
    np.savez(
        output,
        ecg_values=inputs["ecg_values"].numpy(), input_ids=inputs["input_ids"].numpy(),
        ecg_features=ecg.numpy(), text_features=text.numpy(), ecg_features_pretraining=ecg_pretraining.numpy(),
        classifier_pooled=pooled.numpy(),
        class_names=np.array([f"{cls.__module__}.{cls.__name__}" for cls in classes]),
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
