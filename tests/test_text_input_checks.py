"""The processor's text checks: empty reports are errors, truncation is counted, all-<unk> text warns."""

from __future__ import annotations

import logging

import pytest

from dbeta_hf import DBetaProcessor


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
