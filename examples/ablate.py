#!/usr/bin/env python
"""Ablate every D-BETA pretraining component (the paper's Table 6) with the demo recipe of `examples/pretrain.py`.

Each variant is the pretraining recipe with one setting changed, trained for every seed and scored on held-out
pairs: zero-shot macro AUROC, linear-probe macro AUROC on the frozen ECG features, ECG->report Recall@1, and the
final value of each loss (the last logged average):

    ======================  ====================================================================
    full                    the recipe as `python examples/pretrain.py` runs it
                            (`dbeta_hf.pretraining.recipes.DEMO_RECIPE` on the synthetic corpus)
    w/o MLM / MEM / ETM /   that loss weighted 0 (``mlm_loss_weight=0``, ...)
    ETS
    random negatives        no N3S index: each negative row gets another report of its batch
                            (``--n3s_strategy in_batch``, the ALBEF-style random negative)
    N3S hard                N3S with the most similar different reports (``--n3s_strategy hard``)
    MLM/MEM on every row    ``--mlm_mem_on_matched_only`` flipped (the demo recipe scores matched rows
                            only)
    lead masking 0.5        the official collator's lead masking (``--lead_mask_prob 0.5``; the demo
                            recipe masks no lead)
    ETS on masked inputs    the official ETS views (``--ets_unmasked_inputs false``): the 25%-visible
                            MEM pass of the ECG and the MLM-masked report
    ETS on whole reports    the official ETS text (``--statement_dropout 0``; the demo recipe drops
                            each statement of the ETS view with p = 0.3)
    ======================  ====================================================================

Offline default (the synthetic corpus, 11 variants x 3 seeds of 150 steps each, a third of the demo's 450, so that
the 33 runs take under 30 min on 2 idle CPU cores)::

    python examples/ablate.py

Fewer runs: ``--seeds 0 --variants full no_ets --max_steps 100``; the demo's length: ``--max_steps 450``. A real dataset (a DatasetDict saved by
``python -m dbeta_hf.data build ...``): ``--dataset_path DIR`` plus any `examples/pretrain.py` argument
(``--text_encoder``, ``--n3s_index``, ``--per_device_train_batch_size``, ...), which is passed through; without a
``labels`` column in the validation split only retrieval and the losses are reported.

Prints a markdown table (mean ± std over seeds) and writes ``ablation_results.json`` and ``ablation_results.md``
into ``--output_dir``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("dbeta_hf.ablate")

# name -> (table label, DBetaConfig overrides, extra pretrain.py arguments)
VARIANTS: dict[str, tuple[str, dict, list[str]]] = {
    "full": ("D-BETA (full recipe)", {}, []),
    "no_mlm": ("w/o MLM", {"mlm_loss_weight": 0}, []),
    "no_mem": ("w/o MEM", {"mem_loss_weight": 0}, []),
    "no_etm": ("w/o ETM", {"etm_loss_weight": 0}, []),
    "no_ets": ("w/o ETS", {"ets_loss_weight": 0}, []),
    "random_negatives": ("random in-batch negatives (no N3S)", {}, ["--n3s_strategy", "in_batch"]),
    "n3s_hard": ("N3S 'hard'", {}, ["--n3s_strategy", "hard"]),
    "flip_matched_only": ("mlm_mem_on_matched_only flipped", {}, []),  # filled in from the recipe at run time
    "lead_masking": ("lead masking 0.5 (official collator)", {}, ["--lead_mask_prob", "0.5"]),
    "ets_masked_inputs": ("ETS on the masked inputs (official)", {}, ["--ets_unmasked_inputs", "false"]),
    "whole_report_ets": ("ETS on whole reports (official)", {}, ["--statement_dropout", "0"]),
}
DEFAULT_MAX_STEPS = 150  # a third of the demo's 450: 33 runs in under 30 min on 2 idle CPU cores
DEMO_LOGGING_STEPS = 50  # dbeta_hf.pretraining.recipes.DEMO_RECIPE's logging_steps
LOSSES = ("mlm_loss", "mem_loss", "etm_loss", "ets_loss")
MATCHED_ONLY_FLAG = "--mlm_mem_on_matched_only"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), help="variants to run")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max_steps", type=int, default=None,
                        help=f"training steps per run (default: {DEFAULT_MAX_STEPS} on the synthetic corpus, the "
                             "recipe's own with --dataset_path)")
    parser.add_argument("--output_dir", default="outputs/ablation")
    parser.add_argument("--config_overrides", default=None, help="DBetaConfig overrides applied to every variant")
    parser.add_argument("--class_names", nargs="+", default=None,
                        help="with --dataset_path: names of the validation split's label columns, for zero-shot/probe")
    parser.add_argument("--description_task", default=None, help="with --dataset_path: class-description task")
    return parser.parse_known_args(argv)


def recipe_matched_only(pretrain, passthrough: list[str]) -> bool:
    """The `mlm_mem_on_matched_only` the runs use: the demo recipe's on the synthetic corpus, the
    `DBetaTrainingArguments` default on real data, unless a passthrough flag sets it."""
    _, _, training_args, _ = pretrain.parse_arguments(list(passthrough))
    return bool(training_args.mlm_mem_on_matched_only)


def run_variant(pretrain, name: str, seed: int, args, passthrough: list[str], base_overrides: dict) -> dict:
    label, overrides, extra = VARIANTS[name]
    overrides = {**base_overrides, **overrides}
    if name == "flip_matched_only":
        flipped = not recipe_matched_only(pretrain, passthrough)
        extra = [MATCHED_ONLY_FLAG, str(flipped).lower()]
        label = f"mlm_mem_on_matched_only={flipped}"
    out = Path(args.output_dir) / name / f"seed{seed}"
    argv = list(passthrough) + extra + ["--output_dir", str(out), "--seed", str(seed), "--save_strategy", "no",
                                        "--eval_strategy", "no"]
    if args.max_steps is not None:
        argv += ["--max_steps", str(args.max_steps)]
        if not any(a.split("=")[0] in ("--logging_steps", "--logging-steps") for a in passthrough):
            # the recipe logs every 50 steps: a shorter run would log no loss at all
            argv += ["--logging_steps", str(max(1, min(DEMO_LOGGING_STEPS, args.max_steps)))]
    if overrides:
        argv += ["--config_overrides", ",".join(f"{k}={v}" for k, v in overrides.items())]
    logger.info("ablation %s, seed %d: %s", name, seed, " ".join(argv))
    start = time.time()
    summary = pretrain.main(argv)
    if "zero_shot" not in summary:  # a real dataset: score the saved model here
        summary.update(score_saved_model(out, args, passthrough))
    last = summary.get("last_log", {})
    return {
        "variant": name, "label": label, "seed": seed, "seconds": time.time() - start,
        "zero_shot_auroc": summary.get("zero_shot", {}).get("macro_auroc"),
        "linear_probe_auroc": summary.get("linear_probe", {}).get("macro_auroc"),
        "recall_at_1": summary["retrieval"]["ecg_to_report"]["R@1"] if "retrieval" in summary else None,
        **{name_: last.get(name_) for name_ in LOSSES},
        "zero_shot_per_class": summary.get("zero_shot", {}).get("per_class"),
    }


def score_saved_model(model_dir: Path, args, passthrough: list[str]) -> dict:
    import datasets

    from dbeta_hf import DBetaForPreTraining, DBetaProcessor
    from dbeta_hf.evaluation.pretraining_report import pretraining_report

    path = passthrough[passthrough.index("--dataset_path") + 1] if "--dataset_path" in passthrough else None
    if path is None:
        raise ValueError("ablation on a real dataset needs --dataset_path (a DatasetDict with train and validation)")
    data = datasets.load_from_disk(path)
    if "validation" not in data:
        raise ValueError(f"{path}: the ablation scores the 'validation' split, which this DatasetDict lacks")
    model = DBetaForPreTraining.from_pretrained(model_dir)
    processor = DBetaProcessor.from_pretrained(model_dir)
    class_names = args.class_names if "labels" in data["validation"].column_names else None
    return pretraining_report(model, processor, data["train"], data["validation"], class_names, task=args.description_task)


def _mean_std(values) -> tuple[float, float | None] | None:
    """(mean, sample std) of the finite values; std None for a single value (no spread to report)."""
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else None


def aggregate(runs: list[dict]) -> dict[str, dict]:
    table: dict[str, dict] = {}
    for run in runs:
        table.setdefault(run["variant"], {"label": run["label"], "runs": []})["runs"].append(run)
    for entry in table.values():
        for key in ("zero_shot_auroc", "linear_probe_auroc", "recall_at_1") + LOSSES:
            entry[key] = _mean_std([r[key] for r in entry["runs"]])
    return table


def format_table(table: dict[str, dict], seeds: list[int], max_steps) -> str:
    def cell(value, percent):
        if value is None:
            return "n/a"
        mean, std = value
        if std is None:
            return f"{100 * mean:.1f}" if percent else f"{mean:.3f}"
        return f"{100 * mean:.1f} ± {100 * std:.1f}" if percent else f"{mean:.3f} ± {std:.3f}"

    header = ["Variant", "Zero-shot AUROC (%)", "Linear probe AUROC (%)", "ECG→report R@1 (%)", "MLM", "MEM", "ETM", "ETS"]
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for entry in table.values():
        row = [entry["label"], cell(entry["zero_shot_auroc"], True), cell(entry["linear_probe_auroc"], True),
               cell(entry["recall_at_1"], True)] + [cell(entry[k], False) for k in LOSSES]
        lines.append("| " + " | ".join(row) + " |")
    steps = "the recipe's steps" if max_steps is None else f"{max_steps} steps"
    lines.append("")
    spread = f"Mean ± std over seeds {seeds}" if len(seeds) > 1 else f"One seed ({seeds[0]}), no spread"
    lines.append(f"{spread} ({steps} per run); losses are the last logged training averages.")
    if any(entry[k] is None for entry in table.values() for k in LOSSES):
        lines.append("n/a loss: no training loss was logged within the run's steps (its --logging_steps exceeds "
                     "--max_steps).")
    if any(entry["zero_shot_auroc"] is None for entry in table.values()):
        lines.append("n/a AUROC: no class labels to score (with --dataset_path, pass --class_names).")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args, passthrough = parse_args(argv)
    real_data = any(a.split("=")[0] in ("--dataset_path", "--mimic_root") for a in passthrough)
    if args.max_steps is None and not real_data:
        args.max_steps = DEFAULT_MAX_STEPS
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    import pretrain  # examples/pretrain.py, the sibling script (its folder is on sys.path when this one runs)

    base_overrides = pretrain.config_overrides(args.config_overrides)
    runs = []
    total = len(args.variants) * len(args.seeds)
    for i, name in enumerate(args.variants):
        for j, seed in enumerate(args.seeds):
            logger.info("[run %d/%d] variant %s, seed %d", i * len(args.seeds) + j + 1, total, name, seed)
            runs.append(run_variant(pretrain, name, seed, args, passthrough, base_overrides))
    table = aggregate(runs)
    markdown = format_table(table, args.seeds, args.max_steps)
    print(markdown)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {"seeds": args.seeds, "max_steps": args.max_steps, "passthrough": passthrough,
               "config_overrides": base_overrides, "variants": table}
    (out / "ablation_results.json").write_text(json.dumps(results, indent=2, default=float))
    (out / "ablation_results.md").write_text(markdown)
    return results


if __name__ == "__main__":
    main()
