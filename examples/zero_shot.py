#!/usr/bin/env python
"""Zero-shot ECG classification with D-BETA: the paper's Table 3 (and Table 5, CODE-15) in one command.

Every class of a task is described by one sentence (the shipped class descriptions; `--descriptions my.json`
replaces them with a prompt set that must cover every class). The score of a class for an ECG is the official raw
dot product of the uni-modal ECG and description embeddings (`--similarity cosine` for the cosine); scores are
independent per class (multi-label). The scoring is `dbeta_hf.evaluation.zero_shot.evaluate_zero_shot` (and
`dbeta_hf.evaluation.cross_dataset.evaluate_cross_dataset_zero_shot` for Table 4), both on a
`DBetaZeroShotClassifier`, the scorer the pipeline uses too. The metric is the macro AUROC over the classes with positives and negatives in the test split,
with a bootstrap 95 % CI, and the per-class AUROCs.

Offline out of the box (after `python examples/pretrain.py`)::

    python examples/zero_shot.py

The paper's six zero-shot tasks plus CODE-15::

    python examples/zero_shot.py --model_name_or_path path/to/dbeta \\
        --tasks ptbxl_super ptbxl_sub ptbxl_form ptbxl_rhythm cpsc2018 csn code15 \\
        --ptbxl_root data/ptb-xl --cpsc2018_root data/cpsc2018 --csn_root data/csn --code15_root data/code15

Zero-shot under distribution shift (the paper's Table 4): score each target dataset on the classes it shares with
the source (`dbeta_hf.evaluation.cross_dataset.SHARED_CLASSES`), pairs given in order::

    python examples/zero_shot.py --model_name_or_path path/to/dbeta \\
        --source-task ptbxl_super ptbxl_super cpsc2018 cpsc2018 csn csn \\
        --target-task cpsc2018 csn ptbxl_super csn ptbxl_super cpsc2018 \\
        --ptbxl_root data/ptb-xl --cpsc2018_root data/cpsc2018 --csn_root data/csn

Writes ``zero_shot_results.json``, ``zero_shot_results.md`` (Table 3 layout) and ``roc_<task>.png`` into
`--output_dir`; `--update_model_card` also adds the macro AUROCs to the model-index of the model folder's card.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any, Sequence

from dbeta_hf.evaluation.cli_arguments import (
    add_common_arguments,
    add_model_card_argument,
    add_precision_arguments,
    run_command,
)
from dbeta_hf.evaluation.options import CROSS_DATASET_TASKS

logger = logging.getLogger("zero_shot")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Zero-shot multi-label ECG classification with D-BETA (macro AUROC, per-class AUROC, bootstrap CIs).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_arguments(parser, default_output_dir="outputs/zero_shot")
    add_precision_arguments(parser)
    add_model_card_argument(parser)
    parser.add_argument("--split", default="test", help="split to evaluate")
    parser.add_argument(
        "--similarity", choices=["dot", "cosine"], default="dot",
        help="score: the official raw dot product of the embeddings, or their cosine",
    )
    parser.add_argument(
        "--descriptions", default=None,
        help="prompt file replacing the built-in class descriptions: a JSON object label -> description (the "
        "official repository's format, e.g. its configs/context_llm.json). It must cover every class of every task "
        "(class codes of other naming schemes are matched through dbeta_hf.evaluation.class_aliases), else the run stops "
        "listing the uncovered classes",
    )
    parser.add_argument(
        "--prompt-ensemble", "--prompt_ensemble", dest="prompt_ensemble", default="description",
        choices=["description", "name+description", "sentences"],
        help="texts per class, their embeddings averaged: the description alone (the official scoring), the class "
        "name and the description, or each sentence of the description; a class given a list in --descriptions "
        "uses its list",
    )
    parser.add_argument(
        "--source-task", "--source_task", dest="source_task", nargs="+", default=None,
        help="cross-dataset zero-shot (Table 4): source task(s) whose classes and descriptions are used, paired in "
        "order with --target-task (ptbxl_super, cpsc2018, csn); replaces --tasks",
    )
    parser.add_argument(
        "--target-task", "--target_task", dest="target_task", nargs="+", default=None,
        help="cross-dataset zero-shot: target task(s) whose --split is scored on the classes shared with the source",
    )
    args = parser.parse_args(argv)
    if (args.source_task is None) != (args.target_task is None):
        parser.error("--source-task and --target-task go together (one target per source)")
    if args.source_task is not None:
        if len(args.source_task) != len(args.target_task):
            parser.error(f"{len(args.source_task)} --source-task but {len(args.target_task)} --target-task; pair them")
        for task in args.source_task + args.target_task:
            if task not in CROSS_DATASET_TASKS:
                parser.error(f"cross-dataset zero-shot is defined between {', '.join(CROSS_DATASET_TASKS)}; got {task!r}")
        for source, target in zip(args.source_task, args.target_task):
            if source == target:
                parser.error(f"--source-task and --target-task are both {source!r}")
    return args


if __name__ == "__main__":
    parse_args()  # flags checked and --help answered here, before the run's imports below load the model code

# the run's imports: after the argument parsing above, so that `--help` and flag errors answer without loading them
from dbeta_hf import DBetaModel  # noqa: E402
from dbeta_hf.evaluation.cli import (  # noqa: E402
    TASK_TITLES,
    check_model_card_target,
    cache_dir_from_args,
    dataset_sampling_rate,
    load_processor,
    load_task_splits_from_args,
    precision_from_args,
    resolve_device,
    resolve_model_dir,
    update_model_card,
    write_results,
)
from dbeta_hf.evaluation.cross_dataset import (  # noqa: E402
    evaluate_cross_dataset_zero_shot,
    format_cross_dataset_table,
)
from dbeta_hf.evaluation.embeddings import labels_array  # noqa: E402
from dbeta_hf.evaluation.plotting import plot_roc_curves  # noqa: E402
from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier, evaluate_zero_shot, format_zero_shot_table  # noqa: E402
from dbeta_hf.hub.model_card import results_from_zero_shot  # noqa: E402


def _run_cross_dataset(args, classifier, results, cache_dir):
    """Table 4: every (source, target) pair, the target's --split scored on the classes shared with the source."""
    results["cross_dataset"] = {}
    row = {}
    for source, target in zip(args.source_task, args.target_task):
        splits, class_names = load_task_splits_from_args(args, target)
        if args.split not in splits:
            raise KeyError(f"task {target!r} has no {args.split!r} split (splits: {list(splits)})")
        split = splits[args.split]
        res = evaluate_cross_dataset_zero_shot(
            classifier, split, labels_array(split), class_names, source, target, num_bootstrap=args.num_bootstrap,
            cache_dir=cache_dir, cache_name=f"{target}-{args.split}", progress=not args.no_progress,
            sampling_rate=dataset_sampling_rate(splits),
        )
        results["cross_dataset"][f"{source}->{target}"] = res
        row[(source, target)] = res["macro_auroc"]
        logger.info("%s -> %s: macro AUROC %.4f over %d shared classes", source, target, res["macro_auroc"],
                    res["num_classes_scored"])
    method = f"D-BETA ({os.path.basename(os.path.normpath(results['model_name_or_path']))})"
    prompt_set = results["prompt_set"]
    markdown = format_cross_dataset_table({method: row}) + f"\nPrompts: {prompt_set['name']}\n"
    json_path, md_path = write_results(results, markdown, args.output_dir, "zero_shot_results")
    logger.info("wrote %s and %s", json_path, md_path)
    if args.update_model_card:
        update_model_card(results["model_name_or_path"], results_from_zero_shot(results))
    return results


def evaluate_task(args, classifier, task: str, cache_dir) -> dict:
    """Zero-shot scores of one task's --split: macro / per-class AUROC with a bootstrap CI, and its ROC curves."""
    splits, class_names = load_task_splits_from_args(args, task)
    if args.split not in splits:
        raise KeyError(f"task {task!r} has no {args.split!r} split (splits: {list(splits)})")
    split = splits[args.split]
    labels = labels_array(split)
    logger.info("%s: %d %s records, %d classes", task, len(split), args.split, len(class_names))
    task_results, scores = evaluate_zero_shot(
        classifier, split, labels, class_names, task=task, num_bootstrap=args.num_bootstrap,
        cache_dir=cache_dir, cache_name=f"{task}-{args.split}", progress=not args.no_progress,
        sampling_rate=dataset_sampling_rate(splits),
    )
    png = os.path.join(args.output_dir, f"roc_{task}.png")
    plot_roc_curves(labels, scores, class_names, png, title=f"Zero-shot {TASK_TITLES.get(task, task)} ({args.split})")
    task_results["roc_png"] = png
    task_results["class_names"] = list(class_names)
    logger.info(
        "%s: macro AUROC %.4f (95%% CI %.4f-%.4f) over %d classes",
        task, task_results["macro_auroc"], task_results["ci_low"], task_results["ci_high"],
        task_results["num_classes_scored"],
    )
    return task_results


def results_markdown(args, results: dict) -> str:
    """The paper's Table 3 layout (CODE-15 in a table of its own), a per-task detail table and the prompt set."""
    method = f"D-BETA ({os.path.basename(os.path.normpath(results['model_name_or_path']))})"
    table_tasks = [t for t in args.tasks if t != "code15"]
    sections = []
    if table_tasks:
        row = {t: results["tasks"][t]["macro_auroc"] for t in table_tasks}
        sections.append(format_zero_shot_table({method: row}, table_tasks, TASK_TITLES, title="Zero-shot performance (AUC in %)"))
    if "code15" in args.tasks:
        sections.append(
            format_zero_shot_table(
                {method: {"code15": results["tasks"]["code15"]["macro_auroc"]}}, ["code15"], TASK_TITLES,
                title="CODE-15 test, zero-shot (AUC in %; paper: DNN 96.59, cardiology residents 92.07)",
            )
        )
    detail = ["**Per task** (macro AUROC with its bootstrap 95% CI)", "",
              "| Task | Macro AUROC (%) | 95% CI | Records | Classes scored | Skipped classes |", "|---|---|---|---|---|---|"]
    for task, res in results["tasks"].items():
        detail.append(
            f"| {TASK_TITLES.get(task, task)} | {100 * res['macro_auroc']:.2f} | {100 * res['ci_low']:.2f}–{100 * res['ci_high']:.2f} "
            f"| {res['num_samples']} | {res['num_classes_scored']} | {', '.join(res['skipped_classes']) or '–'} |"
        )
    sections.append("\n".join(detail) + "\n")
    prompt_set = results["prompt_set"]
    sections.append(
        f"Prompts: {prompt_set['name']}" + (f" (sha256 {prompt_set['sha256'][:12]})" if "sha256" in prompt_set else "")
        + f"; texts per class: {results.get('prompt_ensemble', 'description')}\n"
    )
    return "\n".join(sections)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model_dir = resolve_model_dir(args.model_name_or_path)
    check_model_card_target(args, model_dir)
    if args.descriptions is not None and not os.path.isfile(args.descriptions):
        raise FileNotFoundError(f"--descriptions {args.descriptions!r} does not exist")
    device = resolve_device(args.device)
    model = DBetaModel.from_pretrained(model_dir).to(device).eval()
    processor = load_processor(model_dir)
    precision = precision_from_args(args, device)  # fp32 unless --bf16 / --precision bf16|auto
    classifier = DBetaZeroShotClassifier(
        model, processor, similarity=args.similarity, descriptions=args.descriptions, batch_size=args.batch_size,
        autocast=precision == "bf16", prompt_ensemble=args.prompt_ensemble,
    )
    os.makedirs(args.output_dir, exist_ok=True)
    cache_dir = cache_dir_from_args(args)
    results: dict[str, Any] = {
        "model_name_or_path": model_dir,
        "similarity": args.similarity,
        "split": args.split,
        "precision": precision,
        "descriptions_file": args.descriptions,
        "prompt_set": classifier.prompt_set_info,
        "prompt_ensemble": args.prompt_ensemble,
        "tasks": {},
    }
    if args.source_task is not None:
        return _run_cross_dataset(args, classifier, results, cache_dir)
    for task in args.tasks:
        results["tasks"][task] = evaluate_task(args, classifier, task, cache_dir)
    json_path, md_path = write_results(results, results_markdown(args, results), args.output_dir, "zero_shot_results")
    logger.info("wrote %s, %s and the ROC curves to %s", json_path, md_path, args.output_dir)
    if args.update_model_card:
        update_model_card(model_dir, results_from_zero_shot(results))
    return results


if __name__ == "__main__":
    run_command(main)
