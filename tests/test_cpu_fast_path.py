"""The CPU fast path of the embeddings: `cpu_supports_bf16`, the `precision` switch of the feature extraction
(fp32 by default, issue #24 item 4), bf16 agreement with fp32, the examples' one precision flag, and no graph
break in the ECG tower under torch.compile."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dbeta_hf import DBetaECGModel, DBetaModel
from dbeta_hf.evaluation import embeddings as E
from dbeta_hf.evaluation.cli import add_precision_arguments, precision_from_args
from dbeta_hf.evaluation.embeddings import (
    cpu_supports_bf16,
    extract_ecg_features,
    extract_text_features,
    precision_context,
    resolve_precision,
)
from dbeta_hf.pretraining.recipes import tiny_config
from tests.helpers import load_example

# tiny: the test-suite's 32-wide model; mid: 256 wide, 4 ECG layers, 2 T5 layers (about 9M parameters)
SIZES = {"tiny": dict(hidden=32), "mid": dict(hidden=256, ecg_layers=4, text_layers=2)}


def _model(size: str) -> DBetaModel:
    torch.manual_seed(0)
    return DBetaModel(tiny_config(vocab_size=500, dropout=0.0, **SIZES[size])).eval()


def _ecgs(n=3, seed=0):
    return torch.randn(n, 12, 5000, generator=torch.Generator().manual_seed(seed)) * 0.3


# ------------------------------------------------------------------------------------------ cpu_supports_bf16
def test_cpu_supports_bf16_reads_the_instruction_flags(monkeypatch):
    monkeypatch.delenv("DBETA_CPU_BF16", raising=False)
    monkeypatch.setattr(E, "_cpuinfo_flags", lambda: {"avx2", "avx512f"})
    assert cpu_supports_bf16() is False
    if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("oneDNN without bf16 on this build: the flags are not consulted")
    monkeypatch.setattr(E, "_cpuinfo_flags", lambda: {"avx2", "amx_bf16"})
    assert cpu_supports_bf16() is True
    monkeypatch.setattr(E, "_cpuinfo_flags", lambda: {"avx512_bf16"})
    assert cpu_supports_bf16() is True


def test_cpu_supports_bf16_environment_override(monkeypatch):
    monkeypatch.setenv("DBETA_CPU_BF16", "0")
    assert cpu_supports_bf16() is False
    monkeypatch.setenv("DBETA_CPU_BF16", "1")
    assert cpu_supports_bf16() is True
    monkeypatch.setenv("DBETA_CPU_BF16", "yes")
    with pytest.raises(ValueError, match="DBETA_CPU_BF16 must be 0 or 1"):
        cpu_supports_bf16()


def test_resolve_precision(monkeypatch):
    monkeypatch.setenv("DBETA_CPU_BF16", "1")
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu", autocast=False) == "fp32"  # the former switch overrides
    assert resolve_precision("fp32", "cpu", autocast=True) == "bf16"
    monkeypatch.setenv("DBETA_CPU_BF16", "0")
    assert resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="resolved precision"):
        precision_context("cpu", "auto")


# ------------------------------------------------------------------------------------------ extraction
def test_feature_extraction_defaults_to_fp32(monkeypatch):
    """Issue #24 item 4: fp32 unless bf16 is asked for, on every device (the official notebook runs fp32)."""
    monkeypatch.setenv("DBETA_CPU_BF16", "1")  # even where bf16 is native
    model, ecgs = _model("tiny"), _ecgs()
    seen = []
    original = E.precision_context

    def spy(device, precision):
        seen.append(precision)
        return original(device, precision)

    monkeypatch.setattr(E, "precision_context", spy)
    feats = extract_ecg_features(model, ecgs, batch_size=2, progress=False)
    with torch.no_grad():
        reference = model.get_ecg_features(ecgs)
    torch.testing.assert_close(feats, reference, atol=1e-6, rtol=1e-5)  # fp32 (batches of 2 vs 3: rounding only)
    assert seen == ["fp32", "fp32"]
    seen.clear()
    bf16 = extract_ecg_features(model, ecgs, batch_size=3, progress=False, precision="bf16")
    assert seen == ["bf16"]
    assert (bf16 - reference).abs().max() > 1e-5  # the bf16 path differs measurably from fp32
    assert next(model.parameters()).dtype == torch.float32  # the CPU bf16 path ran a bf16 copy, not the model


def test_cpu_bf16_path_runs_bf16_weights():
    model = _model("tiny")
    copy = E.bf16_inference_model(model, "cpu", "bf16")
    assert copy is not model and next(copy.parameters()).dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32
    assert E.bf16_inference_model(model, "cpu", "fp32") is model
    ecgs = _ecgs(2)
    with torch.no_grad(), precision_context("cpu", "bf16"):
        expected = copy.get_ecg_features(ecgs.bfloat16()).float()
    torch.testing.assert_close(extract_ecg_features(model, ecgs, progress=False, precision="bf16"), expected,
                               atol=0, rtol=0)


def test_zero_shot_classifier_default_is_fp32(monkeypatch):
    from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier

    seen = []
    original = E.precision_context
    monkeypatch.setattr(E, "precision_context", lambda d, p: seen.append(p) or original(d, p))
    classifier = DBetaZeroShotClassifier(_model("tiny"), processor=None, batch_size=2)
    classifier.encode_ecgs(_ecgs(3))
    assert seen == ["fp32", "fp32"]
    seen.clear()
    DBetaZeroShotClassifier(_model("tiny"), processor=None, autocast=True).encode_ecgs(_ecgs(2))
    assert seen == ["bf16"]


@pytest.mark.parametrize("size", ["tiny", "mid"])
def test_bf16_embeddings_agree_with_fp32(size, tiny_tokenizer):
    """bf16 autocast on the CPU: per-record cosine similarity to the fp32 embeddings >= 0.999 (ECG and text)."""
    model, ecgs = _model(size), _ecgs(4)
    fp32 = extract_ecg_features(model, ecgs, batch_size=4, progress=False, precision="fp32")
    bf16 = extract_ecg_features(model, ecgs, batch_size=4, progress=False, precision="bf16")
    assert fp32.dtype == bf16.dtype == torch.float32
    assert not torch.equal(fp32, bf16)  # the bf16 path really ran in bf16
    cos = F.cosine_similarity(fp32, bf16, dim=-1)
    assert cos.min().item() >= 0.999, cos

    ids = torch.randint(3, 500, (4, 24), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    with torch.no_grad():
        t32 = model.get_text_features(ids, mask)
        with precision_context("cpu", "bf16"):
            t16 = model.get_text_features(ids, mask).float()
    assert not torch.equal(t32, t16)
    cos = F.cosine_similarity(t32, t16, dim=-1)
    assert cos.min().item() >= 0.999, cos


def test_text_extraction_precision(tiny_tokenizer):
    from dbeta_hf import DBetaECGFeatureExtractor, DBetaProcessor

    processor = DBetaProcessor(feature_extractor=DBetaECGFeatureExtractor(), tokenizer=tiny_tokenizer)
    model = _model("tiny")
    texts = ["sinus rhythm", "atrial fibrillation with rapid ventricular response"]
    fp32 = extract_text_features(model, processor, texts)
    bf16 = extract_text_features(model, processor, texts, precision="bf16")
    assert torch.equal(fp32, extract_text_features(model, processor, texts, precision="fp32"))
    assert F.cosine_similarity(fp32, bf16, dim=-1).min().item() >= 0.999


def test_cache_is_keyed_by_precision(tmp_path):
    model, ecgs = _model("tiny"), _ecgs(2)
    fp32 = extract_ecg_features(model, ecgs, progress=False, cache_dir=tmp_path)
    bf16 = extract_ecg_features(model, ecgs, progress=False, cache_dir=tmp_path, precision="bf16")
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    assert not torch.equal(fp32, bf16)
    assert torch.equal(extract_ecg_features(model, ecgs, progress=False, cache_dir=tmp_path), fp32)


# ------------------------------------------------------------------------------------------ the examples' flag
def test_precision_flag():
    import argparse

    parser = argparse.ArgumentParser()
    add_precision_arguments(parser)
    assert parser.parse_args([]).precision == "fp32"
    assert parser.parse_args(["--bf16"]).precision == "bf16"
    assert parser.parse_args(["--precision", "auto"]).precision == "auto"
    assert precision_from_args(parser.parse_args([]), "cpu") == "fp32"
    with pytest.raises(SystemExit):
        parser.parse_args(["--precision", "fp16"])


@pytest.mark.parametrize("example", ["zero_shot", "linear_probe", "retrieval"])
def test_examples_share_the_precision_flag(example):
    module = load_example(example)
    assert module.parse_args([]).precision == "fp32"
    assert module.parse_args(["--bf16"]).precision == "bf16"
    assert module.parse_args(["--precision", "auto"]).precision == "auto"


def test_finetune_has_no_feature_extraction_precision_flag():
    # finetune.py extracts no frozen features (its precision is the Trainer's): a flag would do nothing
    with pytest.raises(SystemExit):
        load_example("finetune").parse_args(["--precision", "bf16"])


# ------------------------------------------------------------------------------------------ torch.compile
def test_ecg_tower_has_no_graph_break():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = DBetaECGModel(tiny_config(dropout=0.0)).eval()
    with torch.no_grad():
        explanation = torch._dynamo.explain(model.get_ecg_features)(_ecgs(2))
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1
    torch._dynamo.reset()
