"""Report text normalization shared by the processor, the N3S index and the pretraining collator.

D-BETA normalizes machine reports before tokenising them (reference spec D.1/D.3). `normalize_report`
follows the official ``process_text`` (the N3S index builder) step by step; see its docstring.
"""

from __future__ import annotations

import re
from typing import Iterable

# Character sets of the official ``str.strip`` calls, in order. ``str.strip`` removes any of the given
# characters from both ends only, so "qtc=450" keeps its "=" and "a - b" keeps its dash.
_OFFICIAL_END_STRIPS = ("*** ", " ***", "***", "=-", "=")
_SPACES = re.compile(r"\s+")


def normalize_report(text: str) -> str:
    """Normalize one report the way the official D-BETA preprocessing does.

    The steps, in order:

    1. lower-case, then strip white space from both ends;
    2. replace every ``ekg`` with ``ecg``;
    3. strip ``*`` and spaces from both ends (the official ``strip('*** ')``, ``strip(' ***')``,
       ``strip('***')``);
    4. strip ``=`` and ``-`` from both ends (the official ``strip('=-')``, ``strip('=')``);
    5. (this package's only addition) fold every run of white space into one space and strip the ends.

    Steps 1-4 are the official ones exactly: characters inside the report are never removed. Step 5 does
    not change the T5 token ids (the T5 tokenizer already drops extra white space); it only keeps
    de-duplication of reports in the N3S index from being defeated by spacing.

    The official pretraining collator's ``normalize_text`` computes the same steps but returns the text
    after step 1 only (it returns the wrong variable); the N3S index was built with all of steps 1-4.

    >>> normalize_report("*** Sinus rhythm ***  Normal EKG =")
    'sinus rhythm *** normal ecg'
    >>> normalize_report("QTc=450")
    'qtc=450'
    >>> normalize_report("--- Pediatric criteria used ---")
    'pediatric criteria used'
    """
    if not isinstance(text, str):
        raise TypeError(f"a report must be a str, got {type(text).__name__}")
    text = text.lower().strip()
    text = text.replace("ekg", "ecg")
    for characters in _OFFICIAL_END_STRIPS:
        text = text.strip(characters)
    return _SPACES.sub(" ", text).strip()


def normalize_reports(texts: Iterable[str]) -> list[str]:
    return [normalize_report(t) for t in texts]
