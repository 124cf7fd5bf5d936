"""The processor's text checks: empty reports are errors, truncation is counted, all-<unk> text warns; the one text
length (`MAX_TEXT_LENGTH`) is the processor's and the pretraining collator's default."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dbeta_hf import DBetaProcessor
from dbeta_hf.pretraining.collator import DBetaPreTrainingCollator
from dbeta_hf.processing_dbeta import MAX_TEXT_LENGTH


@pytest.fixture(scope="module")
def processor(tiny_tokenizer_path):
    return DBetaProcessor.from_tokenizer(str(tiny_tokenizer_path))


@pytest.mark.parametrize("report", ["", "   ", "***", "*** =-= ***"])
def test_empty_or_decoration_only_report_is_an_error(processor, report):
    with pytest.raises(ValueError, match=r"text\(s\) 1 .* are empty after normalization.*lone </s>"):
        processor(text=["sinus rhythm", report])


def test_truncated_texts_are_counted(processor, caplog):
    long_report = "sinus rhythm normal ecg " * 40
    with caplog.at_level(logging.WARNING, logger="dbeta_hf"):
        out = processor(text=[long_report, "sinus rhythm", long_report], max_length=32)
    assert out["input_ids"].shape[1] == 32
    assert "2 of 3 text(s) were longer than max_length=32 tokens and were truncated" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dbeta_hf"):
        processor(text=["sinus rhythm"], max_length=32)
    assert "truncated" not in caplog.text


def test_text_unknown_to_the_tokenizer_warns(processor, caplog):
    with caplog.at_level(logging.WARNING, logger="dbeta_hf"):
        processor(text=["sinus rhythm", "\u5fc3\u96fb\u56f3 \u6b63\u5e38"])
    assert "1 text(s) are entirely unknown to the tokenizer" in caplog.text and "1 (" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="dbeta_hf"):
        processor(text=["sinus rhythm \u5fc3"])  # partly known: no warning
    assert "unknown" not in caplog.text


def test_one_text_length_for_the_processor_and_the_collator(processor, tiny_tokenizer, caplog):
    assert MAX_TEXT_LENGTH == 254  # D-BETA pretraining: max_text_size 256 - 2, </s> included
    long_report = "sinus rhythm normal ecg " * 100
    with caplog.at_level(logging.WARNING, logger="dbeta_hf"):
        ids = processor(text=[long_report, "sinus rhythm"])["input_ids"]
    assert ids.shape[1] == MAX_TEXT_LENGTH and ids[0, -1] == tiny_tokenizer.eos_token_id
    assert "1 of 2 text(s) were longer than max_length=254 tokens" in caplog.text
    collator = DBetaPreTrainingCollator(processor, negative_fraction=0.0)
    assert collator.max_length == MAX_TEXT_LENGTH
    ecg = np.random.default_rng(0).normal(scale=0.3, size=(12, 5000)).astype(np.float16)
    batch = collator([{"ecg": ecg, "report": long_report}, {"ecg": ecg, "report": "sinus rhythm"}])
    assert batch["input_ids"].shape[1] == MAX_TEXT_LENGTH


def test_per_call_normalization_and_padding_multiple(processor, tiny_tokenizer):
    raw = "*** Sinus rhythm ***"
    normalized = processor(text=raw)["input_ids"]
    as_given = processor(text=raw, normalize_text=False)["input_ids"]
    assert normalized.tolist() == tiny_tokenizer(["sinus rhythm"], return_tensors="pt")["input_ids"].tolist()
    assert as_given.tolist() == tiny_tokenizer([raw], return_tensors="pt")["input_ids"].tolist()
    padded = processor(text=["sinus rhythm", "af"], max_length=16, pad_to_multiple_of=8)["input_ids"]
    assert padded.shape[1] == 8
    assert processor.prepare_text(["EKG normal", "qtc=450"]) == ["ecg normal", "qtc=450"]
    with pytest.raises(ValueError, match=r"text\(s\) 0 \(' '\) are empty: they would"):
        processor.prepare_text([" "], normalize_text=False)


def test_collator_padding_multiple_must_divide_the_text_length(tiny_tokenizer):
    with pytest.raises(ValueError, match=r"max_length=254 is not a multiple of pad_to_multiple_of=8.*256"):
        DBetaPreTrainingCollator(tiny_tokenizer, pad_to_multiple_of=8)
    assert DBetaPreTrainingCollator(tiny_tokenizer, pad_to_multiple_of=8, max_length=256).max_length == 256
