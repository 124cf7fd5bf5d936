#!/usr/bin/env python
"""Linear probing of the frozen D-BETA ECG encoder with 1 %, 10 % and 100 % of the labels (paper Table 2).

The ECG encoder runs once per split; its uni-modal embeddings are cached on disk (keyed by the model weights
and the data) and a multi-label logistic-regression probe is trained on them for every label fraction and
seed. The probe is selected on the validation split (best validation macro AUROC, early stopping) and scored
once on the test split: macro AUROC (mean ± std over seeds), per-class AUROC and a bootstrap 95 % CI per seed.
`--random-init` adds the same probe on a randomly initialised encoder of the same architecture, the baseline
that shows what pretraining buys.

Offline out of the box (after `python examples/pretrain.py`)::

    python examples/linear_probe.py --random-init

The paper's table::

    python examples/linear_probe.py --model_name_or_path path/to/dbeta --random-init \\
        --tasks csn ptbxl_rhythm ptbxl_form ptbxl_sub ptbxl_super cpsc2018 \\
        --ptbxl_root data/ptb-xl --cpsc2018_root data/cpsc2018 --csn_root data/csn

`--protocol merl` runs MERL's protocol instead (the protocol behind the paper's Table 2 baselines; see
`dbeta_hf.evaluation.merl_linear_probe`): min-max scaled inputs, `train_test_split(random_state=42)` subsets, Adam
lr 1e-3 / batch 16 / 100 epochs / MultiStepLR([40], 0.1), and both the maximum test AUROC over epochs (optimistic,
as MERL reports it) and the last epoch's AUROC::

    python examples/linear_probe.py --protocol merl

Your own labels: build a `DatasetDict` (train / validation / test) with the data module and call
`dbeta_hf.evaluation.linear_probe.run_linear_probe` on `extract_ecg_features` of each split.

Writes ``linear_probe_results.json``, ``linear_probe_results.md`` (Table 2 layout) and ``roc_<task>.png``
(test ROC curves of the largest fraction, first seed) into `--output_dir`; `--update_model_card` also adds the
pretrained encoder's probe AUROCs to the model-index of the model folder's card.
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
from dbeta_hf.evaluation.probe_settings import DEFAULT_FRACTIONS, SCHEDULER_STEPS, LinearProbeConfig, MERLProbeConfig

logger = logging.getLogger("linear_probe")

PRETRAINED_METHOD = "D-BETA"
RANDOM_METHOD = "Random init"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = LinearProbeConfig()
    parser = argparse.ArgumentParser(
        description="Linear probing of frozen D-BETA ECG features with 1/10/100% of the training labels.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_arguments(parser, default_output_dir="outputs/linear_probe")
    add_precision_arguments(parser)
    add_model_card_argument(parser)
    parser.add_argument("--fractions", nargs="+", type=float, default=list(DEFAULT_FRACTIONS), help="label fractions of the training split")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds (subset draw and probe initialisation)")
    parser.add_argument(
        "--random-init", "--random_init", dest="random_init", action="store_true",
        help="also probe a randomly initialised encoder of the same architecture (baseline row of the report)",
    )
    parser.add_argument("--random_init_seed", type=int, default=0, help="seed of the random encoder")
    parser.add_argument("--learning_rate", type=float, default=defaults.learning_rate, help="Adam learning rate of the probe")
    parser.add_argument("--weight_decay", type=float, default=defaults.weight_decay, help="L2 weight decay of the probe")
    parser.add_argument("--probe_batch_size", type=int, default=defaults.batch_size, help="probe minibatch size (0 = full batch)")
    parser.add_argument("--max_steps", type=int, default=defaults.max_steps, help="maximum probe optimisation steps")
    parser.add_argument("--eval_every", type=int, default=defaults.eval_every, help="validate every N steps")
    parser.add_argument("--patience", type=int, default=defaults.patience, help="early-stopping patience in validations (0 = none)")
    parser.add_argument("--no_standardize", action="store_true", help="do not z-score the features")
    _add_merl_arguments(parser)
    args = parser.parse_args(argv)
    for fraction in args.fractions:
        if not 0.0 < fraction <= 1.0:
            parser.error(f"--fractions must be in (0, 1], got {fraction}")
    return args


def _add_merl_arguments(parser) -> None:
    merl = MERLProbeConfig()
    parser.add_argument(
        "--protocol", choices=["validation", "merl"], default="validation",
        help="validation: probe selected on the validation split, test scored once (default); merl: MERL's protocol "
        "(min-max inputs, fixed 100 epochs, maximum test AUROC over epochs (optimistic) and last-epoch AUROC)",
    )
    parser.add_argument("--merl_epochs", type=int, default=merl.epochs, help="--protocol merl: epochs")
    parser.add_argument("--merl_milestones", nargs="+", type=int, default=list(merl.milestones),
                        help="--protocol merl: MultiStepLR milestones (scheduler steps)")
    parser.add_argument("--merl_batch_size", type=int, default=merl.batch_size, help="--protocol merl: batch size")
    parser.add_argument("--merl_scheduler_step", choices=SCHEDULER_STEPS, default=merl.scheduler_step,
                        help="--protocol merl: step the scheduler per iteration and per epoch (MERL's code) or per epoch")


if __name__ == "__main__":
    parse_args()  # flags checked and --help answered here, before the run's imports below load the model code

# the run's imports: after the argument parsing above, so that `--help` and flag errors answer without loading them
import torch  # noqa: E402

from dbeta_hf import DBetaConfig, DBetaECGModel  # noqa: E402
from dbeta_hf.evaluation.cli import (  # noqa: E402
    TASK_TITLES,
    check_model_card_target,
    cache_dir_from_args,
    dataset_sampling_rate,
    load_feature_extractor,
    load_task_splits_from_args,
    precision_from_args,
    resolve_device,
    resolve_model_dir,
    update_model_card,
    write_results,
)
from dbeta_hf.evaluation.embeddings import extract_ecg_features, labels_array  # noqa: E402
from dbeta_hf.evaluation.linear_probe import (  # noqa: E402
    format_linear_probe_table,
    run_linear_probe,
)
from dbeta_hf.evaluation.merl_linear_probe import (  # noqa: E402
    MERLInputEncoder,
    run_merl_linear_probe,
)
from dbeta_hf.evaluation.metrics import fraction_label  # noqa: E402
from dbeta_hf.evaluation.plotting import plot_roc_curves  # noqa: E402
from dbeta_hf.hub.model_card import results_from_linear_probe  # noqa: E402


def _split_features(args, encoder, splits, split_names, feature_extractor, cache_dir, cache_name: str, desc: str):
    """Frozen ECG features and label arrays of `split_names`; `cache_name` / `desc` are formatted with `split`."""
    rate = dataset_sampling_rate(splits)
    feats, labels = {}, {}
    for split_name in split_names:
        feats[split_name] = extract_ecg_features(
            encoder, splits[split_name], batch_size=args.batch_size, feature_extractor=feature_extractor,
            sampling_rate=rate if feature_extractor is not None else None, cache_dir=cache_dir,
            cache_name=cache_name.format(split=split_name), progress=not args.no_progress,
            desc=desc.format(split=split_name), precision=precision_from_args(args, next(encoder.parameters()).device),
        )
        labels[split_name] = labels_array(splits[split_name])
    return feats, labels


def _run_merl_protocol(args, encoder, data, feature_extractor, cache_dir, method: str) -> dict:
    """MERL's protocol for every task with one encoder: features of MERL-prepared inputs, then the fixed schedule."""
    config = MERLProbeConfig(epochs=args.merl_epochs, milestones=tuple(args.merl_milestones),
                             batch_size=args.merl_batch_size, scheduler_step=args.merl_scheduler_step)
    out = {}
    for task, (splits, class_names) in data.items():
        feats, labels = _split_features(args, MERLInputEncoder(encoder, task), splits, ("train", "test"),
                                        feature_extractor, cache_dir, f"{task}-{{split}}-merl",
                                        f"{method}: {task} {{split}} features (MERL inputs)")
        out[task] = run_merl_linear_probe(feats["train"], labels["train"], feats["test"], labels["test"], class_names,
                                          fractions=args.fractions, config=config)
        for key, entry in out[task]["fractions"].items():
            logger.info("%s / %s / %s (MERL): max test AUROC %.4f (optimistic, epoch %d), last epoch %.4f", method,
                        task, key, entry["max_test_auroc"], entry["max_test_epoch"], entry["last_epoch_auroc"])
    return out


def _merl_markdown(methods: dict) -> str:
    lines = ["**Linear probing, MERL's protocol** (test macro AUROC in %)", "",
             "| Method | Task | Labels | Max test AUROC (optimistic) | Epoch of max | Last-epoch AUROC |",
             "|---|---|---|---|---|---|"]
    for method, tasks in methods.items():
        for task, res in tasks.items():
            for key, entry in res["fractions"].items():
                lines.append(f"| {method} | {TASK_TITLES.get(task, task)} | {key} | {100 * entry['max_test_auroc']:.2f} "
                             f"| {entry['max_test_epoch']} | {100 * entry['last_epoch_auroc']:.2f} |")
    lines += ["", "The maximum over epochs selects on the test set (MERL reports it); the last-epoch AUROC does not."]
    return "\n".join(lines) + "\n"


def _probe_config(args):
    return LinearProbeConfig(
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        batch_size=None if not args.probe_batch_size else args.probe_batch_size,
        max_steps=args.max_steps,
        eval_every=args.eval_every,
        patience=None if not args.patience else args.patience,
        standardize=not args.no_standardize,
    )


def encoder_builders(args, model_dir: str) -> dict:
    """``{method: () -> encoder}``: the checkpoint's ECG encoder, and with ``--random-init`` a randomly initialised
    one of the same architecture."""
    encoders = {PRETRAINED_METHOD: lambda: DBetaECGModel.from_pretrained(model_dir)}
    if args.random_init:
        def random_encoder():
            torch.manual_seed(args.random_init_seed)
            return DBetaECGModel(DBetaConfig.from_pretrained(model_dir))

        encoders[RANDOM_METHOD] = random_encoder
    return encoders


def load_tasks(args) -> dict:
    """``{task: (splits, class_names)}``; every task needs train, validation and test splits."""
    data = {}
    for task in args.tasks:
        splits, class_names = load_task_splits_from_args(args, task)
        missing = [s for s in ("train", "validation", "test") if s not in splits]
        if missing:
            raise KeyError(
                f"task {task!r} has no {missing} split(s) (splits: {list(splits)}); linear probing needs train, "
                "validation and test (CODE-15 is a test set: use examples/zero_shot.py)"
            )
        data[task] = (splits, class_names)
    return data


def probe_task(
    args, encoder, method: str, task: str, splits, class_names, feature_extractor, cache_dir, config
) -> dict:
    """The validation-selected probe of one task with one encoder (ROC curves for the pretrained encoder)."""
    feats, labels = _split_features(args, encoder, splits, ("train", "validation", "test"), feature_extractor,
                                    cache_dir, f"{task}-{{split}}", f"{method}: {task} {{split}} features")
    logger.info("%s / %s: probing %d train, %d validation, %d test records", method, task,
                len(labels["train"]), len(labels["validation"]), len(labels["test"]))
    res = run_linear_probe(
        feats["train"], labels["train"], feats["validation"], labels["validation"], feats["test"], labels["test"],
        class_names, fractions=args.fractions, seeds=args.seeds, config=config,
        num_bootstrap=args.num_bootstrap, progress=not args.no_progress,
    )
    test_scores = res.pop("test_scores")
    if method == PRETRAINED_METHOD:
        largest = fraction_label(max(args.fractions))
        png = os.path.join(args.output_dir, f"roc_{task}.png")
        plot_roc_curves(
            labels["test"], test_scores[largest], class_names, png,
            title=f"Linear probe {TASK_TITLES.get(task, task)}, {largest} labels, seed {args.seeds[0]}",
        )
        res["roc_png"] = png
    for key, entry in res["fractions"].items():
        spread = "" if entry["macro_auroc_std"] is None else f" ± {entry['macro_auroc_std']:.4f}"
        logger.info("%s / %s / %s: test macro AUROC %.4f%s (%d seed%s)", method, task, key, entry["macro_auroc_mean"],
                    spread, len(entry["runs"]), "s" if len(entry["runs"]) > 1 else "")
    return res


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model_dir = resolve_model_dir(args.model_name_or_path)
    check_model_card_target(args, model_dir)
    device = resolve_device(args.device)
    feature_extractor = load_feature_extractor(model_dir)
    encoders = encoder_builders(args, model_dir)
    config = _probe_config(args)
    cache_dir = cache_dir_from_args(args)
    os.makedirs(args.output_dir, exist_ok=True)
    data = load_tasks(args)
    results: dict[str, Any] = {
        "model_name_or_path": model_dir,
        "fractions": [float(f) for f in args.fractions],
        "seeds": list(args.seeds),
        "probe_config": config.to_dict(),
        "random_init_seed": args.random_init_seed if args.random_init else None,
        "protocol": args.protocol,
        "methods": {},
    }
    if args.protocol == "merl":
        results.pop("probe_config")
        for method, build in encoders.items():
            results["methods"][method] = _run_merl_protocol(args, build().to(device).eval(), data, feature_extractor,
                                                            cache_dir, method)
        json_path, md_path = write_results(results, _merl_markdown(results["methods"]), args.output_dir,
                                           "linear_probe_results")
        logger.info("wrote %s and %s", json_path, md_path)
        if args.update_model_card:
            update_model_card(model_dir, results_from_linear_probe(results, PRETRAINED_METHOD))
        return results
    for method, build in encoders.items():
        encoder = build().to(device).eval()
        results["methods"][method] = {
            task: probe_task(args, encoder, method, task, splits, class_names, feature_extractor, cache_dir, config)
            for task, (splits, class_names) in data.items()
        }
        del encoder
    markdown = format_linear_probe_table(
        results["methods"], TASK_TITLES, title="Linear probing (AUC in %) with 1% / 10% / 100% of the training labels",
        fractions=[fraction_label(f) for f in sorted(args.fractions)],
    )
    json_path, md_path = write_results(results, markdown, args.output_dir, "linear_probe_results")
    logger.info("wrote %s, %s and the ROC curves to %s", json_path, md_path, args.output_dir)
    if args.update_model_card:
        update_model_card(model_dir, results_from_linear_probe(results, PRETRAINED_METHOD))
    return results


if __name__ == "__main__":
    run_command(main)
