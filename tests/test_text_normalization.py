"""`normalize_report` follows the official ``process_text`` steps: decorations are stripped at the ends only."""

import doctest

import pytest

import dbeta_hf.text_normalization as text_normalization
from dbeta_hf import normalize_report


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("qtc=450", "qtc=450"),  # '=' inside a report stays
        ("--- pediatric criteria used ---", "pediatric criteria used"),  # end dashes go
        ("*** Sinus rhythm ***  Normal EKG =", "sinus rhythm *** normal ecg"),  # inner '***' stays
        ("*** Abnormal ECG ***", "abnormal ecg"),
        ("Sinus rhythm =-", "sinus rhythm"),
        ("left axis deviation - age undetermined", "left axis deviation - age undetermined"),
        ("  Atrial   fibrillation\n", "atrial fibrillation"),
        ("=== ***", ""),
    ],
)
def test_decorations_are_stripped_only_at_the_ends(report, expected):
    assert normalize_report(report) == expected


def test_matches_the_official_strip_sequence_up_to_white_space():
    # The official steps written out with str methods; ours adds only the white-space folding.
    def official(text):
        text = text.lower().strip().replace("ekg", "ecg")
        return text.strip("*** ").strip(" ***").strip("***").strip("=-").strip("=")

    for report in ["*** EKG ***", "qt=400 ms -", "-- borderline ecg --", "* x *", "= 1st degree a-v block ="]:
        assert normalize_report(report) == " ".join(official(report).split())


def test_docstring_examples_hold():
    result = doctest.testmod(text_normalization)
    assert result.attempted >= 3 and result.failed == 0


def test_rejects_non_strings():
    with pytest.raises(TypeError, match="must be a str"):
        normalize_report(None)
