"""examples/pretrain.py: the embedded synthetic default runs end to end and saves a loadable model + processor."""

from __future__ import annotations

import pytest
from helpers import load_example

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def test_embedded_default_end_to_end(tmp_path):
    from transformers import AutoProcessor

    from dbeta_hf import DBetaForPreTraining, DBetaModel, DBetaProcessor

    example = load_example("pretrain")
    out = tmp_path / "demo"
    summary = example.main([
        "--output_dir", str(out), "--synthetic_records", "48", "--synthetic_eval_records", "24",
        "--max_steps", "4", "--logging_steps", "2", "--eval_steps", "4", "--per_device_train_batch_size", "8",
    ])
    first, last = summary["first_log"], summary["last_log"]
    for name in ("mlm_loss", "mem_loss", "etm_loss", "ets_loss", "mlm_accuracy", "etm_accuracy"):
        assert name in first and name in last
    assert 0.0 <= summary["zero_shot"]["macro_auroc"] <= 1.0
    assert set(summary["zero_shot"]["per_class"]) <= {"SBRAD", "SR", "STACH", "AFIB", "1AVB", "BBB"}
    assert isinstance(DBetaForPreTraining.from_pretrained(out), DBetaForPreTraining)
    assert isinstance(DBetaModel.from_pretrained(out), DBetaModel)
    processor = AutoProcessor.from_pretrained(out)
    assert isinstance(processor, DBetaProcessor)
    assert (out / "n3s_index" / "n3s_config.json").is_file()


def test_config_overrides_are_parsed():
    example = load_example("pretrain")
    assert example.parse_config_overrides("a=1,b=true,c=-5e-1,d=none,e=text") == {
        "a": 1, "b": True, "c": -0.5, "d": None, "e": "text"}
    with pytest.raises(ValueError, match="key=value"):
        example.parse_config_overrides("oops")
