"""`normalize_report` reproduces the official pretraining text: the official normalization pass applied twice.

The reference below is written from the specification (reference spec D.1/D.3), not from the official code
and not with the same str methods as the package: one pass is lower-case, strip white space, ``ekg`` -> ``ecg``,
then strip the character sets ``"*** "``, ``" ***"``, ``"***"``, ``"=-"``, ``"="`` from both ends, in that order.
The official pipeline applies it in ``ProcessedECGTextDataset.__getitem__`` and again in
``RawECGTextDataset.collator`` (``datasets/ecg_text_dataset.py``).
"""

from __future__ import annotations

import doctest
import json
import os
import random
from pathlib import Path

import pytest

import dbeta_hf.text_normalization as text_normalization
from dbeta_hf import normalize_report
from dbeta_hf.text_normalization import OFFICIAL_PRETRAINING_PASSES, normalize_report_once, normalize_reports

REPO = Path(__file__).resolve().parents[1]
STRIP_SETS = ("*** ", " ***", "***", "=-", "=")


def _strip_ends(text: str, drop) -> str:
    """Remove characters for which `drop(c)` holds from both ends, one at a time (what ``str.strip`` specifies)."""
    start, end = 0, len(text)
    while start < end and drop(text[start]):
        start += 1
    while end > start and drop(text[end - 1]):
        end -= 1
    return text[start:end]


def _replace_ekg(text: str) -> str:
    out, i = [], 0
    while i < len(text):  # left to right, non-overlapping
        if text[i:i + 3] == "ekg":
            out.append("ecg")
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def reference_pass(text: str) -> str:
    text = _strip_ends(text.lower(), str.isspace)
    text = _replace_ekg(text)
    for characters in STRIP_SETS:
        text = _strip_ends(text, lambda c, s=characters: c in s)
    return text


def reference_official(text: str, passes: int = 2) -> str:
    for _ in range(passes):
        text = reference_pass(text)
    return text


# (report, after one pass = the official N3S index text, after two passes = the official training text)
EDGE_CASES = [
    ("Normal ECG ***=", "normal ecg ***", "normal ecg"),  # the example: '=' hides the '***' in pass 1
    ("abc *=", "abc *", "abc"),
    ("x *=*=", "x *=*", "x *"),  # a third pass would give "x": exactly two passes are reproduced
    ("abc =*=", "abc =*", "abc "),  # the official text can end in a space (the tokenizer drops it)
    ("qtc=450", "qtc=450", "qtc=450"),  # '=' inside a report stays
    ("--- Pediatric criteria used ---", " pediatric criteria used ", "pediatric criteria used"),
    ("*** Sinus rhythm ***  Normal EKG =", "sinus rhythm ***  normal ecg ", "sinus rhythm ***  normal ecg"),
    ("*** Abnormal ECG ***", "abnormal ecg", "abnormal ecg"),
    ("Sinus rhythm =-", "sinus rhythm ", "sinus rhythm"),
    ("left axis deviation - age undetermined", "left axis deviation - age undetermined",
     "left axis deviation - age undetermined"),
    ("  Atrial   fibrillation\n", "atrial   fibrillation", "atrial   fibrillation"),  # inner space is kept
    ("=== ***", "", ""),
    ("EKG", "ecg", "ecg"),
    ("eekgkg", "eecgkg", "eecgkg"),  # one replacement pass per normalization pass; "ecgkg" holds no "ekg"
    ("", "", ""),
]


@pytest.mark.parametrize(("report", "once", "twice"), EDGE_CASES)
def test_edge_cases(report, once, twice):
    assert reference_official(report, 1) == once and reference_official(report, 2) == twice  # the table itself
    assert normalize_report_once(report) == once
    assert normalize_report(report, passes=1) == once
    assert normalize_report(report) == twice
    assert normalize_report(report, passes=2) == twice


def test_fold_whitespace_is_a_comparison_key_only():
    assert normalize_report("  Sinus   rhythm.\tNormal EKG ***=") == "sinus   rhythm.\tnormal ecg"
    assert normalize_report("  Sinus   rhythm.\tNormal EKG ***=", fold_whitespace=True) == "sinus rhythm. normal ecg"
    assert normalize_report("abc =*=", fold_whitespace=True) == "abc"


def test_a_third_pass_would_change_the_text():
    assert OFFICIAL_PRETRAINING_PASSES == 2
    assert normalize_report("x *=*=", passes=3) == "x" != normalize_report("x *=*=")


def test_random_reports_match_the_reference():
    rng = random.Random(0)
    alphabet = ["*", " ", "=", "-", "e", "k", "g", "E", "K", "G", "a", "c", ".", "\t", "\n", "\u00a0", "*** ", "ekg"]
    reports = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 14))) for _ in range(4000)]
    differing = 0
    for report in reports:
        once, twice = reference_official(report, 1), reference_official(report, 2)
        assert normalize_report(report, passes=1) == once, repr(report)
        assert normalize_report(report) == twice, repr(report)
        differing += once != twice
    assert differing > 100  # the corpus exercises the second pass
    assert normalize_reports(reports[:50]) == [reference_official(r) for r in reports[:50]]
    assert normalize_reports(reports[:50], passes=1) == [reference_official(r, 1) for r in reports[:50]]


def _shipped_descriptions() -> list[str]:
    data = json.loads((REPO / "dbeta_hf" / "resources" / "class_descriptions.json").read_text(encoding="utf-8"))
    texts = []

    def walk(node):
        if isinstance(node, str):
            texts.append(node)
        elif isinstance(node, dict):
            for key, value in node.items():
                if not key.startswith("_"):
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk({k: v for k, v in data.items() if k in ("descriptions", "task_overrides")})
    return texts


def test_shipped_class_descriptions_are_fed_as_written():
    """Zero-shot prompts: the official notebook feeds ``context_llm[label].lower()`` (example.ipynb:zero_shot);
    our descriptions are already lower case, so the processor's normalization must leave them unchanged."""
    texts = _shipped_descriptions()
    assert len(texts) > 50
    for text in texts:
        assert normalize_report(text) == reference_official(text) == text.lower(), text


def _official_prompt_file() -> Path | None:
    """The official repository's ``configs/context_llm.json`` (CC BY-NC, not shipped): ``$DBETA_OFFICIAL_REPO`` or
    a local read-only copy."""
    for root in (os.environ.get("DBETA_OFFICIAL_REPO"), "/work/ref/dbeta"):
        if root and (Path(root) / "configs" / "context_llm.json").is_file():
            return Path(root) / "configs" / "context_llm.json"
    return None


@pytest.mark.skipif(_official_prompt_file() is None,
                    reason="the official D-BETA repository is not available (set DBETA_OFFICIAL_REPO)")
def test_every_official_prompt_text():
    prompts = json.loads(_official_prompt_file().read_text(encoding="utf-8"))
    assert isinstance(prompts, dict) and len(prompts) >= 70
    texts = list(prompts.values()) + list(prompts)  # the descriptions and the class codes
    for text in texts:
        assert normalize_report(text) == reference_official(text), text
        # the processor feeds what the official zero-shot notebook feeds (``.lower()`` only)
        assert normalize_report(text) == text.lower(), text


def test_processor_tokenises_the_two_pass_text(tiny_tokenizer_path, tiny_tokenizer):
    from dbeta_hf import DBetaProcessor

    processor = DBetaProcessor.from_tokenizer(tiny_tokenizer_path)
    out = processor(text=["Normal ECG ***=", "abc *="], return_tensors=None, padding=False)
    expected = tiny_tokenizer(["normal ecg", "abc"], return_tensors=None, padding=False)
    assert out["input_ids"] == expected["input_ids"]
    one_pass = tiny_tokenizer(["normal ecg ***", "abc *"], return_tensors=None, padding=False)
    assert out["input_ids"] != one_pass["input_ids"]  # the test can tell one pass from two


def test_docstring_examples_hold():
    result = doctest.testmod(text_normalization)
    assert result.attempted >= 7 and result.failed == 0


def test_rejects_non_strings_and_bad_pass_counts():
    with pytest.raises(TypeError, match="must be a str"):
        normalize_report(None)
    with pytest.raises(TypeError, match="must be a str"):
        normalize_report_once(b"sinus rhythm")
    for passes in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="`passes` must be a positive int"):
            normalize_report("sinus rhythm", passes=passes)
