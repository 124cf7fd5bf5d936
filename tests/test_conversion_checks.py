"""Converter inputs: official config fields, empty or truncated files are one-line errors, not tracebacks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dbeta_hf.conversion.convert_original_checkpoint import CheckpointConversionError, convert_original_checkpoint, main

PARITY = Path(__file__).parent / "fixtures" / "parity_tiny"


def official_config() -> dict:
    return json.loads((PARITY / "config.json").read_text())


@pytest.mark.parametrize("field", ["encoder_attention_heads", "layer_norm_first", "mem_layer", "max_text_size"])
def test_missing_official_config_field_is_named(tmp_path, field):
    config = official_config()
    del config["model"][field]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointConversionError, match=rf"lacks the field\(s\) {field};"):
        convert_original_checkpoint(PARITY / "checkpoint.pt", tmp_path / "config.json", PARITY / "text_config.json")


def test_fields_differing_from_the_official_config_are_reported(tmp_path, caplog):
    config = official_config()
    config["model"]["layer_norm_first"] = True  # shape-neutral: the checkpoint cannot tell
    (tmp_path / "config.json").write_text(json.dumps(config))
    with caplog.at_level(logging.WARNING, logger="dbeta_hf"):
        model = convert_original_checkpoint(PARITY / "checkpoint.pt", tmp_path / "config.json", PARITY / "text_config.json")
    assert model.config.ecg_config.layer_norm_first is True
    message = caplog.text
    assert "layer_norm_first=True (official False)" in message
    assert "encoder_layers=2 (official 8)" in message and "extractor_mode" not in message  # equal fields not listed


def test_old_mim_spellings_still_count(tmp_path):
    config = official_config()
    config["model"]["mim_layer"] = config["model"].pop("mem_layer")
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = convert_original_checkpoint(PARITY / "checkpoint.pt", tmp_path / "config.json", PARITY / "text_config.json")
    assert model.config.mem_layer == 1


def test_empty_and_truncated_checkpoints(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    data = (PARITY / "checkpoint.pt").read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointConversionError, match=r"empty\.pt is empty"):
        convert_original_checkpoint(tmp_path / "empty.pt", PARITY / "config.json", PARITY / "text_config.json")
    with pytest.raises(CheckpointConversionError, match=r"half\.pt is truncated or not a torch\.save file"):
        convert_original_checkpoint(tmp_path / "half.pt", PARITY / "config.json", PARITY / "text_config.json")


def test_empty_or_malformed_config_files(tmp_path):
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "bad.json").write_text('{"model": {')
    with pytest.raises(CheckpointConversionError, match=r"official config .*empty\.json is empty"):
        convert_original_checkpoint(PARITY / "checkpoint.pt", tmp_path / "empty.json")
    with pytest.raises(CheckpointConversionError, match=r"text config .*empty\.json is empty"):
        convert_original_checkpoint(PARITY / "checkpoint.pt", PARITY / "config.json", tmp_path / "empty.json")
    with pytest.raises(CheckpointConversionError, match=r"bad\.json is not valid JSON"):
        convert_original_checkpoint(PARITY / "checkpoint.pt", tmp_path / "bad.json")


def test_cli_prints_one_line(tmp_path, capsys):
    (tmp_path / "empty.pt").write_bytes(b"")
    code = main(["--checkpoint", str(tmp_path / "empty.pt"), "--original-config", str(PARITY / "config.json"),
                 "--text-config", str(PARITY / "text_config.json"), "--output-dir", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: checkpoint") and "is empty" in err[0]
