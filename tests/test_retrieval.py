"""ECG <-> report retrieval metrics and examples/retrieval.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers import load_example

from dbeta_hf import DBetaModel, DBetaProcessor
from dbeta_hf.pretraining.recipes import tiny_config



pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def _hand_recall(similarity: np.ndarray, relevant: np.ndarray, k: int) -> float:
    hits = 0
    for q in range(similarity.shape[0]):
        top = sorted(range(similarity.shape[1]), key=lambda j: (-similarity[q, j], j))[:k]
        hits += any(relevant[q, j] for j in top)
    return hits / similarity.shape[0]


def test_report_relevance_uses_normalized_text():
    from dbeta_hf.evaluation.retrieval import report_relevance

    rel = report_relevance(["Sinus rhythm.  Normal ECG", "sinus rhythm. normal ecg", "Atrial fibrillation"])
    assert rel.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    raw = report_relevance(["Sinus rhythm.  Normal ECG", "sinus rhythm. normal ecg"], normalize=False)
    assert raw.tolist() == [[True, False], [False, True]]


def test_recall_is_one_when_texts_are_identical_to_the_query_report():
    from dbeta_hf.evaluation.retrieval import retrieval_metrics

    gen = torch.Generator().manual_seed(0)
    ecg = torch.randn(12, 8, generator=gen)
    text = torch.randn(12, 8, generator=gen)  # unrelated embeddings: only identical reports make every hit
    result = retrieval_metrics(ecg, text, ["sinus rhythm. normal ecg."] * 12, ks=(1, 5, 10))
    for direction in ("ecg_to_report", "report_to_ecg"):
        assert result[direction]["R@1"] == result[direction]["R@5"] == result[direction]["R@10"] == 1.0
        assert result[direction]["median_rank"] == 1.0
    assert result["num_pairs"] == 12 and result["num_unique_reports"] == 1

    # the top-1 report of each ECG belongs to another record, but its text is the query's own report: a hit
    reports = ["a.", "a.", "b.", "b.", "c.", "c."]
    ecg = torch.eye(6)
    text = torch.eye(6)[[1, 0, 3, 2, 5, 4]]  # ECG i is most similar to report i^1 (same text)
    assert retrieval_metrics(ecg, text, reports, ks=(1,))["ecg_to_report"]["R@1"] == 1.0
    assert retrieval_metrics(ecg, text, [f"r{i}." for i in range(6)], ks=(1,))["ecg_to_report"]["R@1"] == 0.0


def test_recall_matches_hand_count():
    from dbeta_hf.evaluation.retrieval import report_relevance, retrieval_metrics, retrieval_recall

    rng = np.random.default_rng(0)
    n = 30
    ecg = torch.tensor(rng.normal(size=(n, 6)), dtype=torch.float32)
    text = ecg + torch.tensor(rng.normal(scale=1.5, size=(n, 6)), dtype=torch.float32)
    reports = [f"report {i % 24}." for i in range(n)]  # a few duplicates
    result = retrieval_metrics(ecg, text, reports, ks=(1, 5, 10))
    sim = (ecg @ text.T).numpy().astype(np.float64)
    rel = report_relevance(reports)
    for k in (1, 5, 10):
        assert result["ecg_to_report"][f"R@{k}"] == pytest.approx(_hand_recall(sim, rel, k))
        assert result["report_to_ecg"][f"R@{k}"] == pytest.approx(_hand_recall(sim.T, rel.T, k))
    assert 0.0 < result["ecg_to_report"]["R@1"] < 1.0
    assert result["ecg_to_report"]["R@1"] <= result["ecg_to_report"]["R@5"] <= result["ecg_to_report"]["R@10"]
    cosine = retrieval_metrics(ecg, text, reports, ks=(5,), similarity="cosine")
    sim_cos = (torch.nn.functional.normalize(ecg, dim=1) @ torch.nn.functional.normalize(text, dim=1).T).numpy()
    assert cosine["ecg_to_report"]["R@5"] == pytest.approx(_hand_recall(sim_cos.astype(np.float64), rel, 5))
    # k beyond the gallery: every query with a relevant item is a hit
    assert retrieval_recall(sim, rel, ks=(100,))["R@100"] == 1.0
    with pytest.raises(ValueError, match="paired"):
        retrieval_metrics(ecg, text[:5], reports)
    with pytest.raises(ValueError):
        retrieval_recall(sim, rel, ks=(0,))


def test_retrieval_example_end_to_end(tmp_path, tiny_tokenizer_path):
    model_dir = tmp_path / "model"
    torch.manual_seed(0)
    DBetaModel(tiny_config()).save_pretrained(model_dir)
    DBetaProcessor.from_tokenizer(str(tiny_tokenizer_path)).save_pretrained(model_dir)
    example = load_example("retrieval")
    out_dir = tmp_path / "retrieval"
    results = example.main([
        "--model_name_or_path", str(model_dir), "--output_dir", str(out_dir), "--synthetic_records", "24", "--no_progress",
    ])
    saved = json.loads((out_dir / "retrieval_results.json").read_text())
    assert saved["num_pairs"] == 24
    for direction in ("ecg_to_report", "report_to_ecg"):
        values = [saved[direction][f"R@{k}"] for k in (1, 5, 10)]
        assert values == sorted(values) and all(0.0 <= v <= 1.0 for v in values)
    assert results["ecg_to_report"]["R@1"] == pytest.approx(saved["ecg_to_report"]["R@1"])
    markdown = (out_dir / "retrieval_results.md").read_text()
    assert "| Method | ECG→Report R@1 | R@5 | R@10 | Report→ECG R@1 | R@5 | R@10 |" in markdown
    assert (out_dir / "recall_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="--mimic_root"):
        example.main(["--model_name_or_path", str(model_dir), "--dataset", "mimic_iv_ecg", "--output_dir", str(out_dir)])
    with pytest.raises(FileNotFoundError, match="dataset_path"):
        example.main(["--model_name_or_path", str(model_dir), "--dataset_path", str(tmp_path / "none"), "--output_dir", str(out_dir)])


def test_model_similarity_ranks_with_the_models_ecg_text_logits():
    """`similarity="model"` ranks with `model.ecg_text_logits`: for a model trained on normalized embeddings that is
    the cosine ranking, not the raw dot product's."""
    from dbeta_hf.evaluation.retrieval import retrieval_metrics

    model = DBetaModel(tiny_config(ets_normalize_embeddings=True, ets_logit_scale_init=10.0, ets_logit_bias_init=-5.0))
    rng = np.random.default_rng(1)
    n = 40
    ecg = torch.tensor(rng.normal(size=(n, 32)) * rng.uniform(0.1, 3.0, size=(n, 1)), dtype=torch.float32)
    text = ecg + torch.tensor(rng.normal(scale=2.0, size=(n, 32)), dtype=torch.float32)
    reports = [f"report {i}." for i in range(n)]
    by_model = retrieval_metrics(ecg, text, reports, ks=(1, 5), similarity="model", model=model)
    cosine = retrieval_metrics(ecg, text, reports, ks=(1, 5), similarity="cosine")
    dot = retrieval_metrics(ecg, text, reports, ks=(1, 5), similarity="dot")
    assert by_model["ecg_to_report"] == cosine["ecg_to_report"] and by_model["report_to_ecg"] == cosine["report_to_ecg"]
    assert by_model["report_to_ecg"] != dot["report_to_ecg"]
    with pytest.raises(ValueError, match="pass model="):
        retrieval_metrics(ecg, text, reports, similarity="model")
