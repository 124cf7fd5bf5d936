"""The documentation of the deliberate differences from the official code and of converted weights."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"section {title!r} is missing"
    return match.group(1)


def test_readme_lists_the_differences_from_the_official_code():
    section = _section((REPO / "README.md").read_text(encoding="utf-8"), "Differences from the official code")
    for needle in ("world_size=1", "ets_global_batch", "mlm_mem_on_matched_only", "N3S", "<extra_id_0>",
                   "attention mask", "Text normalization", "Input convention", "prompt"):
        assert needle in section, needle


def test_model_card_metadata_and_input_convention():
    from dbeta_hf import DBetaECGFeatureExtractor
    from dbeta_hf.hub.model_card import build_model_card

    template = (REPO / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "zero-shot-classification" not in template.split("---")[1]  # the Hub's text task
    extractor = DBetaECGFeatureExtractor(lead_order="mimic", input_normalization="per-lead-zscore")
    card = build_model_card("ORG/dbeta-base", feature_extractor=extractor, converted_from_official=True)
    assert card.data.pipeline_tag == "feature-extraction" and card.data.license == "cc-by-nc-4.0"
    section = _section(str(card), "Input convention")
    assert "`lead_order=mimic`" in section and "`input_normalization=per-lead-zscore`" in section
    assert "diagnose_input_convention" in section and "input_convention.json" in section
    assert "| lead order / scaling | `lead_order=mimic`, `input_normalization=per-lead-zscore`" in str(card)
    standard = build_model_card("ORG/mine", feature_extractor=DBetaECGFeatureExtractor())
    assert "`lead_order=standard`" in _section(str(standard), "Input convention")
