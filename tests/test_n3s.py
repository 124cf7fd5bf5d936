"""N3S index: strategies, encoder pooling, chunked search, persistence and sampling."""

from __future__ import annotations

import math
import pickle
import sys
import types
import warnings

import numpy as np
import pytest
import torch
from transformers import T5Config, T5EncoderModel

from dbeta_hf.pretraining.n3s import N3SIndex, build_n3s_index, build_n3s_index_from_embeddings, embed_reports

# Reports on the unit circle: the cosine similarity between two of them is cos(angle difference), so the
# expected negatives are known exactly.
ANGLES = {
    "sinus bradycardia": 0,
    "sinus rhythm": 10,
    "sinus tachycardia": 30,
    "normal ecg": 60,
    "left axis deviation": 100,
    "left bundle branch block": 150,
    "st elevation": 170,
    "atrial fibrillation": 180,
}


def circle_corpus():
    reports = list(ANGLES)
    emb = torch.tensor([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in ANGLES.values()])
    return reports, emb


def brute_force(emb: torch.Tensor, k: int, strategy: str, ceiling: float = 0.9) -> np.ndarray:
    e = emb.double().numpy()
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    sims = e @ e.T
    out = []
    for i, row in enumerate(sims):
        order = np.argsort(row, kind="stable")  # ascending similarity
        if strategy == "dissimilar":
            chosen = [j for j in order if j != i][:k]
        else:
            chosen = [j for j in order[::-1] if j != i and row[j] < ceiling][:k]
        out.append(chosen)
    return np.asarray(out)


def test_dissimilar_strategy_on_handcrafted_corpus():
    reports, emb = circle_corpus()
    index = build_n3s_index_from_embeddings(reports, emb, k=3, progress=False)
    assert len(index) == 8 and index.k == 3
    assert index.candidates("sinus bradycardia") == ["atrial fibrillation", "st elevation", "left bundle branch block"]
    assert index.candidates("atrial fibrillation") == ["sinus bradycardia", "sinus rhythm", "sinus tachycardia"]
    assert index.settings["strategy"] == "dissimilar"
    own = torch.arange(len(index), dtype=torch.int32)[:, None]
    assert not bool((index.negatives == own).any())


def test_normalization_and_deduplication_keep_first_occurrence():
    reports, emb = circle_corpus()
    noisy = ["*** Sinus Bradycardia ***", "SINUS BRADYCARDIA"] + reports[1:]
    # the duplicate's embedding points the other way: the first occurrence must win
    noisy_emb = torch.cat([emb[:1], -emb[:1], emb[1:]])
    index = build_n3s_index_from_embeddings(noisy, noisy_emb * 3.0, k=2, progress=False, keep_embeddings=True)
    assert index.reports == reports
    assert index.settings["num_input_reports"] == 9
    torch.testing.assert_close(index.embeddings, emb)  # first occurrence, L2-normalized
    assert index.report_id("  *** SINUS bradycardia =") == 0 and "sinus   bradycardia" not in index  # inner spaces kept
    assert "Sinus Bradycardia" in index and "third degree block" not in index


def test_hard_strategy_respects_ceiling():
    reports, emb = circle_corpus()
    ceiling = math.cos(math.radians(15))  # excludes "sinus rhythm" (10 degrees) for "sinus bradycardia"
    index = build_n3s_index_from_embeddings(
        reports, emb, k=2, strategy="hard", similarity_ceiling=ceiling, progress=False
    )
    assert index.candidates("sinus bradycardia") == ["sinus tachycardia", "normal ecg"]
    assert index.candidates("st elevation") == ["left bundle branch block", "left axis deviation"]
    assert index.settings["similarity_ceiling"] == pytest.approx(ceiling)

    # random corpus: every stored candidate is below the ceiling and they are the most similar such reports
    gen = torch.Generator().manual_seed(1)
    emb = torch.randn(120, 4, generator=gen)
    names = [f"report {i}" for i in range(120)]
    index = build_n3s_index_from_embeddings(
        names, emb, k=5, strategy="hard", similarity_ceiling=0.8, chunk_size=17, progress=False, keep_embeddings=True
    )
    sims = index.embeddings @ index.embeddings.T
    neg = index.negatives.long()
    assert bool((sims.gather(1, neg) < 0.8).all())
    np.testing.assert_array_equal(neg.numpy(), brute_force(emb, 5, "hard", 0.8))


def test_hard_strategy_short_rows_and_empty_rows():
    reports, emb = circle_corpus()
    ceiling = math.cos(math.radians(25))
    with pytest.warns(UserWarning, match="fewer than k=7"):
        index = build_n3s_index_from_embeddings(
            reports, emb, k=7, strategy="hard", similarity_ceiling=ceiling, progress=False
        )
    # "sinus bradycardia" has 6 reports under the ceiling (all but itself and "sinus rhythm")
    rid = index.report_id("sinus bradycardia")
    assert int(index.num_candidates[rid]) == 6 and int(index.negatives[rid, 6]) == -1
    samples = index.sample_negative(torch.full((2000,), rid), torch.Generator().manual_seed(0))
    assert set(samples.tolist()) == set(index.negatives[rid, :6].tolist())

    twins = ["a", "b"]
    with pytest.raises(ValueError, match="raise the ceiling"):
        build_n3s_index_from_embeddings(
            twins, torch.tensor([[1.0, 0.0], [1.0, 0.01]]), k=1, strategy="hard", similarity_ceiling=0.9, progress=False
        )


@pytest.mark.parametrize("strategy", ["dissimilar", "hard"])
def test_chunked_search_equals_brute_force(strategy):
    emb = torch.randn(157, 16, generator=torch.Generator().manual_seed(0))
    names = [f"r{i}" for i in range(157)]
    expected = brute_force(emb, 9, strategy, 0.3)
    for chunk in (1, 10, 64, 157):
        index = build_n3s_index_from_embeddings(
            names, emb, k=9, strategy=strategy, similarity_ceiling=0.3, chunk_size=chunk, progress=False
        )
        np.testing.assert_array_equal(index.negatives.numpy(), expected)
    # the memory-derived chunk size (tiny budget -> one row per chunk) gives the same table
    index = build_n3s_index_from_embeddings(
        names, emb, k=9, strategy=strategy, similarity_ceiling=0.3, max_chunk_mb=1e-4, progress=False
    )
    np.testing.assert_array_equal(index.negatives.numpy(), expected)


def test_faiss_backend_with_stand_in_module(monkeypatch):
    class IndexFlatIP:  # exact inner-product search with faiss' interface
        def __init__(self, dim):
            self.keys = np.zeros((0, dim), dtype=np.float32)

        def add(self, x):
            self.keys = np.concatenate([self.keys, x])

        def search(self, q, k):
            scores = q @ self.keys.T
            ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            return np.take_along_axis(scores, ids, axis=1), ids

    monkeypatch.setitem(sys.modules, "faiss", types.SimpleNamespace(IndexFlatIP=IndexFlatIP))
    emb = torch.randn(90, 8, generator=torch.Generator().manual_seed(3))
    names = [f"r{i}" for i in range(90)]
    for strategy in ("dissimilar", "hard"):
        a = build_n3s_index_from_embeddings(names, emb, k=6, strategy=strategy, similarity_ceiling=0.5, progress=False)
        b = build_n3s_index_from_embeddings(
            names, emb, k=6, strategy=strategy, similarity_ceiling=0.5, backend="faiss", chunk_size=16,
            progress=False,
        )
        np.testing.assert_array_equal(a.negatives.numpy(), b.negatives.numpy())
        assert b.settings["backend"] == "faiss"


def test_faiss_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    reports, emb = circle_corpus()
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        build_n3s_index_from_embeddings(reports, emb, k=2, backend="faiss", progress=False)


def test_small_corpus_clamps_k_and_rejects_single_report():
    with pytest.warns(UserWarning, match="clamped to 2"):
        index = build_n3s_index_from_embeddings(["a", "b", "c", "A"], torch.eye(4)[:, :3], k=64, progress=False)
    assert index.k == 2 and len(index) == 3
    for rid in range(3):
        assert rid not in index.negatives[rid].tolist()
    with pytest.raises(ValueError, match="at least 2 distinct reports"):
        build_n3s_index_from_embeddings(["Sinus rhythm", "sinus rhythm ***"], torch.randn(2, 3), k=1, progress=False)
    with pytest.raises(ValueError, match="strategy"):
        build_n3s_index_from_embeddings(["a", "b"], torch.randn(2, 3), k=1, strategy="nearest", progress=False)
    with pytest.raises(ValueError, match="shape"):
        build_n3s_index_from_embeddings(["a", "b"], torch.randn(3, 3), k=1, progress=False)


def test_report_lookup_errors_name_the_fix():
    reports, emb = circle_corpus()
    index = build_n3s_index_from_embeddings(reports, emb, k=2, progress=False)
    with pytest.raises(KeyError, match="build_n3s_index"):
        index.report_id("third degree block")
    with pytest.raises(KeyError, match="1 report"):
        index.report_ids(["sinus rhythm", "third degree block"])
    ids = index.report_ids(["Sinus Rhythm", "third degree block"], missing="ignore")
    assert ids.tolist() == [1, -1]
    with pytest.raises(IndexError, match=r"\[0, 8\)"):
        index.sample_negative([8])


def test_save_load_round_trip(tmp_path):
    emb = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    names = [f"report number {i} é" for i in range(50)]
    with pytest.warns(UserWarning, match="fewer than k=30"):
        index = build_n3s_index_from_embeddings(
            names, emb, k=30, strategy="hard", similarity_ceiling=0.0, keep_embeddings=True, progress=False
        )
    assert int(index.num_candidates.min()) < 30  # rows of different lengths survive the round trip
    index.save_pretrained(tmp_path / "idx", save_embeddings=True)
    loaded = N3SIndex.from_pretrained(tmp_path / "idx", load_embeddings=True)
    assert loaded.reports == index.reports
    assert loaded.negatives.dtype == torch.int32
    torch.testing.assert_close(loaded.negatives, index.negatives)
    torch.testing.assert_close(loaded.num_candidates, index.num_candidates)
    torch.testing.assert_close(loaded.embeddings, index.embeddings)
    assert loaded.settings["strategy"] == "hard" and loaded.settings["similarity_ceiling"] == 0.0
    assert loaded.report_id("Report number 7 é") == 7
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    ids = torch.arange(50).repeat(3)
    assert torch.equal(index.sample_negative(ids, g1), loaded.sample_negative(ids, g2))

    index.save_pretrained(tmp_path / "small")  # without embeddings
    assert N3SIndex.from_pretrained(tmp_path / "small").embeddings is None
    with pytest.raises(ValueError, match="save_embeddings=True"):
        N3SIndex.from_pretrained(tmp_path / "small", load_embeddings=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OSError, match="missing"):
        N3SIndex.from_pretrained(tmp_path / "empty")


def test_sampling_is_reproducible_uniform_and_vectorised():
    emb = torch.randn(40, 5, generator=torch.Generator().manual_seed(0))
    index = build_n3s_index_from_embeddings([f"r{i}" for i in range(40)], emb, k=8, progress=False)
    ids = torch.randint(0, 40, (4000,), generator=torch.Generator().manual_seed(1))
    a = index.sample_negative(ids, torch.Generator().manual_seed(7))
    b = index.sample_negative(ids.numpy(), torch.Generator().manual_seed(7))
    c = index.sample_negative(ids, torch.Generator().manual_seed(8))
    assert a.dtype == torch.long and a.shape == ids.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert bool((index.negatives[ids].long() == a[:, None]).any(dim=1).all())  # always one of the row's candidates
    assert not bool((a == ids).any())
    # uniform over the k columns: 20000 draws of one report, each column ~1/8
    rid = torch.zeros(20000, dtype=torch.long)
    draws = index.sample_negative(rid, torch.Generator().manual_seed(2))
    counts = torch.stack([(draws == int(j)).sum() for j in index.negatives[0]]).double() / 20000
    assert torch.allclose(counts, torch.full_like(counts, 1 / 8), atol=0.015)
    assert index.sample_negative(torch.zeros(0, dtype=torch.long)).numel() == 0


def test_index_pickles_without_lookup_dict():
    reports, emb = circle_corpus()
    index = build_n3s_index_from_embeddings(reports, emb, k=2, progress=False)
    index.report_id("sinus rhythm")
    clone = pickle.loads(pickle.dumps(index))
    assert clone._lookup is None and clone.report_id("sinus rhythm") == 1


def test_invalid_tables_are_rejected():
    with pytest.raises(ValueError, match="own negative"):
        N3SIndex(["a", "b"], torch.tensor([[0], [0]]))
    with pytest.raises(ValueError, match="outside"):
        N3SIndex(["a", "b"], torch.tensor([[1], [2]]))
    with pytest.raises(ValueError, match="at least one negative"):
        N3SIndex(["a", "b"], torch.tensor([[1], [0]]), num_candidates=torch.tensor([1, 0]))


# ----------------------------------------------------------------------------------------------- encoder
@pytest.fixture(scope="module")
def tiny_encoder_dir(tmp_path_factory, tiny_tokenizer):
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=500, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4, feed_forward_proj="gated-gelu"
    )
    path = tmp_path_factory.mktemp("tiny_t5_encoder")
    T5EncoderModel(config).eval().save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return path


ENCODER_REPORTS = [
    "Sinus bradycardia",
    "*** SINUS BRADYCARDIA ***",  # duplicate after normalization
    "sinus rhythm",
    "atrial fibrillation with rapid ventricular response",
    "left bundle branch block",
    "st elevation",
    "normal ecg",
    "heart attack occurring in the inferior wall of the left ventricle",
    "prolonged qt interval",
]


def test_build_through_tiny_t5_encoder(tiny_encoder_dir, tiny_tokenizer):
    index = build_n3s_index(
        ENCODER_REPORTS, tiny_encoder_dir, k=3, batch_size=64, device="cpu", keep_embeddings=True, progress=False
    )
    assert len(index) == 8 and index.reports[0] == "sinus bradycardia"
    assert index.negatives.shape == (8, 3) and index.negatives.dtype == torch.int32
    assert index.embeddings.shape == (8, 32)
    torch.testing.assert_close(index.embeddings.norm(dim=1), torch.ones(8))
    assert index.settings["encoder"] == str(tiny_encoder_dir) and index.settings["pooling"] == "masked_mean"
    own = torch.arange(8, dtype=torch.int32)[:, None]
    assert not bool((index.negatives == own).any())

    # all reports went through one padded batch; each must equal the unpadded single-report mean
    model = T5EncoderModel.from_pretrained(tiny_encoder_dir).eval()
    manual = []
    with torch.no_grad():
        for text in index.reports:
            hidden = model(**tiny_tokenizer(text, return_tensors="pt")).last_hidden_state[0]
            pooled = hidden.mean(dim=0)
            manual.append(pooled / pooled.norm())
    torch.testing.assert_close(index.embeddings, torch.stack(manual), atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(index.negatives.numpy(), brute_force(index.embeddings, 3, "dissimilar"))

    # batching does not change the embeddings (masked mean, length-sorted batches)
    again = embed_reports(index.reports, tiny_encoder_dir, batch_size=3, device="cpu", progress=False)
    torch.testing.assert_close(again, index.embeddings, atol=1e-5, rtol=1e-5)


def test_build_through_encoder_clamps_k_once(tiny_encoder_dir):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = build_n3s_index(["a b", "c d", "A B"], tiny_encoder_dir, k=5, device="cpu", progress=False)
    assert index.k == 1
    assert sum("clamped" in str(w.message) for w in caught) == 1
