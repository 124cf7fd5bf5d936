"""`save_pretrained` of the package's models and of the processor writes the folder's model card (README.md), on the
main process only; the processor saved after the model updates the card's loading example."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import dbeta_hf
from dbeta_hf import DBetaForPreTraining, DBetaModel, DBetaProcessor  # the first names taken register the card writer
from dbeta_hf.hub.model_card import refresh_model_card
from dbeta_hf.pretraining.recipes import tiny_config


def _loading_code(folder: Path) -> str:
    [code] = re.findall(r"```python\n(.*?)```", (folder / "README.md").read_text(), flags=re.S)
    return code


def test_hooks_are_the_card_writer():
    assert refresh_model_card in dbeta_hf.DBetaPreTrainedModel.save_hooks
    assert refresh_model_card in DBetaProcessor.save_hooks


def test_model_then_processor_save_writes_and_updates_the_card(tmp_path, tiny_tokenizer_path):
    torch.manual_seed(0)
    folder = tmp_path / "run"
    DBetaForPreTraining(tiny_config()).save_pretrained(folder)
    assert (folder / "README.md").is_file()
    assert "AutoProcessor" not in _loading_code(folder)
    DBetaProcessor.from_tokenizer(str(tiny_tokenizer_path)).save_pretrained(folder)
    assert "AutoProcessor.from_pretrained" in _loading_code(folder)


def test_processor_alone_writes_no_card_and_non_main_process_writes_none(tmp_path, tiny_tokenizer_path):
    DBetaProcessor.from_tokenizer(str(tiny_tokenizer_path)).save_pretrained(tmp_path / "proc")
    assert not (tmp_path / "proc" / "README.md").exists()
    DBetaModel(tiny_config()).save_pretrained(tmp_path / "rank1", is_main_process=False)
    assert not (tmp_path / "rank1" / "README.md").exists()
