"""Pretraining learns: a short seeded run of the demo recipe on the synthetic corpus lowers all four losses and
gives held-out ECG features and zero-shot scores above chance. A change that breaks learning fails here.

Measured for this run (150 steps, 384 training pairs, 128 held-out; benchmarks/README_learning.md): first -> last
logged MLM 4.4 -> 2.85, MEM 0.60 -> 0.50, ETM 0.71 -> 0.55, ETS 0.240 -> 0.197; linear-probe macro AUROC 0.777;
zero-shot macro 0.538 with bundle branch block 0.861 and sinus tachycardia 0.777. The thresholds leave a margin for
other thread counts. (The issue's target of zero-shot macro >= 0.75 is not reached by the recipe yet.)
"""

from __future__ import annotations

import pytest
from helpers import load_example

PROBE_MIN = 0.70  # chance is 0.5
ZERO_SHOT_MIN = 0.50
BBB_MIN = 0.75


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    example = load_example("pretrain")
    out = tmp_path_factory.mktemp("learning")
    return example.main([
        "--output_dir", str(out), "--synthetic_records", "384", "--synthetic_eval_records", "128",
        "--max_steps", "150", "--logging_steps", "25", "--eval_strategy", "no", "--disable_tqdm", "true",
    ])


def test_the_four_losses_fall(short_run):
    first, last = short_run["first_log"], short_run["last_log"]
    for name in ("mlm_loss", "mem_loss", "etm_loss", "ets_loss"):
        assert last[name] < first[name], (name, first[name], last[name])


def test_held_out_features_and_zero_shot_beat_chance(short_run):
    probe = short_run["linear_probe"]
    zero_shot = short_run["zero_shot"]
    assert probe["macro_auroc"] >= PROBE_MIN, probe["per_class"]
    assert zero_shot["macro_auroc"] >= ZERO_SHOT_MIN, zero_shot["per_class"]
    assert zero_shot["per_class"]["BBB"] >= BBB_MIN, zero_shot["per_class"]
