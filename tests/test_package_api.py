"""What `import dbeta_hf` offers: every public name, and files written with the usual permissions."""

from __future__ import annotations

import importlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dbeta_hf

REPO = Path(__file__).resolve().parents[1]
# name -> the module that defines it
PUBLIC = {
    "DBetaZeroShotClassifier": "dbeta_hf.evaluation.zero_shot",
    "DBetaPreTrainer": "dbeta_hf.pretraining.trainer",
    "DBetaPreTrainingCollator": "dbeta_hf.pretraining.collator",
    "DBetaCollatorEpochCallback": "dbeta_hf.pretraining.collator",
    "N3SIndex": "dbeta_hf.pretraining.n3s",
    "build_n3s_index": "dbeta_hf.pretraining.n3s",
    "LinearProbe": "dbeta_hf.evaluation.linear_probe",
    "ECGClassificationCollator": "dbeta_hf.evaluation.finetune",
    "ZeroShotECGClassificationPipeline": "dbeta_hf.pipelines",
    "DBetaECGFeatureExtractor": "dbeta_hf.feature_extraction_dbeta",
    "DBetaProcessor": "dbeta_hf.processing_dbeta",
    "DBetaForECGClassification": "dbeta_hf.modeling_dbeta",
}


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_public_classes_import_from_the_package(name):
    namespace: dict = {}
    exec(f"from dbeta_hf import {name}", namespace)
    assert namespace[name] is getattr(importlib.import_module(PUBLIC[name]), name)
    assert name in dbeta_hf.__all__ and name in dir(dbeta_hf)


def test_every_name_in_all_resolves():
    for name in dbeta_hf.__all__:
        assert getattr(dbeta_hf, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'NotAThing'"):
        dbeta_hf.NotAThing  # noqa: B018


HEAVY_MODULES = ("torch", "transformers.modeling_utils", "transformers.processing_utils", "dbeta_hf.modeling_dbeta",
                 "evaluate", "datasets", "sklearn")
# run in a fresh interpreter: what `import dbeta_hf` loads, and what the Auto classes know before and after the first
# name is taken from the package
FRESH_IMPORT_PROBE = """
import json, sys
import dbeta_hf
loaded = [m for m in %r if m in sys.modules]
from transformers import AutoConfig, AutoModel, AutoProcessor
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.pipelines import PIPELINE_REGISTRY
before = "dbeta" in CONFIG_MAPPING
name = sys.argv[1]
if name == "register_auto_classes":
    dbeta_hf.register_auto_classes()
    dbeta_hf.register_auto_classes()  # idempotent
else:
    getattr(dbeta_hf, name)
from dbeta_hf.modeling_dbeta import DBetaModel, DBetaPreTrainedModel
from dbeta_hf.hub.model_card import refresh_model_card
print("PROBE " + json.dumps({
    "loaded": loaded, "before": before, "config": CONFIG_MAPPING["dbeta"].__name__,
    "model": AutoModel._model_mapping[CONFIG_MAPPING["dbeta"]].__name__,
    "pipeline": "zero-shot-ecg-classification" in PIPELINE_REGISTRY.get_supported_tasks(),
    "card_hooks": DBetaPreTrainedModel.save_hooks.count(refresh_model_card)}))
""" % (HEAVY_MODULES,)


@pytest.mark.parametrize("name", ["register_auto_classes", "DBetaModel", "normalize_report"])
def test_import_is_light_and_the_first_name_taken_registers_the_auto_classes(name):
    env = dict(os.environ, HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, "-c", FRESH_IMPORT_PROBE, name], env=env, capture_output=True, text=True,
                            timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    probe = json.loads(lines[-1][len("PROBE "):])
    assert probe["loaded"] == [], f"`import dbeta_hf` loaded {probe['loaded']}"
    assert probe["before"] is False  # nothing registered by the bare import
    assert probe["config"] == "DBetaConfig" and probe["model"] == "DBetaModel"
    assert probe["pipeline"] is True and probe["card_hooks"] == 1


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_weights_n3s_index_and_feature_caches_get_the_mode_of_other_files(tmp_path, tiny_tokenizer_path):
    from dbeta_hf import DBetaModel, DBetaProcessor, N3SIndex
    from dbeta_hf.evaluation.embeddings import extract_ecg_features
    from dbeta_hf.file_modes import default_file_mode
    from dbeta_hf.pretraining.n3s import build_n3s_index_from_embeddings
    from dbeta_hf.pretraining.recipes import tiny_config

    old_umask = os.umask(0o022)
    try:
        assert default_file_mode() == 0o644
        model = DBetaModel(tiny_config())
        model.save_pretrained(tmp_path / "model")
        DBetaProcessor.from_tokenizer(str(tiny_tokenizer_path)).save_pretrained(tmp_path / "model")
        modes = {p.name: _mode(p) for p in (tmp_path / "model").iterdir()}
        assert modes["model.safetensors"] == 0o644, modes
        assert set(modes.values()) == {0o644}, modes

        reports = ["sinus rhythm", "atrial fibrillation", "sinus bradycardia", "normal ecg"]
        index = build_n3s_index_from_embeddings(reports, torch.randn(4, 8), k=2, progress=False)
        assert isinstance(index, N3SIndex)
        index.save_pretrained(tmp_path / "n3s")
        assert {_mode(p) for p in (tmp_path / "n3s").iterdir()} == {0o644}

        ecgs = np.random.default_rng(0).normal(size=(3, 12, 5000)).astype(np.float32)
        extract_ecg_features(model, ecgs, batch_size=2, cache_dir=tmp_path / "cache", cache_name="t", progress=False)
        cached = list((tmp_path / "cache").glob("*.safetensors"))
        assert len(cached) == 1 and _mode(cached[0]) == 0o644
    finally:
        os.umask(old_umask)
