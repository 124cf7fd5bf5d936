"""dbeta_hf.hub.model_card: the card's YAML metadata parses and carries the measured numbers and the input contract."""

from __future__ import annotations

import pytest
import yaml

from dbeta_hf import DBetaECGFeatureExtractor
from dbeta_hf.hub.model_card import build_model_card, eval_result, results_from_summary, write_model_card


def _metadata(card) -> dict:
    text = str(card)
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_card_metadata_carries_the_measured_results(tmp_path):
    zero_shot = {"tasks": {"ptbxl_super": {"macro_auroc": 0.7123}, "cpsc2018": {"macro_auroc": 0.6541}}}
    results = results_from_summary("zero-shot", zero_shot) + [eval_result("linear-probe", "ptbxl_super", 0.8011),
                                                               eval_result("fine-tune", "ptbxl_super", 0.9002)]
    extractor = DBetaECGFeatureExtractor(sampling_rate=400, num_samples=4096)
    path = write_model_card(tmp_path, "ORG/dbeta-test", feature_extractor=extractor, results=results,
                            base_model="google/flan-t5-base", datasets="physionet/mimic-iv-ecg", license="mit",
                            training_settings={"steps": 1234})
    meta = yaml.safe_load(path.read_text().split("---\n", 2)[1])
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "feature-extraction"
    assert meta["license"] == "mit" and meta["base_model"] == "google/flan-t5-base"
    assert meta["datasets"] == ["physionet/mimic-iv-ecg"]
    [index] = meta["model-index"]
    assert index["name"] == "dbeta-test"
    measured = {(r["task"]["name"], r["dataset"]["type"]): r["metrics"][0]["value"] for r in index["results"]}
    assert measured == {
        ("Zero-shot ECG classification", "ptbxl_super"): 0.7123,
        ("Zero-shot ECG classification", "cpsc2018"): 0.6541,
        ("Linear probe", "ptbxl_super"): 0.8011,
        ("Fine-tuned ECG classification", "ptbxl_super"): 0.9002,
    }
    text = path.read_text()
    # the input contract comes from the feature extractor; the settings and results are in the readable text too
    assert "**400 Hz**" in text and "**10.24 s = 4096 samples**" in text
    assert "I, II, III, aVR, aVL, aVF, V1, V2, V3, V4, V5, V6" in text and "**millivolts**" in text
    assert "| steps | 1234 |" in text and "| 0.9002 |" in text
    assert "Not a medical device" in text and "@inproceedings{dbeta2025" in text
    assert "{{" not in text.split("-->", 1)[1]  # every template field was filled


def test_converted_weights_are_cc_by_nc_whatever_is_given():
    meta = _metadata(build_model_card("ORG/dbeta-base", license="mit", converted_from_official=True))
    assert meta["license"] == "cc-by-nc-4.0" and "model-index" not in meta


def test_unknown_evaluation_kind_and_missing_template_are_errors(tmp_path):
    with pytest.raises(ValueError, match="zero-shot"):
        eval_result("zeroshot", "ptbxl_super", 0.7)
    with pytest.raises(FileNotFoundError, match="template"):
        build_model_card("ORG/x", template_path=tmp_path / "missing.md")
