"""The demo tokenizer (`train_t5_tokenizer`) is a function of its texts alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import REPO

# Train four times in one process and print the vocabularies (ids in order). The corpus has many pieces of equal
# score (digits, single letters), whose order the trainer used to change from run to run.
_TRAIN_SCRIPT = """
import json, random
from dbeta_hf.tokenizer_utils import train_t5_tokenizer
rng = random.Random(0)
findings = ["sinus rhythm", "atrial fibrillation", "left bundle branch block", "normal ecg", "st elevation"]
texts = [f"{rng.choice(findings)}. heart rate {rng.randint(40, 180)} bpm. pr {rng.randint(100, 300)} ms. "
         f"qrs {rng.randint(60, 160)} ms." for _ in range(200)]
runs = []
for _ in range(4):
    tokenizer = train_t5_tokenizer(texts, vocab_size=400)
    runs.append(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
print(json.dumps(runs))
"""


def _train_in_subprocess(hash_seed: str) -> list[list[str]]:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(REPO), TOKENIZERS_PARALLELISM="false")
    result = subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT], capture_output=True, text=True, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_training_gives_identical_ids_across_runs_and_processes():
    runs = _train_in_subprocess("1") + _train_in_subprocess("2")
    first = runs[0]
    assert first[:3] == ["<pad>", "</s>", "<unk>"] and first[-100] == "<extra_id_0>"  # T5's id layout
    for index, vocabulary in enumerate(runs[1:], start=1):
        assert vocabulary == first, f"training run {index} gave other ids: " + str(
            [(i, a, b) for i, (a, b) in enumerate(zip(first, vocabulary)) if a != b][:5]
        )
    digits = [first.index(piece) for piece in ("1", "2") if piece in first]
    assert len(digits) == 2  # the pieces that used to swap are in the vocabulary
