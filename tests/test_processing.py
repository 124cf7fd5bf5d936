"""Tests of DBetaProcessor: text normalization, both modalities, save/load, Auto classes, and the tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoProcessor

from dbeta_hf import DBetaConfig, DBetaECGFeatureExtractor, DBetaProcessor, normalize_report
from dbeta_hf.processing_dbeta import MAX_TEXT_LENGTH

REPORT = "*** Sinus rhythm  Normal EKG ***"
PROMPTS = ["Atrial fibrillation", "sinus rhythm. normal ecg", "Left bundle branch block with a much longer description"]


@pytest.fixture
def processor(tiny_tokenizer_path):
    return DBetaProcessor.from_tokenizer(tiny_tokenizer_path)


def random_ecgs(batch: int = 2, num_samples: int = 5000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=0.3, size=(batch, 12, num_samples))


def test_ecg_and_text_outputs(processor, tiny_tokenizer):
    out = processor(ecg=random_ecgs(), text=[REPORT, PROMPTS[0]], sampling_rate=500)
    assert set(out) == {"ecg_values", "lead_mask", "input_ids", "attention_mask"}
    assert out["ecg_values"].shape == (2, 12, 5000) and out["ecg_values"].dtype == torch.float32
    assert out["lead_mask"].dtype == torch.bool and out["lead_mask"].all()

    expected = tiny_tokenizer(
        [normalize_report(REPORT), normalize_report(PROMPTS[0])], padding=True, truncation=True, max_length=MAX_TEXT_LENGTH,
        return_tensors="pt",
    )
    torch.testing.assert_close(out["input_ids"], expected["input_ids"])
    torch.testing.assert_close(out["attention_mask"], expected["attention_mask"])
    assert processor.batch_decode(out["input_ids"], skip_special_tokens=True)[0] == "sinus rhythm normal ecg"
    assert (out["input_ids"][:, 0] != tiny_tokenizer.pad_token_id).all()
    assert out["input_ids"][1, out["attention_mask"][1].sum() - 1] == tiny_tokenizer.eos_token_id


def test_single_modality_and_options(processor):
    text_only = processor(text="Sinus rhythm")
    assert set(text_only) == {"input_ids", "attention_mask"} and text_only["input_ids"].shape[0] == 1
    ecg_only = processor(ecg=random_ecgs(1)[0, :1], sampling_rate=250, lead_names=["II"], return_tensors="np",
                         return_num_padded_samples=True)
    assert set(ecg_only) == {"ecg_values", "lead_mask", "num_padded_samples"}
    assert isinstance(ecg_only["ecg_values"], np.ndarray) and ecg_only["ecg_values"].shape == (1, 12, 5000)
    assert ecg_only["lead_mask"][0].tolist() == [i == 1 for i in range(12)]
    assert ecg_only["num_padded_samples"].tolist() == [0]  # 5000 samples at 250 Hz -> 10000, cropped

    truncated = processor(text=PROMPTS, max_length=5)
    assert truncated["input_ids"].shape == (3, 5)
    unpadded = processor(text=PROMPTS, padding=False, return_tensors=None)
    assert len({len(ids) for ids in unpadded["input_ids"]}) == 3


def test_text_normalization_can_be_turned_off(tiny_tokenizer_path, tiny_tokenizer):
    raw = DBetaProcessor.from_tokenizer(tiny_tokenizer_path, normalize_text=False)
    out = raw(text=REPORT)
    torch.testing.assert_close(out["input_ids"], tiny_tokenizer(REPORT, return_tensors="pt")["input_ids"])


def test_bad_processor_input(processor):
    with pytest.raises(ValueError, match="needs `ecg`, `text` or both"):
        processor()
    with pytest.raises(ValueError, match="`sampling_rate` is required"):
        processor(ecg=random_ecgs(1), text="sinus rhythm")
    with pytest.raises(ValueError, match="given without `ecg`"):
        processor(text="sinus rhythm", sampling_rate=500)
    with pytest.raises(TypeError, match="`text` must be a string or a list of strings"):
        processor(text=[1, 2])
    with pytest.raises(ValueError, match=r"Unknown ECG lead name 'X'"):
        processor(ecg=random_ecgs(1)[0, :2], sampling_rate=500, lead_names=["I", "X"])
    with pytest.raises(TypeError, match="must be a DBetaECGFeatureExtractor"):
        DBetaProcessor(feature_extractor=object(), tokenizer=processor.tokenizer)
    with pytest.raises(ValueError, match="from_tokenizer"):
        DBetaProcessor(DBetaECGFeatureExtractor())


def test_from_tokenizer_passes_feature_extractor_settings(tiny_tokenizer_path, tiny_tokenizer):
    processor = DBetaProcessor.from_tokenizer(tiny_tokenizer_path, crop="center", num_samples=2500)
    assert processor.feature_extractor.crop == "center" and processor.feature_extractor.num_samples == 2500
    assert DBetaProcessor.from_tokenizer(tiny_tokenizer).tokenizer is tiny_tokenizer
    assert DBetaProcessor.from_tokenizer.__defaults__[0] == "google/flan-t5-base"


@pytest.mark.parametrize("with_model_config", [False, True])
def test_save_and_load_round_trip(tmp_path, tiny_tokenizer_path, with_model_config):
    processor = DBetaProcessor.from_tokenizer(
        tiny_tokenizer_path, normalize_text=False, crop="center", non_finite="interpolate"
    )
    processor.save_pretrained(tmp_path)
    if with_model_config:
        DBetaConfig().save_pretrained(tmp_path)
        assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "dbeta"
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved["processor_class"] == "DBetaProcessor" and saved["normalize_text"] is False
    assert saved["feature_extractor"]["crop"] == "center" and saved["feature_extractor"]["num_samples"] == 5000

    for loaded in (DBetaProcessor.from_pretrained(tmp_path), AutoProcessor.from_pretrained(tmp_path)):
        assert isinstance(loaded, DBetaProcessor)
        assert isinstance(loaded.feature_extractor, DBetaECGFeatureExtractor)
        assert loaded.feature_extractor.to_dict() == processor.feature_extractor.to_dict()
        assert loaded.normalize_text is False
        assert loaded.tokenizer(PROMPTS)["input_ids"] == processor.tokenizer(PROMPTS)["input_ids"]
        ecg = random_ecgs(1)
        np.testing.assert_array_equal(
            loaded(ecg=ecg, sampling_rate=500, return_tensors="np")["ecg_values"],
            processor(ecg=ecg, sampling_rate=500, return_tensors="np")["ecg_values"],
        )
    feature_extractor = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(feature_extractor, DBetaECGFeatureExtractor) and feature_extractor.crop == "center"


def test_feature_extractor_alone_loads_with_auto_class(tmp_path):
    DBetaECGFeatureExtractor(num_samples=2500).save_pretrained(tmp_path)
    DBetaConfig().save_pretrained(tmp_path)
    loaded = AutoFeatureExtractor.from_pretrained(tmp_path)
    assert isinstance(loaded, DBetaECGFeatureExtractor) and loaded.num_samples == 2500


def test_end_to_end_with_tiny_model(processor, tiny_tokenizer):
    from dbeta_hf.modeling_dbeta import DBetaModel
    from dbeta_hf.pretraining.recipes import tiny_config

    torch.manual_seed(0)
    model = DBetaModel(tiny_config(vocab_size=len(tiny_tokenizer))).eval()
    mimic_order = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
    ecgs = [random_ecgs(1, 4096, seed=1)[0], random_ecgs(1, 5000, seed=2)[0][:, ::2]]  # CODE-15 400 Hz, 250 Hz
    ecg_inputs = processor(ecg=ecgs, sampling_rate=[400, 250], lead_names=[None, mimic_order])
    text_inputs = processor(text=PROMPTS)

    with torch.no_grad():
        ecg_features = model.get_ecg_features(ecg_inputs["ecg_values"])
        text_features = model.get_text_features(text_inputs["input_ids"], text_inputs["attention_mask"])
        # text features do not depend on the padding of the other texts in the batch
        alone = model.get_text_features(**processor(text=PROMPTS[0]))
        both = processor(ecg=ecgs, sampling_rate=[400, 250], lead_names=[None, mimic_order], text=PROMPTS[:2])
        fused = model(**both)
    hidden = model.config.hidden_dim
    assert ecg_features.shape == (2, hidden) and text_features.shape == (3, hidden)
    assert torch.isfinite(ecg_features).all() and torch.isfinite(text_features).all()
    torch.testing.assert_close(alone[0], text_features[0], atol=1e-5, rtol=1e-5)
    scores = ecg_features @ text_features.T
    assert scores.shape == (2, 3)
    torch.testing.assert_close(fused.ecg_embeds, ecg_features, atol=1e-5, rtol=1e-5)
