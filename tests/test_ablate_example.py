"""examples/ablate.py: a two-variant smoke run writes the Table-6 layout and JSON with one row per variant."""

from __future__ import annotations

import json

import pytest
from helpers import REPO, load_example

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def test_two_variants_smoke(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "examples"))  # `python examples/ablate.py` has its folder on sys.path
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
        assert std is None and mean == mean  # one seed: no spread, a real number
    # the no-ETS run trained with ets_loss_weight=0 (the ETS loss is still reported)
    assert results["variants"]["no_ets"]["runs"][0]["label"] == "w/o ETS"
    saved = json.loads((out / "ablation_results.json").read_text())
    assert set(saved["variants"]) == {"full", "no_ets"}
    table = (out / "ablation_results.md").read_text()
    assert "| D-BETA (full recipe) |" in table and "| w/o ETS |" in table and "Zero-shot AUROC (%)" in table
    assert "±" not in table.split("\n\n")[0] and "One seed (0), no spread" in table
    assert table in capsys.readouterr().out


def test_unknown_variant_is_rejected():
    ablate = load_example("ablate")
    with pytest.raises(SystemExit):
        ablate.main(["--variants", "no_such_variant"])


def test_policy_variants_flip_the_recipe_flags(tmp_path, monkeypatch):
    """The variants that change a loss policy pass the training-argument flag that flips the recipe's value."""
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    ablate = load_example("ablate")
    import pretrain

    runs = []
    monkeypatch.setattr(pretrain, "main", lambda argv: runs.append(argv) or {"zero_shot": {}, "last_log": {}})
    results = ablate.main(["--variants", "flip_matched_only", "ets_masked_inputs", "--seeds", "0",
                           "--output_dir", str(tmp_path)])
    flip, masked = (pretrain.parse_arguments(argv)[2] for argv in runs)
    assert flip.mlm_mem_on_matched_only is False and flip.ets_unmasked_inputs is True  # the demo recipe: True, True
    assert masked.ets_unmasked_inputs is False and masked.mlm_mem_on_matched_only is True
    assert results["variants"]["flip_matched_only"]["label"] == "mlm_mem_on_matched_only=False"
    assert ablate.recipe_matched_only(pretrain, ["--dataset_path", str(tmp_path)]) is False  # the official default
    assert ablate.recipe_matched_only(pretrain, ["--mlm_mem_on_matched_only", "false"]) is False


def test_short_runs_log_their_losses_and_missing_numbers_say_why(tmp_path, monkeypatch):
    """`--max_steps 10` (below the recipe's logging interval of 50) gets --logging_steps 10, so the last loss is
    logged; a loss or AUROC that is still missing is explained under the table."""
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    ablate = load_example("ablate")
    import pretrain

    runs = []
    monkeypatch.setattr(pretrain, "main", lambda argv: runs.append(argv) or {"zero_shot": {}, "last_log": {}})
    results = ablate.main(["--variants", "full", "--seeds", "0", "1", "--max_steps", "10", "--output_dir", str(tmp_path)])
    assert all(argv[argv.index("--logging_steps") + 1] == "10" for argv in runs) and len(runs) == 2
    ablate.main(["--variants", "full", "--seeds", "0", "--max_steps", "10", "--output_dir", str(tmp_path),
                 "--logging_steps", "2"])
    assert runs[-1].count("--logging_steps") == 1 and runs[-1][runs[-1].index("--logging_steps") + 1] == "2"
    table = ablate.format_table(results["variants"], [0, 1], 10)
    assert "n/a loss: no training loss was logged within the run's steps" in table
    assert "n/a AUROC: no class labels to score" in table and "Mean ± std over seeds [0, 1]" in table
