"""Report text rules shared by the processor, the N3S index and the pretraining collator: the normalization, and
the longest tokenised text (`MAX_TEXT_LENGTH`, kept here so that a command line can show it without loading the
processor).

D-BETA normalizes machine reports before tokenising them (reference spec D.1/D.3). One *pass* of the official
normalization is, in order:

1. lower-case, then strip white space from both ends (``str.strip()``);
2. replace every ``ekg`` with ``ecg``;
3. ``str.strip`` with the character sets ``"*** "``, ``" ***"``, ``"***"``, ``"=-"``, ``"="``, in that order.

``str.strip`` removes characters of the given set from both ends only, so "qtc=450" keeps its "=" and
"a - b" keeps its dash; white space inside a report is kept as it is.

The official code has this pass twice, with the same steps: ``datasets/n3s.py:process_text`` (the N3S index
builder) and ``datasets/ecg_text_dataset.py:RawECGTextDataset.normalize_text`` (the pretraining dataset). The
pretraining text goes through ``normalize_text`` **twice**: ``ProcessedECGTextDataset.__getitem__`` normalizes
the report it reads and ``RawECGTextDataset.collator`` normalizes that result again, both for the text it
tokenises and for the N3S query of a negative row. The pass is not idempotent (step 3 strips ``"="`` only after
the ``"*"`` sets), so the second pass can change the text: "Normal ECG ***=" gives "normal ecg ***" after one
pass and "normal ecg" after two. The N3S index itself (``datasets/n3s.py:faiss_write``) holds reports after a
single ``process_text`` pass.

`normalize_report` therefore applies the pass twice by default (``passes=2``, what the official model was
trained on); ``passes=1`` gives the official N3S index text.
"""

from __future__ import annotations

from typing import Iterable

# Longest tokenised text, </s> included: D-BETA pretraining's `max_text_size - 2` (reference spec A.2, E). The
# processor, the pretraining collator and the evaluation code truncate at it.
MAX_TEXT_LENGTH = 254

# Character sets of the official ``str.strip`` calls, in order (step 3 of a pass).
_OFFICIAL_END_STRIPS = ("*** ", " ***", "***", "=-", "=")

#: How many times the official pretraining pipeline applies the normalization pass to a report
#: (``ProcessedECGTextDataset.__getitem__``, then ``RawECGTextDataset.collator``).
OFFICIAL_PRETRAINING_PASSES = 2


def normalize_report_once(text: str) -> str:
    """One pass of the official normalization (``datasets/n3s.py:process_text``).

    >>> normalize_report_once("Normal ECG ***=")
    'normal ecg ***'
    """
    if not isinstance(text, str):
        raise TypeError(f"a report must be a str, got {type(text).__name__}")
    text = text.lower().strip()
    text = text.replace("ekg", "ecg")
    for characters in _OFFICIAL_END_STRIPS:
        text = text.strip(characters)
    return text


def normalize_report(
    text: str, *, passes: int = OFFICIAL_PRETRAINING_PASSES, fold_whitespace: bool = False
) -> str:
    """Normalize one report the way the official D-BETA pretraining pipeline does.

    Applies the official pass (`normalize_report_once`, see the module docstring) `passes` times. The default,
    2, is the text the official model was trained on (``ProcessedECGTextDataset.__getitem__`` and
    ``RawECGTextDataset.collator`` of ``datasets/ecg_text_dataset.py`` each normalize it once); ``passes=1`` is
    the text of the official N3S index (``datasets/n3s.py:faiss_write``). Characters inside a report are never
    removed and white space inside it is kept, as in the official code.

    ``fold_whitespace=True`` (not an official step) then folds every run of white space into one space and strips
    the ends: a key for comparing reports (e.g. retrieval relevance), not the text the official model was fed.

    >>> normalize_report("*** Sinus rhythm *** Normal EKG =")
    'sinus rhythm *** normal ecg'
    >>> normalize_report("Normal ECG ***=")
    'normal ecg'
    >>> normalize_report("Normal ECG ***=", passes=1)
    'normal ecg ***'
    >>> normalize_report("QTc=450")
    'qtc=450'
    >>> normalize_report("--- Pediatric criteria used ---")
    'pediatric criteria used'
    >>> normalize_report("Sinus  rhythm =", fold_whitespace=True)
    'sinus rhythm'
    """
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(
            f"`passes` must be a positive int (2 = the official pretraining text, 1 = the official N3S index "
            f"text), got {passes!r}"
        )
    if not isinstance(text, str):
        raise TypeError(f"a report must be a str, got {type(text).__name__}")
    for _ in range(passes):
        text = normalize_report_once(text)
    return " ".join(text.split()) if fold_whitespace else text


def normalize_reports(texts: Iterable[str], *, passes: int = OFFICIAL_PRETRAINING_PASSES) -> list[str]:
    return [normalize_report(t, passes=passes) for t in texts]
