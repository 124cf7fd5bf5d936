#!/usr/bin/env python
"""Score saved demo models with each kind of class text: the same weights and ECG embeddings, only the prompts change.

    python benchmarks/bench_demo_seeds.py --seeds 0 1 2 3 4 --workdir runs     # keeps one model per seed in runs/
    python benchmarks/bench_prompt_ensembles.py runs/default-seed*/

For every model folder (a `DBetaModel` with its processor) it prints the zero-shot macro AUROC on the demo's 256
held-out synthetic ECGs for: the description alone (the official scoring), the class name alone (the description's
first sentence), and the `DBetaZeroShotClassifier` prompt ensembles `"name+description"` and `"sentences"`; then the
lowest class AUROC of each kind over all folders.
"""

from __future__ import annotations

import argparse

import numpy as np

from dbeta_hf import DBetaModel, DBetaProcessor
from dbeta_hf.data.synthetic import SYNTHETIC_CLASSES, make_synthetic_corpus
from dbeta_hf.evaluation.embeddings import extract_ecg_features, labels_array
from dbeta_hf.evaluation.metrics import multilabel_auroc
from dbeta_hf.evaluation.prompts import describe_classes, description_sentences
from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier

KINDS = ("description", "name", "name+description", "sentences")


def score_folder(path: str, heldout, labels: np.ndarray) -> dict[str, dict]:
    model = DBetaModel.from_pretrained(path).eval()
    processor = DBetaProcessor.from_pretrained(path)
    ecg = extract_ecg_features(model, heldout, batch_size=64)
    names = list(SYNTHETIC_CLASSES)
    descriptions = describe_classes(names, task="synthetic")
    results = {}
    for kind in KINDS:
        if kind == "name":
            classifier = DBetaZeroShotClassifier(model, processor)
            texts = [description_sentences(d)[0] for d in descriptions]
            scores = classifier.scores_from_features(ecg, descriptions=texts)
        else:
            classifier = DBetaZeroShotClassifier(model, processor, prompt_ensemble=kind)
            scores = classifier.scores_from_features(ecg, class_names=names, task="synthetic")
        results[kind] = multilabel_auroc(labels, scores.numpy(), class_names=names)
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="saved demo models (output folders of examples/pretrain.py)")
    args = parser.parse_args(argv)
    heldout = make_synthetic_corpus(256, seed=1)  # the demo's held-out pairs
    labels = labels_array(heldout)
    every = {}
    print(f"{'model':<40} " + " ".join(f"{k:>17}" for k in KINDS))
    for folder in args.folders:
        every[folder] = score_folder(folder, heldout, labels)
        print(f"{folder[-40:]:<40} " + " ".join(f"{every[folder][k]['macro_auroc']:17.3f}" for k in KINDS), flush=True)
    for kind in KINDS:
        macros = [r[kind]["macro_auroc"] for r in every.values()]
        lowest = min(min(r[kind]["per_class"].values()) for r in every.values())
        print(f"{kind:>17}: macro mean {np.mean(macros):.3f}, min {np.min(macros):.3f}; lowest class {lowest:.3f}")
    return every


if __name__ == "__main__":
    main()
