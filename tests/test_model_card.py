"""dbeta_hf.hub.model_card: the card's YAML metadata parses and carries the measured numbers and the input contract;
what a card says about its folder (base model, loading example, path) is true for that folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard

from dbeta_hf import DBetaECGFeatureExtractor, DBetaForECGClassification, DBetaProcessor
from dbeta_hf.configuration_dbeta import FLAN_T5_BASE_TEXT_CONFIG
from dbeta_hf.conversion.convert_original_checkpoint import main as convert_main
from dbeta_hf.hub.model_card import (
    FLAN_T5_BASE,
    SavedFolder,
    build_model_card,
    checked_base_model,
    eval_result,
    inspect_folder,
    refresh_model_card,
    results_from_file,
    results_from_finetune,
    results_from_linear_probe,
    results_from_pretraining_report,
    results_from_retrieval,
    results_from_summary,
    results_from_zero_shot,
    write_model_card,
)
from dbeta_hf.pretraining.recipes import tiny_config

PARITY = Path(__file__).parent / "fixtures" / "parity_tiny"


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
        ("Linear probe on frozen ECG features", "ptbxl_super"): 0.8011,
        ("Fine-tuned ECG classification", "ptbxl_super"): 0.9002,
    }
    text = path.read_text()
    # the input contract comes from the feature extractor; the settings and results are in the readable text too
    assert "**400 Hz**" in text and "**10.24 s = 4096 samples**" in text
    assert "I, II, III, aVR, aVL, aVF, V1, V2, V3, V4, V5, V6" in text and "**millivolts**" in text
    assert "| steps | 1234 |" in text and "| 0.9002 |" in text
    assert "Not a medical device" in text and "@inproceedings{dbeta2025" in text
    assert "{{" not in text and "{#" not in text and "<!--" not in text  # every field filled, no template comment
    assert "this comment is not rendered" not in text and "template" not in text.lower()


def test_converted_weights_are_cc_by_nc_whatever_is_given():
    meta = _metadata(build_model_card("ORG/dbeta-base", license="mit", converted_from_official=True))
    assert meta["license"] == "cc-by-nc-4.0" and "model-index" not in meta


def test_unknown_evaluation_kind_and_missing_template_are_errors(tmp_path):
    with pytest.raises(ValueError, match="zero-shot"):
        eval_result("zeroshot", "ptbxl_super", 0.7)
    with pytest.raises(FileNotFoundError, match="template"):
        build_model_card("ORG/x", template_path=tmp_path / "missing.md")


# ------------------------------------------------------------------------------------------------ true for the folder
def _loading_code(card_path: Path) -> str:
    [code] = re.findall(r"```python\n(.*?)```", card_path.read_text(), flags=re.S)
    return code


def _run_card_code(code: str, cwd: Path, check: str) -> str:
    """Run a card's loading example as a user would: a fresh interpreter in `cwd`, offline, without dbeta_hf on the
    path unless the example imports it (remote-code folders must load from their own files)."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    if "dbeta_hf" in code:
        env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    result = subprocess.run([sys.executable, "-c", code + "\n" + check], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"the card's loading example failed:\n{code}\n{result.stderr[-3000:]}"
    return result.stdout


def _convert(out: str, *extra: str) -> None:
    code = convert_main(["--checkpoint", str(PARITY / "checkpoint.pt"), "--original-config", str(PARITY / "config.json"),
                         "--text-config", str(PARITY / "text_config.json"), "--output-dir", out,
                         "--lead-order", "standard", "--input-normalization", "none", *extra])
    assert code == 0


def test_converted_tiny_checkpoint_card_is_true_for_its_folder(tmp_path, monkeypatch):
    """The converter's folder without a tokenizer: no Flan-T5-base base model (the tiny text tower is not one), no
    AutoProcessor line (nothing to load it from), the folder named by the path the user gave; the example runs."""
    monkeypatch.chdir(tmp_path)
    _convert("converted")
    card = Path("converted") / "README.md"
    meta = yaml.safe_load(card.read_text().split("---\n", 2)[1])
    assert "base_model" not in meta and meta["license"] == "cc-by-nc-4.0"
    code = _loading_code(card)
    assert "AutoProcessor" not in code and "AutoFeatureExtractor.from_pretrained(\"converted\"" in code
    assert 'AutoModel.from_pretrained("converted", trust_remote_code=True)' in code
    assert "No tokenizer was saved in this folder" in card.read_text()
    out = _run_card_code(code, tmp_path, "import sys; print(tuple(ecg_embeds.shape), 'dbeta_hf' in sys.modules)")
    assert out.split()[-3:] == ["(1,", "64)", "False"]  # loaded from the folder's own code


def test_converted_checkpoint_with_tokenizer_card_loads_the_processor(tmp_path, tiny_tokenizer_path):
    out = tmp_path / "with-tokenizer"
    _convert(str(out), "--tokenizer", str(tiny_tokenizer_path))
    code = _loading_code(out / "README.md")
    assert f'AutoProcessor.from_pretrained("{out}", trust_remote_code=True)' in code and "get_text_features" in code
    assert "No tokenizer was saved" not in (out / "README.md").read_text()
    assert _run_card_code(code, tmp_path, "print(tuple(scores.shape))").split()[-2:] == ["(1,", "1)"]


def test_classification_folder_card_loads_the_classifier_and_keeps_earlier_results(tmp_path):
    torch.manual_seed(0)
    model = DBetaForECGClassification(tiny_config(num_labels=2, problem_type="multi_label_classification",
                                                  id2label={0: "SR", 1: "AFIB"}, label2id={"SR": 0, "AFIB": 1}))
    folder = tmp_path / "model_synthetic"
    model.save_pretrained(folder)
    write_model_card(folder, results=[eval_result("fine-tune", "synthetic", 0.81)])
    assert inspect_folder(folder).processor is None
    assert "No processor was saved with this checkpoint" in (folder / "README.md").read_text()
    DBetaECGFeatureExtractor(sampling_rate=250, num_samples=2500).save_pretrained(folder)  # saved after the model
    write_model_card(folder, results=[eval_result("zero-shot", "synthetic", 0.7)])  # one call, later: an update
    text = (folder / "README.md").read_text()
    code = _loading_code(folder / "README.md")
    assert f'AutoModelForSequenceClassification.from_pretrained("{folder}", trust_remote_code=True)' in code
    assert "AutoFeatureExtractor" in code and "AutoProcessor" not in code and "sampling_rate=250" in code
    assert "**250 Hz**" in text and "No processor was saved" not in text
    assert "classification head (multi-label, sigmoid outputs) over 2 classes: SR, AFIB." in text
    meta = yaml.safe_load(text.split("---\n", 2)[1])
    measured = {(r["task"]["name"], r["metrics"][0]["value"]) for r in meta["model-index"][0]["results"]}
    assert measured == {("Fine-tuned ECG classification", 0.81), ("Zero-shot ECG classification", 0.7)}
    out = _run_card_code(code, tmp_path, "print(sorted(model.config.id2label.values()), len(probabilities))")
    assert "['AFIB', 'SR'] 2" in out


def test_base_model_is_kept_only_when_true_for_the_folder():
    flan_shaped = SavedFolder(text_config=dict(FLAN_T5_BASE_TEXT_CONFIG))
    tiny = SavedFolder(text_config={"d_model": 64, "num_layers": 2, "vocab_size": 1000})
    assert checked_base_model(FLAN_T5_BASE, flan_shaped) == FLAN_T5_BASE
    assert checked_base_model(FLAN_T5_BASE, tiny) is None
    assert checked_base_model("ORG/dbeta-base", tiny) == "ORG/dbeta-base"  # a D-BETA checkpoint it was tuned from
    assert checked_base_model("/data/models/dbeta", None) is None  # a local path is no Hub id
    assert checked_base_model(["./run", "ORG/a", "ORG/b"], None) == ["ORG/a", "ORG/b"]


def test_model_index_takes_every_kind_of_evaluation_with_its_dataset(tmp_path):
    zero_shot = {"split": "test", "tasks": {"ptbxl_super": {"macro_auroc": 0.71}, "csn": {"macro_auroc": float("nan")}},
                 "cross_dataset": {"ptbxl_super->cpsc2018": {"macro_auroc": 0.66}}}
    probe = {"protocol": "validation", "methods": {
        "D-BETA": {"cpsc2018": {"fractions": {"1%": {"macro_auroc_mean": 0.8, "runs": [{}, {}, {}]},
                                               "100%": {"macro_auroc_mean": 0.9, "runs": [{}]}}}},
        "Random init": {"cpsc2018": {"fractions": {"1%": {"macro_auroc_mean": 0.5, "runs": [{}]}}}}}}
    retrieval = {"dataset": "mimic_iv_ecg (validation)", "dataset_key": "mimic_iv_ecg", "split": "validation",
                 "ecg_to_report": {"R@1": 0.1, "R@5": 0.3, "median_rank": 12.0}, "report_to_ecg": {"R@1": 0.2}}
    files = {}
    for name, data in (("zero_shot_results", zero_shot), ("linear_probe_results", probe),
                       ("retrieval_results", retrieval)):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(data))
    results = [r for path in files.values() for r in results_from_file(path)]
    results += results_from_finetune({"macro_auroc": 0.93, "challenge_score": 0.61, "macro_f1": 0.4},
                                     "physionet2021_6lead")
    assert results_from_file(files["zero_shot_results"]) == results_from_zero_shot(zero_shot)
    assert results_from_file(files["retrieval_results"]) == results_from_retrieval(retrieval)
    assert results_from_file(files["linear_probe_results"]) == results_from_linear_probe(probe)
    path = write_model_card(tmp_path / "card", "ORG/dbeta", results=results)
    meta = yaml.safe_load(path.read_text().split("---\n", 2)[1])
    table = {(r["task"]["type"], r["dataset"]["type"], r["dataset"]["name"], r["dataset"]["split"]):
             {m["name"]: m["value"] for m in r["metrics"]} for r in meta["model-index"][0]["results"]}
    assert table == {
        ("zero-shot-classification", "ptbxl_super", "PTB-XL Super", "test"): {"macro AUROC": 0.71},
        ("zero-shot-classification", "cpsc2018", "CPSC2018", "test"): {
            "macro AUROC, classes shared with PTB-XL Super": 0.66},
        ("feature-extraction", "cpsc2018", "CPSC2018", "test"): {
            "macro AUROC, 1% of the training labels (mean of 3 seeds)": 0.8,
            "macro AUROC, 100% of the training labels (mean of 1 seed)": 0.9},  # not the random-init baseline
        ("text-retrieval", "mimic_iv_ecg", "mimic_iv_ecg (validation)", "validation"): {
            "Recall@1, ECG->report": 0.1, "Recall@5, ECG->report": 0.3, "Recall@1, report->ECG": 0.2},
        ("other", "physionet2021_6lead", "PhysioNet 2021 (6 leads)", "test"): {
            "macro AUROC": 0.93, "CinC 2021 challenge score": 0.61, "macro F1": 0.4},
    }
    with pytest.raises(ValueError, match="NaN"):
        eval_result("zero-shot", "csn", float("nan"))
    with pytest.raises(ValueError, match="not a results file"):
        (tmp_path / "other.json").write_text("{}")
        results_from_file(tmp_path / "other.json")


def test_pretraining_report_gives_zero_shot_probe_and_retrieval_entries():
    report = {"zero_shot": {"macro_auroc": 0.7}, "linear_probe": {"macro_auroc": 0.8, "num_train": 128},
              "retrieval": {"ecg_to_report": {"R@1": 0.2, "R@5": 0.5}, "report_to_ecg": {"R@1": 0.25}}}
    results = results_from_pretraining_report(report, "synthetic")
    assert [(r.task_type, r.dataset_type, r.dataset_split, r.metric_name, r.metric_value) for r in results] == [
        ("zero-shot-classification", "synthetic", "heldout", "macro AUROC", 0.7),
        ("feature-extraction", "synthetic", "heldout", "macro AUROC (128 training records)", 0.8),
        ("text-retrieval", "synthetic", "heldout", "Recall@1, ECG->report", 0.2),
        ("text-retrieval", "synthetic", "heldout", "Recall@5, ECG->report", 0.5),
        ("text-retrieval", "synthetic", "heldout", "Recall@1, report->ECG", 0.25),
    ]


def test_card_update_keeps_settings_and_replaces_a_remeasured_number(tmp_path):
    write_model_card(tmp_path, results=[eval_result("zero-shot", "synthetic", 0.6)], license="mit",
                     training_settings={"steps": 10}, converted_from_official=False)
    write_model_card(tmp_path, results=[eval_result("zero-shot", "synthetic", 0.65),
                                        eval_result("zero-shot", "csn", 0.5)])
    card_text = (tmp_path / "README.md").read_text()
    meta = yaml.safe_load(card_text.split("---\n", 2)[1])
    values = {r["dataset"]["type"]: r["metrics"][0]["value"] for r in meta["model-index"][0]["results"]}
    assert values == {"synthetic": 0.65, "csn": 0.5} and meta["license"] == "mit" and "| steps | 10 |" in card_text
    write_model_card(tmp_path, replace=True)
    assert "model-index" not in (tmp_path / "README.md").read_text()


def test_refresh_writes_a_card_only_for_a_folder_holding_a_model(tmp_path, tiny_tokenizer_path):
    """What `save_pretrained` of the model and of the processor call: the processor saved first gets no card (no model
    yet); the model's save writes one; a processor saved after it updates the card's loading example."""
    folder = tmp_path / "run"
    feature_extractor = DBetaECGFeatureExtractor()
    feature_extractor.save_pretrained(folder)
    assert refresh_model_card(folder) is None and not (folder / "README.md").exists()
    torch.manual_seed(0)
    from dbeta_hf import DBetaModel

    DBetaModel(tiny_config()).save_pretrained(folder)
    path = refresh_model_card(folder, results=[eval_result("zero-shot", "synthetic", 0.6)])
    assert "AutoFeatureExtractor" in _loading_code(path) and "AutoProcessor" not in _loading_code(path)
    DBetaProcessor.from_tokenizer(str(tiny_tokenizer_path)).save_pretrained(folder)
    refresh_model_card(folder)
    assert "AutoProcessor.from_pretrained" in _loading_code(path)
    assert [r.metric_value for r in ModelCard.load(path).data.eval_results] == [0.6]
