"""Report text normalisation shared by the processor, the N3S index and the pretraining collator.

D-BETA normalises machine reports before tokenising them (reference spec D.1/D.3): lower case,
surrounding white space stripped, ``ekg`` spelled ``ecg``, and the ``***`` / ``=-`` / ``=``
decorations of machine statements removed. We also fold runs of white space into one space so
that de-duplication of reports is not defeated by spacing.
"""

from __future__ import annotations

import re
from typing import Iterable

_DECORATIONS = ("*** ", " ***", "***", "=-", "=")
_SPACES = re.compile(r"\s+")


def normalize_report(text: str) -> str:
    """Normalise one report the way D-BETA pretraining does.

    >>> normalize_report("*** Sinus rhythm ***  Normal EKG =")
    'sinus rhythm normal ecg'
    """
    if not isinstance(text, str):
        raise TypeError(f"a report must be a str, got {type(text).__name__}")
    text = text.lower().strip()
    text = text.replace("ekg", "ecg")
    for decoration in _DECORATIONS:
        text = text.replace(decoration, "")
    return _SPACES.sub(" ", text).strip()


def normalize_reports(texts: Iterable[str]) -> list[str]:
    return [normalize_report(t) for t in texts]
