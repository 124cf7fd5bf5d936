#!/usr/bin/env python
"""Supervised upper bound of the pretraining demo (issue 16): the demo's ECG tower trained on the labels.

`DBetaForECGClassification` with the embedded demo's tower (`dbeta_hf.pretraining.recipes.DEMO_RECIPE`'s model:
hidden 64, 2 ECG layers, no dropout, initializer_range 0.1) learns the six synthetic classes directly (multi-label
BCE, AdamW, one-cycle learning rate, batch 16) on the demo's 1,536 training pairs and is scored on its 256 held-out
ECGs, the same ones the demo's zero-shot and probe numbers use. A pretrained model's linear probe and zero-shot
AUROC are read against this number (`benchmarks/README_learning.md`, "Upper bounds").

    python benchmarks/bench_supervised_bound.py                 # 600 steps, seed 0
    python benchmarks/bench_supervised_bound.py --hidden 32 --ecg_layers 1
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import _common  # noqa: F401  (offline settings, the repository on sys.path)
from dbeta_hf import DBetaForECGClassification
from dbeta_hf.evaluation.metrics import multilabel_auroc
from dbeta_hf.pretraining.recipes import DEMO_RECIPE, tiny_config
from dbeta_hf.data.synthetic import SYNTHETIC_CLASSES, make_synthetic_corpus


def main(argv=None) -> dict:
    demo = DEMO_RECIPE.model
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--hidden", type=int, default=demo["hidden"], help=f"tower width (the demo: {demo['hidden']})")
    parser.add_argument("--ecg_layers", type=int, default=demo["ecg_layers"],
                        help=f"ECG transformer layers (the demo: {demo['ecg_layers']})")
    parser.add_argument("--train_records", type=int, default=DEMO_RECIPE.train_records)
    parser.add_argument("--eval_records", type=int, default=DEMO_RECIPE.eval_records)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    start = time.time()
    train = make_synthetic_corpus(args.train_records, seed=0).with_format("numpy")[:]
    heldout = make_synthetic_corpus(args.eval_records, seed=1).with_format("numpy")[:]
    x_train = torch.from_numpy(train["ecg"].astype(np.float32))
    y_train = torch.from_numpy(train["labels"].astype(bool))
    x_test = torch.from_numpy(heldout["ecg"].astype(np.float32))
    y_test = heldout["labels"].astype(bool)

    torch.manual_seed(args.seed)
    settings = {k: v for k, v in demo.items() if k in ("initializer_range", "dropout")}
    config = tiny_config(hidden=args.hidden, ecg_layers=args.ecg_layers, **settings)
    config.num_labels = len(SYNTHETIC_CLASSES)
    config.problem_type = "multi_label_classification"
    model = DBetaForECGClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.learning_rate, total_steps=args.steps)
    generator = torch.Generator().manual_seed(args.seed)
    model.train()
    for step in range(1, args.steps + 1):
        rows = torch.randint(len(x_train), (args.batch_size,), generator=generator)
        loss = model(ecg_values=x_train[rows], labels=y_train[rows]).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % 100 == 0 or step == args.steps:
            print(f"step {step}/{args.steps}  BCE {loss.item():.4f}", flush=True)
    model.eval()
    with torch.no_grad():
        scores = torch.cat([model(ecg_values=x_test[i : i + 64]).logits for i in range(0, len(x_test), 64)])
    result = multilabel_auroc(y_test, scores.numpy(), SYNTHETIC_CLASSES)
    summary = {"macro_auroc": result["macro_auroc"], "per_class": result["per_class"], "seconds": time.time() - start,
               **vars(args)}
    print(json.dumps(summary, indent=1, default=float))
    return summary


if __name__ == "__main__":
    main()
