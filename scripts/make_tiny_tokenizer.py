"""Build the tiny T5-compatible tokenizer kept in tests/fixtures/tiny_t5_tokenizer.

Run once (offline): ``python scripts/make_tiny_tokenizer.py``. The result follows the T5 id layout
(pad=0, eos=1, unk=2, 100 ``<extra_id_N>`` sentinels) so every code path that expects
``google/flan-t5-base`` runs on it, just with a vocabulary of a few hundred pieces.
"""

from __future__ import annotations

import argparse
from pathlib import Path


REPORT_LINES = [
    "sinus rhythm", "sinus bradycardia", "sinus tachycardia", "sinus arrhythmia", "normal ecg",
    "abnormal ecg", "borderline ecg", "otherwise normal ecg", "atrial fibrillation", "atrial flutter",
    "atrial fibrillation with rapid ventricular response", "first degree av block", "second degree av block",
    "complete heart block", "right bundle branch block", "left bundle branch block",
    "incomplete right bundle branch block", "left anterior fascicular block", "left posterior fascicular block",
    "left ventricular hypertrophy", "right ventricular hypertrophy", "left atrial enlargement",
    "right atrial abnormality", "possible right atrial abnormality", "inferior infarct, age undetermined",
    "anterior infarct", "anteroseptal infarct", "lateral infarct", "acute myocardial infarction",
    "st elevation", "st depression", "nonspecific st and t wave abnormality", "t wave inversion",
    "prolonged qt interval", "low voltage qrs", "left axis deviation", "right axis deviation",
    "premature ventricular contractions", "premature atrial contractions", "ventricular bigeminy",
    "ventricular trigeminy", "supraventricular tachycardia", "paroxysmal supraventricular tachycardia",
    "pacemaker rhythm", "wolff-parkinson-white pattern", "early repolarization", "poor r wave progression",
    "abnormal r-wave progression, early transition", "normal ecg except for rate", "probable normal variant",
    "heart rate 54 bpm", "heart rate 72 bpm", "heart rate 118 bpm", "qrs duration 96 ms", "pr interval 210 ms",
    "slower-than-normal heart rate originating in the sinoatrial node, usually below 60 bpm.",
    "faster-than-normal heart rate originating in the sinoatrial node, usually above 100 bpm.",
    "irregular and often rapid heart rate due to uncoordinated atrial activity.",
    "prolongation of the pr interval with all atrial impulses being conducted to the ventricles.",
    "blockage in the left bundle branch causing a delay in left ventricular depolarization.",
    "heart attack occurring in the inferior wall of the left ventricle, typically detected by changes in leads ii, iii, and avf.",
    "hypertrophy conduction disturbance myocardial infarction ischemia st/t change",
    "leads i ii iii avr avl avf v1 v2 v3 v4 v5 v6 millivolts",
    "0 1 2 3 4 5 6 7 8 9 a b c d e f g h i j k l m n o p q r s t u v w x y z",
]


def build(vocab_size: int = 400):
    from dbeta_hf.pretraining.tokenizer import train_t5_tokenizer

    corpus = REPORT_LINES * 4 + [line.upper() for line in REPORT_LINES]
    return train_t5_tokenizer(corpus, vocab_size=vocab_size, normalize=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default=str(Path(__file__).resolve().parents[1] / "tests/fixtures/tiny_t5_tokenizer"))
    parser.add_argument("--vocab-size", type=int, default=400)
    args = parser.parse_args()
    tokenizer = build(args.vocab_size)
    tokenizer.save_pretrained(args.output)
    print(f"saved {len(tokenizer)} tokens to {args.output}")


if __name__ == "__main__":
    main()
