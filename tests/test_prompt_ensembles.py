"""Prompt ensembles: several texts per class, their embeddings averaged (CLIP's prompt ensembling)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import pipeline

from dbeta_hf import DBetaModel, DBetaProcessor
from dbeta_hf.evaluation.prompts import class_prompts, description_sentences, ensemble_texts, load_prompt_set
from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier
from dbeta_hf.pretraining.recipes import tiny_config

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

DESCRIPTIONS = {
    "AFIB": "atrial fibrillation. an irregularly irregular rhythm without p waves.",
    "SR": "sinus rhythm.",
    "BBB": "bundle branch block. a qrs of 120 ms or more.",
}


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return DBetaModel(tiny_config()).eval()


@pytest.fixture(scope="module")
def processor(tiny_tokenizer_path):
    return DBetaProcessor.from_tokenizer(str(tiny_tokenizer_path))


@pytest.fixture(scope="module")
def ecgs():
    return torch.randn(4, 12, 5000, generator=torch.Generator().manual_seed(3))


def _text_embedding(model, processor, text):
    enc = processor(text=text, return_tensors="pt")
    with torch.no_grad():
        return model.get_text_features(enc["input_ids"], enc["attention_mask"])[0]


def test_sentences_and_ensemble_texts():
    assert description_sentences("first degree av block. a pr interval over 0.2 s. ") == [
        "first degree av block.", "a pr interval over 0.2 s."]
    text = DESCRIPTIONS["AFIB"]
    assert ensemble_texts(text, "description") == [text]
    assert ensemble_texts(text, "name+description") == ["atrial fibrillation.", text]
    assert ensemble_texts(text, "sentences") == ["atrial fibrillation.", "an irregularly irregular rhythm without p waves."]
    # one sentence: every ensemble is that one text
    for ensemble in ("description", "name+description", "sentences"):
        assert ensemble_texts("sinus rhythm.", ensemble) == ["sinus rhythm."]
    # a list is the class's ensemble whatever the mode
    assert ensemble_texts(["a.", "b.", "a."], "description") == ["a.", "b."]
    with pytest.raises(ValueError, match="no prompt text"):
        ensemble_texts([" "], "description", "AFIB")
    with pytest.raises(ValueError, match="unknown prompt ensemble"):
        ensemble_texts(text, "templates")


def test_an_ensemble_of_one_text_scores_exactly_as_the_single_text(tiny_model, processor, ecgs):
    single = DBetaZeroShotClassifier(tiny_model, processor, descriptions=DESCRIPTIONS)
    names = list(DESCRIPTIONS)
    expected = single.scores(ecgs, names)
    # a prompt file whose classes each carry a one-text list
    as_lists = DBetaZeroShotClassifier(tiny_model, processor, descriptions={k: [v] for k, v in DESCRIPTIONS.items()},
                                       prompt_ensemble="name+description")
    assert torch.equal(as_lists.scores(ecgs, names), expected)
    for similarity in ("cosine", "dot", "model"):
        one = DBetaZeroShotClassifier(tiny_model, processor, descriptions=DESCRIPTIONS, similarity=similarity)
        ens = DBetaZeroShotClassifier(tiny_model, processor, similarity=similarity, prompt_ensemble="sentences",
                                      descriptions={"SR": "sinus rhythm."})
        assert torch.equal(ens.scores(ecgs, ["SR"]), one.scores(ecgs, ["SR"]))


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
def test_the_class_embedding_is_the_mean_of_its_texts(tiny_model, processor, ecgs, similarity):
    classifier = DBetaZeroShotClassifier(tiny_model, processor, descriptions=DESCRIPTIONS, similarity=similarity,
                                         prompt_ensemble="name+description")
    names = ["AFIB", "SR", "BBB"]
    scores = classifier.scores(ecgs, names)
    with torch.no_grad():
        ecg = tiny_model.get_ecg_features(ecgs)
    for c, name in enumerate(names):
        texts = ensemble_texts(DESCRIPTIONS[name], "name+description")
        embeds = torch.stack([_text_embedding(tiny_model, processor, t) for t in texts])
        if similarity == "cosine" and len(texts) > 1:
            embeds = F.normalize(embeds, dim=-1)
        class_embed = embeds.mean(0)
        e, t = (F.normalize(ecg, dim=-1), F.normalize(class_embed, dim=-1)) if similarity == "cosine" else (ecg, class_embed)
        torch.testing.assert_close(scores[:, c], e @ t, rtol=1e-5, atol=1e-5)
    # averaging is per class: a class's score does not depend on the other classes scored with it
    torch.testing.assert_close(classifier.scores(ecgs, ["BBB"])[:, 0], scores[:, 2])
    # and the ensemble really changes the two-sentence classes
    single = DBetaZeroShotClassifier(tiny_model, processor, descriptions=DESCRIPTIONS, similarity=similarity)
    assert not torch.allclose(single.scores(ecgs, ["AFIB"]), scores[:, :1])


def test_prompt_files_with_lists(tmp_path, tiny_model, processor, ecgs):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps({"AFIB": ["atrial fibrillation.", "irregular rhythm."], "SR": "sinus rhythm."}))
    prompt_set = load_prompt_set(path)
    assert class_prompts(["AFIB", "SR"], prompt_set=prompt_set) == [["atrial fibrillation.", "irregular rhythm."],
                                                                    ["sinus rhythm."]]
    classifier = DBetaZeroShotClassifier(tiny_model, processor, descriptions=path)
    embeds, texts = classifier.class_embeddings(["AFIB", "SR"])
    assert texts == [["atrial fibrillation.", "irregular rhythm."], "sinus rhythm."]
    expected = torch.stack([_text_embedding(tiny_model, processor, t) for t in texts[0]]).mean(0)
    torch.testing.assert_close(embeds[0], expected, rtol=1e-6, atol=1e-6)

    path.write_text(json.dumps({"AFIB": [], "SR": "sinus rhythm."}))
    with pytest.raises(ValueError, match="prompt list of 'AFIB' is empty"):
        load_prompt_set(path)
    path.write_text(json.dumps({"AFIB": ["ok.", 3]}))
    with pytest.raises(ValueError, match="'AFIB'"):
        load_prompt_set(path)


def test_classifier_and_pipeline_agree_on_ensembles(tiny_model, processor, ecgs):
    classifier = DBetaZeroShotClassifier(tiny_model, processor, descriptions=DESCRIPTIONS,
                                         prompt_ensemble="name+description")
    with pytest.raises(ValueError, match="unknown prompt_ensemble"):
        DBetaZeroShotClassifier(tiny_model, processor, prompt_ensemble="all")
    expected = classifier.scores(ecgs[:1], list(DESCRIPTIONS))[0]
    pipe = pipeline("zero-shot-ecg-classification", model=tiny_model, processor=processor)
    out = pipe(ecgs[0].numpy(), candidate_labels=list(DESCRIPTIONS), sampling_rate=500, descriptions=DESCRIPTIONS,
               prompt_ensemble="name+description")
    got = {row["label"]: row["score"] for row in out}
    for c, name in enumerate(DESCRIPTIONS):
        assert got[name] == pytest.approx(float(expected[c]), rel=1e-5, abs=1e-5)
    with pytest.raises(ValueError, match="prompt_ensemble must be one of"):
        pipe(ecgs[0].numpy(), candidate_labels=["SR"], sampling_rate=500, prompt_ensemble="x")
