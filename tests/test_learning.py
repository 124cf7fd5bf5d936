"""Pretraining learns: a short seeded run of the demo recipe on the synthetic corpus lowers all four losses and
gives held-out ECG features and zero-shot scores far above chance. A change that breaks learning fails here.

Measured for this run (200 steps, 512 training pairs, 128 held-out; benchmarks/README_learning.md, 2026-11-30):
first -> last logged MLM 4.62 -> 2.51, MEM 1.106 -> 0.997, ETM 0.69 -> 0.34, ETS 0.231 -> 0.096; linear-probe macro
AUROC 0.907; zero-shot macro 0.690 with sinus tachycardia 0.858 and bundle branch block 0.998 (chance: 0.5). The
thresholds leave a margin for other thread counts. The issue's zero-shot macro threshold of 0.75 needs the demo's
length (0.851 at 300 steps on 1,536 pairs, about 2 minutes), more than this test can spend: it already takes 80 s on
2 idle cores, over the issue's 60 s. 250 steps on 512 pairs gave the same 0.692.
"""

from __future__ import annotations

import pytest
from helpers import load_example

PROBE_MIN = 0.85  # chance is 0.5
ZERO_SHOT_MIN = 0.65
STACH_MIN = 0.75
BBB_MIN = 0.95


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    example = load_example("pretrain")
    out = tmp_path_factory.mktemp("learning")
    return example.main([
        "--output_dir", str(out), "--synthetic_records", "512", "--synthetic_eval_records", "128",
        "--max_steps", "200", "--logging_steps", "25", "--eval_strategy", "no", "--disable_tqdm", "true",
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
    assert zero_shot["per_class"]["STACH"] >= STACH_MIN, zero_shot["per_class"]
    assert zero_shot["per_class"]["BBB"] >= BBB_MIN, zero_shot["per_class"]
