"""The demo tokenizer (`train_t5_tokenizer`): a function of its texts alone; whole-word vocabularies for small report
corpora."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import REPO

from dbeta_hf.pretraining.tokenizer import train_t5_tokenizer

# Train four times in one process and print the vocabularies (ids in order). The corpus has many pieces of equal
# score (digits, single letters), whose order the trainer used to change from run to run.
_TRAIN_SCRIPT = """
import json, random
from dbeta_hf.pretraining.tokenizer import train_t5_tokenizer
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


REPORTS = ["sinus rhythm. normal ecg.", "sinus tachycardia. normal ecg except for rate.",
           "sinus bradycardia. first degree av block. borderline ecg.",
           "atrial fibrillation with rapid ventricular response. right bundle branch block. abnormal ecg."] * 20


def test_whole_words_gives_one_token_per_known_word():
    tok = train_t5_tokenizer(REPORTS, vocab_size=400, whole_words=True)
    assert tok.tokenize("sinus tachycardia. abnormal ecg.") == ["▁sinus", "▁tachycardia", ".", "▁abnormal", "▁ecg", "."]
    # T5 layout: pad 0, eos 1, unk 2, sentinels at the end (<extra_id_0> is the MLM mask token)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids("<extra_id_0>") != tok.unk_token_id
    # unknown words fall back to characters instead of <unk>
    pieces = tok.tokenize("sinus xyz.")
    assert pieces[0] == "▁sinus" and "".join(pieces[1:]).replace("▁", "") == "xyz." and tok.unk_token not in pieces
    assert tok.decode(tok("sinus rhythm. normal ecg.").input_ids, skip_special_tokens=True) == "sinus rhythm. normal ecg."


def test_default_unigram_splits_frequent_words_of_a_small_corpus():
    """Why the demo asks for whole words: the unigram trainer fragments words of a tiny repetitive corpus."""
    whole = train_t5_tokenizer(REPORTS, vocab_size=400, whole_words=True)
    unigram = train_t5_tokenizer(REPORTS, vocab_size=400)
    text = "sinus bradycardia. first degree av block. borderline ecg."
    assert len(unigram.tokenize(text)) > len(whole.tokenize(text)) == 11
