"""Complete prompt sets (the official ``{label: description}`` format): aliases, full coverage or an error, and the
record of which prompts a run used."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from helpers import load_example

from dbeta_hf.evaluation.class_aliases import CLASS_CODE_ALIASES, equivalent_class_codes
from dbeta_hf.evaluation.prompts import (
    MissingClassDescriptionError,
    load_prompt_set,
    prompt_set_descriptions,
    task_class_names,
)

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

# Keyed the way the official notebook scores CODE-15 (texts are ours).
OFFICIAL_STYLE = {
    "1AVB": "First degree AV block. A long PR interval.",
    "RBBB": "Right bundle branch block. A wide QRS with rsr' in V1.",
    "LBBB": "Left bundle branch block. A wide QRS with broad R in V6.",
    "SBRAD": "Sinus bradycardia. Sinus rhythm below 60 per minute.",
    "AFIB": "Atrial fibrillation. An irregular rhythm without P waves.",
    "STACH": "Sinus tachycardia. Sinus rhythm above 100 per minute.",
}
SYNTHETIC_PROMPTS = {
    "SBRAD": "slow sinus rhythm.", "SR": "sinus rhythm.", "STACH": "fast sinus rhythm.",
    "AFIB": "atrial fibrillation.", "1AVB": "long pr interval.", "BBB": "bundle branch block.",
}


def test_code15_classes_are_found_under_the_official_names(tmp_path):
    path = tmp_path / "official_style.json"
    path.write_text(json.dumps(OFFICIAL_STYLE))
    prompts = load_prompt_set(path)
    assert prompts["name"] == str(path)
    assert prompts["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    texts = prompt_set_descriptions(task_class_names("code15"), prompts, task="code15")
    # 1dAVb->1AVB, SB->SBRAD, AF->AFIB, ST->STACH; lower-cased as officially
    assert texts == [OFFICIAL_STYLE[k].lower() for k in ("1AVB", "RBBB", "LBBB", "SBRAD", "AFIB", "STACH")]
    # the other direction: the official label names looked up in a file keyed by CODE-15's columns
    ours = {"1dAVb": "a.", "SB": "b.", "AF": "c.", "ST": "d."}
    assert prompt_set_descriptions(["1AVB", "SBRAD", "AFIB", "STACH"], load_prompt_set(ours), task="code15") == [
        "a.", "b.", "c.", "d."
    ]


def test_aliases_depend_on_the_task():
    prompts = load_prompt_set({"AFLT": "atrial flutter.", "AFIB": "atrial fibrillation."})
    assert prompt_set_descriptions(["AF"], prompts, task="csn") == ["atrial flutter."]
    assert prompt_set_descriptions(["AF"], prompts, task="code15") == ["atrial fibrillation."]
    with pytest.raises(MissingClassDescriptionError, match="AF"):
        prompt_set_descriptions(["AF"], prompts)  # without a task no alias is safe
    cross = load_prompt_set({"PVC": "v.", "RBBB": "r.", "CLBBB": "l.", "APB": "a."})
    assert prompt_set_descriptions(["VPC", "CRBBB", "PAC"], cross, task="cpsc2018") == ["v.", "r.", "a."]
    assert prompt_set_descriptions(["VPB", "LBBB", "APB"], cross, task="csn") == ["v.", "l.", "a."]


def test_exact_key_beats_an_alias_for_every_class(tmp_path):
    both = load_prompt_set({**OFFICIAL_STYLE, "AF": "Atrial flutter. Saw-tooth waves.", "1dAVb": "Long PR."})
    texts = prompt_set_descriptions(["1dAVb", "AF", "SB"], both, task="code15")
    assert texts == ["long pr.", "atrial flutter. saw-tooth waves.", OFFICIAL_STYLE["SBRAD"].lower()]
    assert prompt_set_descriptions(["AFIB", "1AVB"], both, task="code15") == [
        OFFICIAL_STYLE["AFIB"].lower(), OFFICIAL_STYLE["1AVB"].lower()
    ]


def test_two_other_keys_for_one_class_are_an_error_naming_both(tmp_path):
    from dbeta_hf.evaluation.prompts import AmbiguousClassDescriptionError, class_descriptions

    prompts = load_prompt_set({"PVC": "premature ventricular complex.", "VPB": "ventricular premature beat."})
    with pytest.raises(AmbiguousClassDescriptionError, match=r"'PVC', 'VPB'.*'VPC'.*cpsc2018") as info:
        prompt_set_descriptions(["VPC"], prompts, task="cpsc2018")
    assert info.value.keys == ["PVC", "VPB"] and info.value.class_name == "VPC"
    assert prompt_set_descriptions(["VPC"], load_prompt_set({"VPB": "v.", "VPC": "own."}), task="cpsc2018") == ["own."]
    spellings = load_prompt_set({"isc_": "ischemic st. a.", "Isc": "ischemic st. b."})
    with pytest.raises(AmbiguousClassDescriptionError, match="'isc_', 'Isc'"):
        prompt_set_descriptions(["ISC"], spellings)
    assert prompt_set_descriptions(["Isc"], spellings) == ["ischemic st. b."]
    with pytest.raises(AmbiguousClassDescriptionError, match="'sr', 'SR_'"):
        class_descriptions(["Sr"], overrides={"sr": "a.", "SR_": "b."})


def test_duplicate_json_keys_are_an_error_naming_key_and_file(tmp_path):
    from dbeta_hf.evaluation.prompts import class_descriptions

    flat = tmp_path / "flat.json"
    flat.write_text('{"SR": "sinus rhythm.", "AFIB": "af.", "SR": "another text."}')
    with pytest.raises(ValueError, match=rf"{flat}: the key 'SR' appears twice"):
        load_prompt_set(flat)
    with pytest.raises(ValueError, match="'SR' appears twice"):
        class_descriptions(["AFIB"], overrides=flat)
    nested = tmp_path / "nested.json"
    nested.write_text('{"descriptions": {"X": "x."}, "task_overrides": {"csn": {"AF": "a.", "AF": "b."}}}')
    with pytest.raises(ValueError, match=rf"{nested}: the key 'AF' appears twice"):
        load_prompt_set(nested)


def test_alias_table_is_symmetric_and_names_real_classes():
    for a, b in [("1dAVb", "1AVB"), ("SB", "SBRAD"), ("AF", "AFIB"), ("ST", "STACH")]:
        assert b in equivalent_class_codes(a, "code15") and a in equivalent_class_codes(b, "code15")
    for task, groups in CLASS_CODE_ALIASES.items():
        classes = set(task_class_names(task))
        for group in groups:
            assert len(set(group)) == len(group) > 1
            assert len(classes & set(group)) == 1, (task, group)  # one class of the task per group
    assert equivalent_class_codes("NORM", "ptbxl_super") == ("NORM",)


def test_uncovered_classes_are_listed_and_nothing_falls_back(tmp_path):
    prompts = load_prompt_set({"RBBB": "right bundle branch block.", "1AVB": "first degree av block."})
    with pytest.raises(MissingClassDescriptionError) as info:
        prompt_set_descriptions(task_class_names("code15"), prompts, task="code15")
    assert info.value.missing == ["LBBB", "SB", "AF", "ST"]
    message = str(info.value)
    assert "4 of the 6 classes" in message and "SB (looked for SB / SBRAD)" in message
    assert "built-in" in message
    with pytest.raises(FileNotFoundError, match="prompt file not found"):
        load_prompt_set(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="must be a string or a list of strings"):
        load_prompt_set({"SR": 3})
    with pytest.raises(ValueError, match="no description"):
        load_prompt_set({})


def test_classifier_and_pipeline_use_only_the_prompt_set(saved_model_dir, tmp_path):
    from transformers import pipeline

    from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier
    from dbeta_hf.pipelines import register_pipelines

    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(SYNTHETIC_PROMPTS))
    classifier = DBetaZeroShotClassifier.from_pretrained(saved_model_dir, descriptions=str(path))
    assert classifier.describe(["SR", "BBB"]) == ["sinus rhythm.", "bundle branch block."]
    assert classifier.prompt_set_info == {"name": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    with pytest.raises(MissingClassDescriptionError, match="RBBB"):
        classifier.describe(["SR", "RBBB"])  # RBBB has a built-in text, but the prompt set does not cover it
    assert DBetaZeroShotClassifier.from_pretrained(saved_model_dir).prompt_set_info["name"].startswith("dbeta_hf built-in")

    register_pipelines()
    pipe = pipeline("zero-shot-ecg-classification", model=str(saved_model_dir), device="cpu")
    ecg = np.random.default_rng(0).normal(size=(12, 5000)).astype(np.float32)
    out = pipe(ecg, candidate_labels=["SR", "BBB"], sampling_rate=500, descriptions=str(path))
    expected = classifier.scores(ecg, ["SR", "BBB"], sampling_rate=500)[0].numpy()
    got = {d["label"]: d["score"] for d in out}
    np.testing.assert_allclose([got["SR"], got["BBB"]], expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(MissingClassDescriptionError, match="RBBB"):
        pipe(ecg, candidate_labels=["SR", "RBBB"], sampling_rate=500, descriptions=str(path))


def test_one_description_look_up_and_one_scorer(saved_model_dir, tmp_path):
    """`describe_classes` is the look-up of the classifier and the pipeline; the pipeline scores with its
    `DBetaZeroShotClassifier`, so both give the same numbers and share the description-embedding cache."""
    from transformers import pipeline

    from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier
    from dbeta_hf.pipelines import register_pipelines
    from dbeta_hf.evaluation.prompts import BUILTIN_PROMPT_SET, class_descriptions, describe_classes, prompt_set_record

    prompt_set = load_prompt_set(SYNTHETIC_PROMPTS)
    assert describe_classes(["SR", "BBB"], prompt_set=prompt_set) == ["sinus rhythm.", "bundle branch block."]
    assert describe_classes("SR", task="synthetic") == class_descriptions(["SR"], task="synthetic")
    with pytest.raises(MissingClassDescriptionError, match=r"descriptions=\{"):
        describe_classes(["NOT_A_CLASS"])
    assert prompt_set_record(None) == BUILTIN_PROMPT_SET
    assert prompt_set_record(prompt_set) == {"name": prompt_set["name"], "sha256": prompt_set["sha256"]}

    register_pipelines()
    pipe = pipeline("zero-shot-ecg-classification", model=str(saved_model_dir), device="cpu")
    assert isinstance(pipe.zero_shot, DBetaZeroShotClassifier) and pipe.zero_shot.model is pipe.model
    ecg = np.random.default_rng(2).normal(size=(12, 5000)).astype(np.float32)
    out = pipe(ecg, candidate_labels=["SR", "BBB"], sampling_rate=500, description_task="synthetic")
    expected = pipe.zero_shot.scores(ecg, ["SR", "BBB"], task="synthetic", sampling_rate=500)[0].tolist()
    assert [d["score"] for d in sorted(out, key=lambda d: d["label"] != "SR")] == expected


def test_zero_shot_example_records_the_prompt_set(saved_model_dir, tmp_path):
    example = load_example("zero_shot")
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps(SYNTHETIC_PROMPTS))
    out_dir = tmp_path / "zs"
    common = ["--model_name_or_path", str(saved_model_dir), "--synthetic_records", "40", "--num_bootstrap", "20",
              "--no_progress", "--output_dir", str(out_dir)]
    results = example.main(common + ["--descriptions", str(path)])
    saved = json.loads((out_dir / "zero_shot_results.json").read_text())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert saved["prompt_set"] == {"name": str(path), "sha256": digest} == results["prompt_set"]
    assert saved["tasks"]["synthetic"]["prompt_set"]["sha256"] == digest
    assert saved["tasks"]["synthetic"]["descriptions"]["BBB"] == "bundle branch block."
    assert f"Prompts: {path} (sha256 {digest[:12]})" in (out_dir / "zero_shot_results.md").read_text()

    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"SR": "sinus rhythm."}))
    with pytest.raises(MissingClassDescriptionError, match="SBRAD.*STACH.*AFIB.*1AVB.*BBB"):
        example.main(common + ["--descriptions", str(partial)])


def test_alias_module_docstring_examples_hold():
    import doctest

    import dbeta_hf.evaluation.class_aliases as module

    result = doctest.testmod(module)
    assert result.attempted >= 3 and result.failed == 0
