"""The 26 classes scored by the PhysioNet/CinC Challenge 2021 and the weights of its challenge score.

Both tables ship as package data, copied as numbers from the challenge's evaluation repository
(https://github.com/physionetchallenges/evaluation-2021, BSD 2-Clause):

* ``resources/cinc2021_weights.csv``: the published ``weights.csv``, a 26 x 26 matrix whose rows are labels
  and columns classifier outputs. Eight SNOMED-CT codes are merged pairwise into four classes ("equivalent
  classes", joined with ``|``): complete / plain RBBB (``713427006|59118001``), complete / plain LBBB
  (``733534002|164909002``), PAC / SVPB (``284470004|63593006``) and PVC / VPB (``427172004|17338001``):
  30 codes in 26 classes.
* ``resources/cinc2021_scored_classes.csv``: abbreviation and name of each of the 30 scored codes
  (the challenge's ``dx_mapping_scored.csv``).

A class is named either by its codes (``"713427006|59118001"``, as the weights file writes it) or by its
abbreviations (``"CRBBB|RBBB"``); `resolve_cinc2021_class` accepts both, in any order of the parts, and a
single member of a merged class (``"59118001"`` or ``"RBBB"``) names the whole class.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

__all__ = [
    "CINC2021_NORMAL_CLASS",
    "CinC2021Class",
    "cinc2021_scored_classes",
    "cinc2021_class_names",
    "cinc2021_weights",
    "cinc2021_code_to_index",
    "resolve_cinc2021_class",
]

# The "inactive" classifier of the challenge score outputs only this class: sinus rhythm.
CINC2021_NORMAL_CLASS = "426783006"


@dataclass(frozen=True)
class CinC2021Class:
    """One scored class: its SNOMED-CT codes (merged codes in the weights file's order) and abbreviations."""

    codes: tuple[str, ...]
    abbreviations: tuple[str, ...]
    descriptions: tuple[str, ...]

    @property
    def name(self) -> str:
        """The weights file's column name, e.g. ``"713427006|59118001"``."""
        return "|".join(self.codes)

    @property
    def abbreviation(self) -> str:
        """e.g. ``"CRBBB|RBBB"``."""
        return "|".join(self.abbreviations)


def _data_lines(filename: str) -> list[str]:
    text = resources.files("dbeta_hf").joinpath(f"resources/{filename}").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


@lru_cache(maxsize=1)
def _tables() -> tuple[tuple[CinC2021Class, ...], np.ndarray]:
    rows = list(csv.reader(_data_lines("cinc2021_weights.csv")))
    column_names = [c.strip() for c in rows[0][1:]]
    row_names = [r[0].strip() for r in rows[1:]]
    if row_names != column_names:
        raise ValueError("cinc2021_weights.csv: the row and column classes differ")
    weights = np.array([[float(v) for v in r[1:]] for r in rows[1:]], dtype=np.float64)
    if weights.shape != (len(column_names), len(column_names)):
        raise ValueError(f"cinc2021_weights.csv: a {weights.shape} matrix for {len(column_names)} classes")
    info = {row["snomed_ct"]: row for row in csv.DictReader(_data_lines("cinc2021_scored_classes.csv"))}
    classes = []
    for name in column_names:
        codes = tuple(name.split("|"))
        missing = [c for c in codes if c not in info]
        if missing:
            raise ValueError(f"cinc2021_scored_classes.csv lacks the scored code(s) {missing}")
        classes.append(
            CinC2021Class(
                codes=codes,
                abbreviations=tuple(info[c]["abbreviation"] for c in codes),
                descriptions=tuple(info[c]["description"] for c in codes),
            )
        )
    weights.setflags(write=False)
    return tuple(classes), weights


def cinc2021_scored_classes() -> list[CinC2021Class]:
    """The 26 scored classes in the order of the challenge's ``weights.csv``."""
    return list(_tables()[0])


def cinc2021_class_names(style: str = "snomed") -> list[str]:
    """The 26 class names: ``"snomed"`` (the weights file's names, ``"713427006|59118001"``) or
    ``"abbreviation"`` (``"CRBBB|RBBB"``)."""
    if style not in ("snomed", "abbreviation"):
        raise ValueError(f"style must be 'snomed' or 'abbreviation', got {style!r}")
    return [c.name if style == "snomed" else c.abbreviation for c in _tables()[0]]


def cinc2021_weights() -> np.ndarray:
    """The (26, 26) weights matrix (rows: labels, columns: outputs), a read-only float64 array."""
    return _tables()[1]


@lru_cache(maxsize=1)
def _lookup() -> dict[str, int]:
    table: dict[str, int] = {}
    for index, cls in enumerate(_tables()[0]):
        for code, abbreviation in zip(cls.codes, cls.abbreviations):
            table[code] = index
            table[abbreviation.lower()] = index
    return table


def cinc2021_code_to_index() -> dict[str, int]:
    """``{snomed code: class index}`` for the 30 scored codes (merged codes share an index)."""
    return {code: index for index, cls in enumerate(_tables()[0]) for code in cls.codes}


def resolve_cinc2021_class(name: str) -> int:
    """The index of the scored class named `name` (codes or abbreviations joined with ``|``, any order).

    Raises `ValueError` for a part that is no scored code / abbreviation, or for parts of different classes.
    """
    parts = [p.strip() for p in str(name).split("|") if p.strip()]
    if not parts:
        raise ValueError(f"empty CinC 2021 class name {name!r}")
    lookup = _lookup()
    indices = set()
    for part in parts:
        index = lookup.get(part, lookup.get(part.lower()))
        if index is None:
            raise ValueError(
                f"{part!r} (in class {name!r}) is not one of the 30 SNOMED-CT codes or abbreviations scored by the "
                f"CinC 2021 challenge; known classes: {cinc2021_class_names()}"
            )
        indices.add(index)
    if len(indices) > 1:
        groups = [_tables()[0][i].name for i in sorted(indices)]
        raise ValueError(f"class {name!r} joins codes of different scored classes {groups}; merge only equivalent codes")
    return indices.pop()
