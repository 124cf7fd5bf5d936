"""The documentation of the differences from the official code, and of converted weights.

`docs/DIFFERENCES.md` holds every difference once, each claim about the official code with a `path:function`
citation; the README's section is a short list pointing to it. Where a copy of the official repository is available
(``$DBETA_OFFICIAL_REPO``), every cited function is looked up in its file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DIFFERENCES = REPO / "docs" / "DIFFERENCES.md"

# Files of the official repository (github.com/manhph2211/D-BETA @ 92e07e7) that the documents may cite.
OFFICIAL_FILES = {
    "datasets/ecg_dataset.py", "datasets/ecg_text_dataset.py", "datasets/base_dataset.py", "datasets/n3s.py",
    "losses/ets.py", "losses/loss.py", "models/base.py", "models/dbeta.py", "models/cross_layer.py",
    "models/processor.py", "models/supporter.py", "models/transformer.py", "utils/augmentations.py",
    "utils/data_utils.py", "example.ipynb", "configs/config.json", "configs/context_llm.json",
}
# Files of other projects cited for comparison (each named with its project in the text).
OTHER_PROJECT_FILES = {
    "utils/utils_dataset.py",  # MERL
    "finetune/finetune_dataset.py",  # MERL
    "fairseq_signals/criterions/m3ae_criterion.py",  # fairseq-signals
    "fairseq_signals/data/ecg/preprocess/preprocess.py",  # fairseq-signals
    "fairseq_signals/data/ecg/preprocess/preprocess_physionet2021.py",  # fairseq-signals
    "fairseq_signals/data/ecg/preprocess/manifest.py",  # fairseq-signals
    "fairseq_signals/criterions/binary_cross_entropy_with_logits.py",  # fairseq-signals
}
CITATION = re.compile(
    r"`((?:[\w.-]+/)*[\w.-]+\.(?:py|ipynb)):([\w.]+)`"  # path:function
    r"|`((?:configs/[\w.-]+\.json)|example\.ipynb|trainer/)`"  # a config file, the notebook, the empty trainer folder
)
LABELS = re.compile(r"\*\*(Official|Here|Why|Official behaviour)\.\*\*")


def _section(text: str, title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert match, f"section {title!r} is missing"
    return match.group(1)


def _blocks(text: str) -> list[str]:
    """Paragraphs and bullets (a bullet runs until the next bullet, heading or blank line)."""
    blocks, current = [], []
    for line in text.splitlines():
        starts = line.startswith(("* ", "#", "1.", "2.", "3.", "4.", "5.", "6.", "7.", "8.", "9.")) or not line.strip()
        if starts and current:
            blocks.append("\n".join(current))
            current = []
        if line.strip():
            current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def _numbered_sections(text: str) -> dict[int, str]:
    parts = re.split(r"^## (\d+)\. .*$", text, flags=re.M)
    return {int(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}


def test_every_official_claim_in_differences_cites_the_code():
    text = DIFFERENCES.read_text(encoding="utf-8")
    body = text[text.index("\n## "):]  # the introduction only names the reference commit
    uncited = []
    for block in _blocks(body):
        if block.startswith("#"):
            continue
        claim = re.sub(r"`[^`]*`", "", LABELS.sub("", block))  # the labels and code spans are not claims
        if re.search(r"official", claim, flags=re.I) and not CITATION.search(block):
            uncited.append(block)
    assert not uncited, "paragraphs about the official code without a citation:\n\n" + "\n\n".join(uncited)


def test_each_difference_has_evidence_what_we_do_why_and_the_official_switch():
    sections = _numbered_sections(DIFFERENCES.read_text(encoding="utf-8"))
    assert sorted(sections) == list(range(0, len(sections))) and len(sections) >= 11
    for number, body in sections.items():
        if number == 0:
            continue
        labels = LABELS.findall(body)
        assert labels == ["Official", "Here", "Why", "Official behaviour"], (number, labels)
        official = body[body.index("**Official.**"):body.index("**Here.**")]
        assert CITATION.search(official), f"section {number}: the official behaviour is not cited"


def test_cited_paths_are_files_of_the_official_repository_or_named_projects():
    text = DIFFERENCES.read_text(encoding="utf-8")
    cited = {m.group(1) or m.group(3) for m in CITATION.finditer(text)}
    unknown = {path for path in cited if path not in OFFICIAL_FILES | OTHER_PROJECT_FILES | {"trainer/"}}
    assert not unknown, unknown
    assert {"datasets/ecg_text_dataset.py", "datasets/n3s.py", "losses/ets.py", "models/dbeta.py"} <= cited


def _official_repo() -> Path | None:
    for root in (os.environ.get("DBETA_OFFICIAL_REPO"), "/work/ref/dbeta"):
        if root and (Path(root) / "models" / "dbeta.py").is_file():
            return Path(root)
    return None


@pytest.mark.skipif(_official_repo() is None, reason="no copy of the official repository (set DBETA_OFFICIAL_REPO)")
def test_cited_functions_exist_in_the_official_code():
    root = _official_repo()
    missing = []
    for doc in (DIFFERENCES, REPO / "README.md", REPO / "MODEL_CARD.md", REPO / "benchmarks" / "README_learning.md"):
        for match in CITATION.finditer(doc.read_text(encoding="utf-8")):
            path, name = match.group(1), match.group(2)
            if not path or path not in OFFICIAL_FILES:
                continue
            source = (root / path).read_text(encoding="utf-8")
            for part in name.split("."):
                if part == "__init__" or part == "__getitem__":
                    if f"def {part}" not in source:
                        missing.append(f"{doc.name}: {path}:{name}")
                elif not re.search(rf"(def|class) {re.escape(part)}\b", source):
                    missing.append(f"{doc.name}: {path}:{name}")
    assert not missing, missing


def test_readme_points_to_the_differences_document():
    section = _section((REPO / "README.md").read_text(encoding="utf-8"), "Differences from the official code")
    assert "docs/DIFFERENCES.md" in section
    items = re.findall(r"^\d+\. \*\*(.+?)\*\*", section, flags=re.M)
    numbered = _numbered_sections(DIFFERENCES.read_text(encoding="utf-8"))
    assert len(items) == len(numbered) - 1  # section 0 (the code cannot train) is the README's preamble
    assert len(section.strip().splitlines()) <= 25  # a short list; the evidence lives in docs/DIFFERENCES.md


FALSE_STATEMENTS = [
    # the official normalize_text returns `report`, the fully normalized text (datasets/ecg_text_dataset.py)
    r"wrong variable",
    r"returned the text after lower-?casing",
    r"training text was only lower-?cased",
    # the official ETS embeds the text it is fed, the MLM-masked report wherever the MLM collator runs
    r"never masked",
    r"saw unmasked reports",
    # not every recipe switch defaults to the official behaviour
    r"default\s*=\s*official",
    r"all defaulting to the official",
]


@pytest.mark.parametrize("pattern", FALSE_STATEMENTS)
def test_corrected_statements_stay_corrected(pattern):
    documents = [REPO / "README.md", REPO / "MODEL_CARD.md", DIFFERENCES, REPO / "dbeta_hf" / "text_normalization.py"]
    documents += sorted((REPO / "benchmarks").glob("README*.md"))
    hits = [doc.name for doc in documents if re.search(pattern, doc.read_text(encoding="utf-8"), flags=re.I)]
    assert not hits, f"{pattern!r} is back in {hits}"


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
