"""Zero-shot scoring, the zero-shot-ecg-classification pipeline and examples/zero_shot.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import load_example

from dbeta_hf import DBetaModel, DBetaProcessor
from dbeta_hf.pretraining.recipes import tiny_config

NUM_SAMPLES = 1000  # short inputs for the direct scoring tests; the processor path uses the full 5000


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return DBetaModel(tiny_config()).eval()


@pytest.fixture(scope="module")
def processor(tiny_tokenizer_path):
    return DBetaProcessor.from_tokenizer(str(tiny_tokenizer_path))


@pytest.fixture(scope="module")
def saved_model_dir(tmp_path_factory, tiny_model, processor):
    path = tmp_path_factory.mktemp("dbeta-tiny")
    tiny_model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def ecgs():
    return torch.randn(3, 12, NUM_SAMPLES, generator=torch.Generator().manual_seed(1))


DESCRIPTIONS = {
    "AFIB": "atrial fibrillation. irregular and often rapid heart rate.",
    "SR": "sinus rhythm.",
    "BBB": "bundle branch block with a wide qrs complex.",
}


def _hand_scores(model, processor, ecgs, texts, cosine=False):
    """The official notebook flow: each prompt tokenised alone (no padding), dot product by explicit sums."""
    with torch.no_grad():
        ecg = model.get_ecg_features(ecgs)
        rows = []
        for text in texts:
            enc = processor(text=text, return_tensors="pt")
            rows.append(model.get_text_features(enc["input_ids"], enc["attention_mask"])[0])
    out = torch.zeros(ecg.shape[0], len(rows))
    for i in range(ecg.shape[0]):
        for c, t in enumerate(rows):
            e = ecg[i] / ecg[i].norm() if cosine else ecg[i]
            tt = t / t.norm() if cosine else t
            out[i, c] = sum(float(e[h]) * float(tt[h]) for h in range(e.shape[0]))
    return out


def test_scores_equal_hand_computation(tiny_model, processor, ecgs):
    from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier

    classifier = DBetaZeroShotClassifier(tiny_model, processor, descriptions=DESCRIPTIONS)
    names = ["AFIB", "SR", "BBB"]
    texts = [DESCRIPTIONS[n] for n in names]
    expected = _hand_scores(tiny_model, processor, ecgs, texts)

    by_name = classifier.scores(ecgs, names)
    by_text = classifier.scores(ecgs, descriptions=texts)
    assert by_name.shape == (3, 3)
    torch.testing.assert_close(by_name, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(by_text, expected, atol=1e-5, rtol=1e-5)

    cosine = classifier.scores(ecgs, names, similarity="cosine")
    torch.testing.assert_close(cosine, _hand_scores(tiny_model, processor, ecgs, texts, cosine=True), atol=1e-5, rtol=1e-5)
    assert cosine.abs().max() <= 1.0 + 1e-6


def test_scores_are_multi_label(tiny_model, processor, ecgs):
    """Independent per-class scores: no softmax, and a class's score does not depend on the other classes."""
    from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier

    classifier = DBetaZeroShotClassifier(tiny_model, processor, descriptions=DESCRIPTIONS)
    all_three = classifier.scores(ecgs, ["AFIB", "SR", "BBB"])
    afib_alone = classifier.scores(ecgs, ["AFIB"])
    torch.testing.assert_close(afib_alone[:, 0], all_three[:, 0])
    assert not torch.allclose(all_three.sum(dim=1), torch.ones(3))


def test_description_embeddings_cached(tiny_model, processor, ecgs, monkeypatch):
    from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier

    classifier = DBetaZeroShotClassifier(tiny_model, processor, descriptions=DESCRIPTIONS)
    calls = []
    original = tiny_model.get_text_features

    def counting(input_ids, attention_mask=None):
        calls.append(input_ids.shape[0])
        return original(input_ids, attention_mask)

    monkeypatch.setattr(tiny_model, "get_text_features", counting)
    first = classifier.scores(ecgs, ["AFIB", "SR"])
    assert sum(calls) == 2
    second = classifier.scores(ecgs[:1], ["SR", "AFIB", "BBB"])  # only BBB is new
    assert sum(calls) == 3
    torch.testing.assert_close(second[:, :2], first[:1, [1, 0]])


def test_descriptions_from_json_file(tiny_model, processor, ecgs, tmp_path):
    from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier

    path = tmp_path / "descriptions.json"
    path.write_text(json.dumps({"MYCLASS": "my own class description."}))
    classifier = DBetaZeroShotClassifier(tiny_model, processor, descriptions=str(path))
    assert classifier.describe(["MYCLASS"]) == ["my own class description."]
    torch.testing.assert_close(
        classifier.scores(ecgs, ["MYCLASS"]), classifier.scores(ecgs, descriptions=["my own class description."])
    )


def test_bad_input_errors(tiny_model, processor, ecgs):
    from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier, zero_shot_scores

    classifier = DBetaZeroShotClassifier(tiny_model, processor)
    with pytest.raises((KeyError, ValueError), match="NOT_A_CLASS"):
        classifier.scores(ecgs, ["NOT_A_CLASS"])
    with pytest.raises(ValueError, match="similarity"):
        DBetaZeroShotClassifier(tiny_model, processor, similarity="softmax")
    with pytest.raises(ValueError, match="exactly one"):
        classifier.scores(ecgs)
    with pytest.raises(ValueError):
        zero_shot_scores(torch.zeros(2, 4), torch.zeros(3, 5))


def test_default_descriptions_cover_every_task_class(tiny_model, processor):
    from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier
    from dbeta_hf.data.synthetic import SYNTHETIC_CLASSES
    from dbeta_hf.evaluation.prompts import task_class_names

    classifier = DBetaZeroShotClassifier(tiny_model, processor)
    texts = classifier.describe(SYNTHETIC_CLASSES, task="synthetic")
    assert len(texts) == len(SYNTHETIC_CLASSES) and all(isinstance(t, str) and t for t in texts)
    for task in ("ptbxl_super", "ptbxl_sub", "ptbxl_form", "ptbxl_rhythm", "cpsc2018", "csn", "code15"):
        names = task_class_names(task)
        assert len(classifier.describe(names, task=task)) == len(names)


def test_pipeline_runs_and_matches_classifier(saved_model_dir, tiny_model, processor):
    from transformers import pipeline

    from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier
    from dbeta_hf.pipelines import register_pipelines

    register_pipelines()
    classifier_pipe = pipeline("zero-shot-ecg-classification", model=str(saved_model_dir), device="cpu")
    rng = np.random.default_rng(0)
    ecg = rng.normal(size=(12, 4000)).astype(np.float32)  # 10 s at 400 Hz: the processor resamples and pads
    out = classifier_pipe(ecg, candidate_labels=["AFIB", "SR", "BBB"], sampling_rate=400, descriptions=DESCRIPTIONS)
    assert [set(d) for d in out] == [{"label", "score"}] * 3
    assert sorted(d["label"] for d in out) == ["AFIB", "BBB", "SR"]
    assert [d["score"] for d in out] == sorted((d["score"] for d in out), reverse=True)

    reference = DBetaZeroShotClassifier(tiny_model, processor, descriptions=DESCRIPTIONS)
    expected = reference.scores(ecg, ["AFIB", "SR", "BBB"], sampling_rate=400)[0]
    got = {d["label"]: d["score"] for d in out}
    np.testing.assert_allclose([got["AFIB"], got["SR"], got["BBB"]], expected.numpy(), atol=1e-4, rtol=1e-4)

    # a batch of ECGs, independent sigmoid scores (multi-label: they do not sum to one)
    batch = classifier_pipe(
        rng.normal(size=(2, 12, 5000)).astype(np.float32), candidate_labels=["AFIB", "SR"], sampling_rate=500,
        descriptions=DESCRIPTIONS, function_to_apply="sigmoid",
    )
    assert len(batch) == 2 and all(len(r) == 2 for r in batch)
    assert all(0.0 < d["score"] < 1.0 for r in batch for d in r)
    with pytest.raises(ValueError, match="sampling_rate"):
        classifier_pipe(ecg, candidate_labels=["AFIB"], descriptions=DESCRIPTIONS)


def test_zero_shot_example_end_to_end(saved_model_dir, tmp_path):
    example = load_example("zero_shot")
    out_dir = tmp_path / "zs"
    results = example.main([
        "--model_name_or_path", str(saved_model_dir), "--output_dir", str(out_dir), "--synthetic_records", "40",
        "--num_bootstrap", "50", "--no_progress",
    ])
    saved = json.loads((out_dir / "zero_shot_results.json").read_text())
    task = saved["tasks"]["synthetic"]
    assert 0.0 <= task["macro_auroc"] <= 1.0
    assert task["ci_low"] <= task["macro_auroc"] <= task["ci_high"]
    assert task["num_samples"] == 8 and task["similarity"] == "dot"
    assert set(task["per_class"]) | set(task["skipped_classes"]) == set(task["class_names"])
    assert results["tasks"]["synthetic"]["macro_auroc"] == pytest.approx(task["macro_auroc"])
    markdown = (out_dir / "zero_shot_results.md").read_text()
    assert "| Methods | Synthetic |" in markdown
    assert (out_dir / "roc_synthetic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # features were cached: a second run loads them and gives the same numbers
    cached = list((out_dir / "feature_cache").glob("*.safetensors"))
    assert len(cached) == 1
    again = example.main([
        "--model_name_or_path", str(saved_model_dir), "--output_dir", str(out_dir), "--synthetic_records", "40",
        "--num_bootstrap", "50", "--no_progress", "--similarity", "cosine",
    ])
    assert list((out_dir / "feature_cache").glob("*.safetensors")) == cached
    assert again["tasks"]["synthetic"]["similarity"] == "cosine"
    # a prompt ensemble: recorded, and the scores are the classifier's with the same ensemble
    ensembled = example.main([
        "--model_name_or_path", str(saved_model_dir), "--output_dir", str(out_dir), "--synthetic_records", "40",
        "--num_bootstrap", "50", "--no_progress", "--prompt_ensemble", "name+description",
    ])
    assert ensembled["prompt_ensemble"] == "name+description"
    texts = ensembled["tasks"]["synthetic"]["descriptions"]
    assert all(isinstance(t, list) and len(t) == 2 for t in texts.values())  # every synthetic description has 2 sentences
    assert "texts per class: name+description" in (out_dir / "zero_shot_results.md").read_text()


def test_zero_shot_example_errors(tmp_path, monkeypatch):
    example = load_example("zero_shot")
    monkeypatch.chdir(tmp_path)  # the default model folder does not exist here
    with pytest.raises(FileNotFoundError, match="examples/pretrain.py"):
        example.main(["--no_progress"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        example.main(["--model_name_or_path", str(tmp_path / "missing"), "--no_progress"])
    with pytest.raises(SystemExit):
        example.main(["--tasks", "not_a_task"])
    with pytest.raises(SystemExit) as info:
        example.main(["--help"])
    assert info.value.code == 0


def test_pipeline_batch_size_gives_the_single_ecg_scores(saved_model_dir):
    from transformers import pipeline

    from dbeta_hf.evaluation.prompts import MissingClassDescriptionError

    classifier_pipe = pipeline("zero-shot-ecg-classification", model=str(saved_model_dir), device="cpu")
    rng = np.random.default_rng(1)
    ecgs = [rng.normal(size=(12, 5000)).astype(np.float32) for _ in range(3)]
    labels = ["AFIB", "SR", "BBB"]
    singles = [classifier_pipe(ecg, candidate_labels=labels, sampling_rate=500, descriptions=DESCRIPTIONS) for ecg in ecgs]
    for batch_size in (1, 2, 3):
        batched = classifier_pipe(ecgs, candidate_labels=labels, sampling_rate=500, descriptions=DESCRIPTIONS,
                                  batch_size=batch_size)
        assert [[d["label"] for d in r] for r in batched] == [[d["label"] for d in r] for r in singles]
        np.testing.assert_allclose([[d["score"] for d in r] for r in batched],
                                   [[d["score"] for d in r] for r in singles], rtol=1e-5, atol=1e-6)
    # the missing-description error names the pipeline's argument, `descriptions=`
    with pytest.raises(MissingClassDescriptionError, match=r"descriptions=\{") as info:
        classifier_pipe(ecgs[0], candidate_labels=["NOT_A_CLASS"], sampling_rate=500)
    assert "overrides=" not in str(info.value)


def test_default_scores_are_the_models_ecg_text_logits(processor, ecgs, tmp_path):
    """The classifier and the pipeline score with `model.ecg_text_logits` (the similarity the ETS loss trained: here
    scale 2 and bias -1); "dot" and "cosine" remain as overrides."""
    from transformers import pipeline

    from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier

    torch.manual_seed(0)
    model = DBetaModel(tiny_config(ets_logit_scale_init=2.0, ets_logit_bias_init=-1.0)).eval()
    texts = [DESCRIPTIONS[n] for n in ("AFIB", "SR")]
    dot = _hand_scores(model, processor, ecgs, texts)
    classifier = DBetaZeroShotClassifier(model, processor, descriptions=DESCRIPTIONS)
    torch.testing.assert_close(classifier.scores(ecgs, descriptions=texts), 2.0 * dot - 1.0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(classifier.scores(ecgs, descriptions=texts, similarity="dot"), dot, atol=1e-5, rtol=1e-5)

    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    pipe = pipeline("zero-shot-ecg-classification", model=str(tmp_path), device="cpu")
    ecg = ecgs[0, :, :1000].numpy()
    out = pipe(ecg, candidate_labels=["AFIB", "SR"], sampling_rate=100, descriptions=DESCRIPTIONS)
    expected = classifier.scores(ecg, ["AFIB", "SR"], sampling_rate=100)[0]
    got = {d["label"]: d["score"] for d in out}
    np.testing.assert_allclose([got["AFIB"], got["SR"]], expected.numpy(), atol=1e-4, rtol=1e-4)
    raw = pipe(ecg, candidate_labels=["AFIB", "SR"], sampling_rate=100, descriptions=DESCRIPTIONS, similarity="dot")
    assert {d["label"]: d["score"] for d in raw}["AFIB"] == pytest.approx((got["AFIB"] + 1.0) / 2.0, rel=1e-4)
    with pytest.raises(ValueError, match="similarity must be one of"):
        pipe(ecg, candidate_labels=["AFIB"], sampling_rate=100, descriptions=DESCRIPTIONS, similarity="softmax")
