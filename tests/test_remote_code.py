"""Saved folders carry their code: they load with trust_remote_code=True where dbeta_hf cannot be imported."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dbeta_hf import DBetaForPreTraining, DBetaModel, DBetaProcessor
from dbeta_hf.pretraining.recipes import tiny_config

WORKER = Path(__file__).with_name("remote_code_worker.py")
CODE_FILES = {
    "configuration_dbeta.py", "modeling_dbeta.py", "losses.py", "fast_conv.py", "file_modes.py",
    "feature_extraction_dbeta.py", "ecg_signal.py", "processing_dbeta.py", "text_normalization.py",
    "input_convention.py",
}


@pytest.fixture(scope="module")
def saved_pretraining_dir(tmp_path_factory, tiny_tokenizer_path):
    path = tmp_path_factory.mktemp("dbeta-remote")
    torch.manual_seed(0)
    DBetaForPreTraining(tiny_config()).save_pretrained(path)
    DBetaProcessor.from_tokenizer(str(tiny_tokenizer_path)).save_pretrained(path)
    return path


def test_save_pretrained_writes_auto_map_and_self_contained_code(saved_pretraining_dir):
    config = json.loads((saved_pretraining_dir / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_dbeta.DBetaConfig",
        "AutoModel": "modeling_dbeta.DBetaModel",
        "AutoModelForPreTraining": "modeling_dbeta.DBetaForPreTraining",
        "AutoModelForSequenceClassification": "modeling_dbeta.DBetaForECGClassification",
    }
    processor_config = json.loads((saved_pretraining_dir / "processor_config.json").read_text())
    assert processor_config["auto_map"]["AutoProcessor"] == "processing_dbeta.DBetaProcessor"
    assert processor_config["feature_extractor"]["auto_map"]["AutoFeatureExtractor"] == (
        "feature_extraction_dbeta.DBetaECGFeatureExtractor")
    copied = {p.name for p in saved_pretraining_dir.glob("*.py")}
    assert copied == CODE_FILES
    for name in copied:  # the copied code imports nothing of dbeta_hf outside the copied set
        for node in ast.walk(ast.parse((saved_pretraining_dir / name).read_text())):
            if isinstance(node, ast.Import):
                assert not any(alias.name.split(".")[0] == "dbeta_hf" for alias in node.names), (name, node.lineno)
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module.split(".")[0] != "dbeta_hf", (name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 1, (name, node.lineno)
                targets = [node.module] if node.module else [alias.name for alias in node.names]
                assert all(f"{target}.py" in copied for target in targets), (name, node.lineno)


def test_installed_package_loads_without_trust_remote_code(saved_pretraining_dir):
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoProcessor

    assert type(AutoModel.from_pretrained(saved_pretraining_dir)) is DBetaModel
    assert type(AutoProcessor.from_pretrained(saved_pretraining_dir)) is DBetaProcessor
    classifier = AutoModelForSequenceClassification.from_pretrained(saved_pretraining_dir, num_labels=3)
    assert type(classifier).__name__ == "DBetaForECGClassification" and type(classifier).__module__.startswith("dbeta_hf")


def test_trust_remote_code_loads_without_dbeta_hf_and_matches_the_package(saved_pretraining_dir, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"), TOKENIZERS_PARALLELISM="false")
    output = tmp_path / "remote.npz"
    result = subprocess.run([sys.executable, str(WORKER), str(saved_pretraining_dir), str(output)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    remote = np.load(output)
    names = list(remote["class_names"])
    assert [name.rsplit(".", 1)[-1] for name in names] == [
        "DBetaConfig", "DBetaProcessor", "DBetaECGFeatureExtractor", "DBetaModel", "DBetaForPreTraining",
        "DBetaForECGClassification"]
    assert all(name.startswith("transformers_modules.") for name in names), names

    processor = DBetaProcessor.from_pretrained(saved_pretraining_dir)
    model = DBetaModel.from_pretrained(saved_pretraining_dir).eval()
    rng = np.random.default_rng(0)
    inputs = processor(ecg=rng.standard_normal((2, 12, 5000)).astype(np.float32), sampling_rate=500,
                       text=["Sinus rhythm. Normal ECG", "*** Atrial fibrillation ***"])
    np.testing.assert_array_equal(remote["ecg_values"], inputs["ecg_values"].numpy())
    np.testing.assert_array_equal(remote["input_ids"], inputs["input_ids"].numpy())
    with torch.no_grad():
        ecg = model.get_ecg_features(inputs["ecg_values"]).numpy()
        text = model.get_text_features(inputs["input_ids"], inputs["attention_mask"]).numpy()
    np.testing.assert_allclose(remote["ecg_features"], ecg, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(remote["text_features"], text, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(remote["ecg_features_pretraining"], ecg, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(remote["classifier_pooled"], ecg, rtol=1e-5, atol=1e-6)
