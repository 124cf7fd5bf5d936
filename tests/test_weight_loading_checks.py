"""from_pretrained never leaves backbone weights random and refuses non-finite weights (tiny configs, CPU)."""

from __future__ import annotations

import logging

import pytest
import torch
from safetensors.torch import load_file, save_file

from dbeta_hf import DBetaECGModel, DBetaForECGClassification, DBetaForPreTraining, DBetaModel
from dbeta_hf.pretraining.recipes import tiny_config


@pytest.fixture(scope="module")
def pretraining_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("dbeta-pretraining")
    torch.manual_seed(0)
    DBetaForPreTraining(tiny_config()).save_pretrained(path)
    return path


def edited_copy(source, target, edit):
    import shutil

    shutil.copytree(source, target)
    weights = load_file(target / "model.safetensors")
    edit(weights)
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})
    return target


def test_missing_backbone_weight_is_an_error(pretraining_dir, tmp_path):
    key = "model.ecg_encoder.encoder.layers.0.fc1.weight"
    broken = edited_copy(pretraining_dir, tmp_path / "broken", lambda w: w.pop(key))
    with pytest.raises(ValueError, match=r"lacks .* 1 backbone weight\(s\): model\.ecg_encoder\.encoder\.layers\.0\.fc1\.weight"):
        DBetaForPreTraining.from_pretrained(broken)
    with pytest.raises(ValueError, match=r"ecg_encoder\.encoder\.layers\.0\.fc1\.weight"):
        DBetaModel.from_pretrained(broken)
    with pytest.raises(ValueError, match=r"backbone weight"):
        DBetaForECGClassification.from_pretrained(broken, num_labels=2)


def test_ecg_only_checkpoint_into_a_model_with_a_text_tower_is_an_error(tmp_path):
    DBetaECGModel(tiny_config()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"backbone weight\(s\): ecg_fusion_layers\.0\..* and \d+ more"):
        DBetaModel.from_pretrained(tmp_path)


def test_new_heads_stay_allowed_and_are_named(pretraining_dir, caplog):
    with caplog.at_level(logging.INFO, logger="dbeta_hf"):
        classifier, info = DBetaForECGClassification.from_pretrained(pretraining_dir, num_labels=3,
                                                                     output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["classifier.bias", "classifier.weight"]
    lines = [r.getMessage() for r in caplog.records if "new head weights" in r.getMessage()]
    assert lines == ["DBetaForECGClassification: new head weights, randomly initialised, to be trained: "
                     "classifier.bias, classifier.weight"]
    reference = DBetaForPreTraining.from_pretrained(pretraining_dir)
    torch.testing.assert_close(classifier.model.ecg_encoder.class_embedding, reference.model.ecg_encoder.class_embedding)


def test_non_finite_weight_is_an_error_naming_it(pretraining_dir, tmp_path):
    key = "model.ecg_projection.weight"

    def poison(weights):
        weights[key] = weights[key].clone()
        weights[key][0, 0] = float("nan")
        weights[key][1, 1] = float("inf")

    broken = edited_copy(pretraining_dir, tmp_path / "nan", poison)
    with pytest.raises(ValueError, match=rf"loaded weight {key} holds 2 NaN or infinite value"):
        DBetaForPreTraining.from_pretrained(broken)
