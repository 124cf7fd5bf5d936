"""examples/ablate.py: a two-variant smoke run writes the Table-6 layout and JSON with one row per variant."""

from __future__ import annotations

import json

import pytest
from helpers import load_example

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def test_two_variants_smoke(tmp_path, capsys):
    ablate = load_example("ablate")
    out = tmp_path / "ablation"
    results = ablate.main([
        "--variants", "full", "no_ets", "--seeds", "0", "--max_steps", "3", "--output_dir", str(out),
        "--synthetic_records", "40", "--synthetic_eval_records", "16", "--per_device_train_batch_size", "8",
        "--logging_steps", "1", "--disable_tqdm", "true",
    ])
    assert set(results["variants"]) == {"full", "no_ets"}
    full = results["variants"]["full"]
    assert len(full["runs"]) == 1 and full["runs"][0]["seed"] == 0
    for key in ("zero_shot_auroc", "linear_probe_auroc", "recall_at_1", "mlm_loss", "mem_loss", "etm_loss", "ets_loss"):
        mean, std = full[key]
        assert std == 0.0 and mean == mean  # one seed: std 0, a real number
    # the no-ETS run trained with ets_loss_weight=0 (the ETS loss is still reported)
    assert results["variants"]["no_ets"]["runs"][0]["label"] == "w/o ETS"
    saved = json.loads((out / "ablation_results.json").read_text())
    assert set(saved["variants"]) == {"full", "no_ets"}
    table = (out / "ablation_results.md").read_text()
    assert "| D-BETA (full recipe) |" in table and "| w/o ETS |" in table and "Zero-shot AUROC (%)" in table
    assert table in capsys.readouterr().out


def test_unknown_variant_is_rejected():
    ablate = load_example("ablate")
    with pytest.raises(SystemExit):
        ablate.main(["--variants", "no_such_variant"])
