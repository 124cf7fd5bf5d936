#!/usr/bin/env python
"""ECG-to-report and report-to-ECG retrieval with D-BETA (Recall@1/5/10 on a held-out set).

Each record of the held-out set contributes its ECG and its report; ECGs query all reports and reports query
all ECGs, ranked by the same score as zero-shot classification (raw dot product of the uni-modal embeddings;
`--similarity cosine` for the cosine). A retrieved item counts as correct when its report is identical (after
the processor's text normalization) to the query's own report, since machine reports repeat.

Offline out of the box (after `python examples/pretrain.py`): a held-out synthetic corpus::

    python examples/retrieval.py

Held-out patients of MIMIC-IV-ECG (the data module's validation split), 1,000 pairs::

    python examples/retrieval.py --model_name_or_path path/to/dbeta --dataset mimic_iv_ecg \\
        --mimic_root data/mimic-iv-ecg --split validation --max_samples 1000

Any dataset saved with `save_to_disk` that has ``ecg`` and ``report`` columns: ``--dataset_path DIR``.

Writes ``retrieval_results.json``, ``retrieval_results.md`` and ``recall_curves.png`` (Recall@k against k for
both directions) into `--output_dir`.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any, Sequence

from dbeta_hf.evaluation.cli_arguments import add_model_card_argument, add_precision_arguments, run_command
from dbeta_hf.evaluation.options import DEFAULT_SYNTHETIC_MODEL_DIR, SYNTHETIC_EVAL_SEED

logger = logging.getLogger("retrieval")

DATASETS = ("synthetic", "mimic_iv_ecg", "ptbxl", "disk")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="ECG<->report retrieval with D-BETA: Recall@1/5/10 in both directions on a held-out set.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--model_name_or_path", default=DEFAULT_SYNTHETIC_MODEL_DIR,
        help="folder (or Hub id) of a D-BETA checkpoint with its processor; the default is written by examples/pretrain.py",
    )
    parser.add_argument(
        "--dataset", choices=DATASETS, default=None,
        help="held-out set: synthetic corpus, MIMIC-IV-ECG (--mimic_root), PTB-XL (--ptbxl_root) or a saved dataset "
        "(--dataset_path); None: disk when --dataset_path is given, else synthetic",
    )
    parser.add_argument("--dataset_path", default=None, help="a dataset saved with save_to_disk (ecg + report columns)")
    parser.add_argument("--mimic_root", default=None, help="MIMIC-IV-ECG folder for --dataset mimic_iv_ecg")
    parser.add_argument("--ptbxl_root", default=None, help="PTB-XL folder for --dataset ptbxl")
    parser.add_argument("--split", default=None, help="split to use (None: validation for MIMIC-IV-ECG, test otherwise)")
    parser.add_argument("--synthetic_records", type=int, default=200, help="size of the held-out synthetic corpus")
    parser.add_argument("--synthetic_seed", type=int, default=SYNTHETIC_EVAL_SEED, help="seed of the held-out synthetic corpus")
    parser.add_argument("--max_samples", type=int, default=None, help="use the first N pairs of the split")
    parser.add_argument("--ks", nargs="+", type=int, default=[1, 5, 10], help="k of Recall@k")
    parser.add_argument("--similarity", choices=["dot", "cosine"], default="dot", help="score of an (ECG, report) pair")
    parser.add_argument("--report_column", default="report", help="report text column")
    parser.add_argument("--output_dir", default="outputs/retrieval", help="where results are written")
    parser.add_argument("--cache_dir", default=None, help="feature cache folder (None: <output_dir>/feature_cache)")
    parser.add_argument("--no_cache", action="store_true", help="do not read or write the feature cache")
    parser.add_argument("--batch_size", type=int, default=64, help="ECGs / reports per forward pass")
    parser.add_argument("--device", default=None, help="cuda / cpu (None: cuda when available)")
    add_precision_arguments(parser)
    parser.add_argument("--num_proc", type=int, default=None, help="worker processes of the dataset builders")
    parser.add_argument("--no_progress", action="store_true", help="hide progress bars")
    add_model_card_argument(parser)
    args = parser.parse_args(argv)
    if args.dataset is None:
        args.dataset = "disk" if args.dataset_path else "synthetic"
    if any(k < 1 for k in args.ks):
        parser.error("--ks must be positive")
    return args


if __name__ == "__main__":
    parse_args()  # flags checked and --help answered here, before the run's imports below load the model code

# the run's imports: after the argument parsing above, so that `--help` and flag errors answer without loading them
import numpy as np  # noqa: E402
from datasets import DatasetDict, load_from_disk  # noqa: E402

from dbeta_hf import DBetaModel  # noqa: E402
from dbeta_hf.data import load_mimic_iv_ecg, load_ptbxl  # noqa: E402
from dbeta_hf.data.synthetic import make_synthetic_corpus  # noqa: E402
from dbeta_hf.evaluation.cli import (  # noqa: E402
    check_model_card_target,
    cache_dir_from_args,
    dataset_sampling_rate,
    load_processor,
    precision_from_args,
    resolve_device,
    resolve_model_dir,
    update_model_card,
    write_results,
)
from dbeta_hf.evaluation.embeddings import extract_ecg_features, extract_text_features  # noqa: E402
from dbeta_hf.evaluation.retrieval import format_retrieval_table, report_relevance, retrieval_metrics, retrieval_recall  # noqa: E402
from dbeta_hf.evaluation.zero_shot import zero_shot_scores  # noqa: E402
from dbeta_hf.hub.model_card import results_from_retrieval  # noqa: E402


def _load_split(args):
    """The held-out `datasets.Dataset` and a readable name."""
    if args.dataset == "synthetic":
        if args.synthetic_records < 2:
            raise ValueError("--synthetic_records must be at least 2")
        return make_synthetic_corpus(args.synthetic_records, seed=args.synthetic_seed), f"synthetic (seed {args.synthetic_seed})"
    if args.dataset == "disk":
        if not args.dataset_path:
            raise ValueError("--dataset disk needs --dataset_path")
        if not os.path.exists(args.dataset_path):
            raise FileNotFoundError(f"--dataset_path {args.dataset_path!r} does not exist")
        data = load_from_disk(args.dataset_path)
        name = os.path.basename(os.path.normpath(args.dataset_path))
        if isinstance(data, DatasetDict):
            split = args.split or ("test" if "test" in data else "validation")
            if split not in data:
                raise KeyError(f"{args.dataset_path} has no {split!r} split (splits: {list(data)})")
            return data[split], f"{name} ({split})"
        return data, name
    kwargs = {"num_proc": args.num_proc} if args.num_proc else {}
    if args.dataset == "mimic_iv_ecg":
        if not args.mimic_root:
            raise ValueError("--dataset mimic_iv_ecg needs --mimic_root")
        data = load_mimic_iv_ecg(args.mimic_root, **kwargs)
        split = args.split or "validation"
    else:
        if not args.ptbxl_root:
            raise ValueError("--dataset ptbxl needs --ptbxl_root")
        data = load_ptbxl(args.ptbxl_root, task="all", **kwargs)
        split = args.split or "test"
    if split not in data:
        raise KeyError(f"the {args.dataset} dataset has no {split!r} split (splits: {list(data)})")
    return data[split], f"{args.dataset} ({split})"


def _plot_recall_curves(results: dict[str, Any], path: str, title: str) -> None:
    # matplotlib is optional (the `plots` extra): imported only to draw
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for direction, label in (("ecg_to_report", "ECG → report"), ("report_to_ecg", "report → ECG")):
        curve = results["recall_curves"][direction]
        ks = sorted(int(k) for k in curve)
        ax.plot(ks, [curve[str(k)] if str(k) in curve else curve[k] for k in ks], marker=".", label=label)
    n = results["num_pairs"]
    ks = sorted(int(k) for k in results["recall_curves"]["ecg_to_report"])
    ax.plot(ks, [k / n for k in ks], linestyle="--", color="grey", linewidth=0.8, label="chance if all reports differ")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("k")
    ax.set_ylabel("Recall@k")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def recall_curves(ecg_embeds, text_embeds, reports: list[str], similarity: str, normalize: bool) -> dict:
    """Recall@k in both directions for about 30 k spread over 1 .. gallery size (log scale), for the PNG."""
    sim = zero_shot_scores(ecg_embeds, text_embeds, similarity).numpy()
    relevance = report_relevance(reports, normalize=normalize)
    curve_ks = sorted({int(k) for k in np.unique(np.geomspace(1, len(reports), num=min(30, len(reports))).round())})
    return {
        "ecg_to_report": {str(k): v for k, v in zip(curve_ks, [retrieval_recall(sim, relevance, [k])[f"R@{k}"] for k in curve_ks])},
        "report_to_ecg": {str(k): v for k, v in zip(curve_ks, [retrieval_recall(sim.T, relevance.T, [k])[f"R@{k}"] for k in curve_ks])},
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model_dir = resolve_model_dir(args.model_name_or_path)
    check_model_card_target(args, model_dir)
    device = resolve_device(args.device)
    model = DBetaModel.from_pretrained(model_dir).to(device).eval()
    processor = load_processor(model_dir)
    data, data_name = _load_split(args)
    if args.report_column not in data.column_names:
        raise KeyError(f"the held-out set has no {args.report_column!r} column (columns: {data.column_names})")
    if args.max_samples is not None:
        data = data.select(range(min(args.max_samples, len(data))))
    if len(data) < 2:
        raise ValueError("retrieval needs at least 2 (ECG, report) pairs")
    os.makedirs(args.output_dir, exist_ok=True)
    cache_dir = cache_dir_from_args(args)

    reports = [str(r) for r in data[args.report_column]]
    precision = precision_from_args(args, device)  # fp32 unless --bf16 / --precision bf16|auto
    ecg_embeds = extract_ecg_features(
        model, data, batch_size=args.batch_size, feature_extractor=processor.feature_extractor,
        sampling_rate=dataset_sampling_rate(data), cache_dir=cache_dir, cache_name=f"retrieval-{args.dataset}",
        progress=not args.no_progress, desc="ECG features", precision=precision,
    )
    text_embeds = extract_text_features(
        model, processor, reports, batch_size=args.batch_size, progress=not args.no_progress, desc="report features",
        precision=precision,
    )
    normalize = bool(getattr(processor, "normalize_text", True))
    results = retrieval_metrics(ecg_embeds, text_embeds, reports, ks=args.ks, similarity=args.similarity, normalize=normalize)
    results["recall_curves"] = recall_curves(ecg_embeds, text_embeds, reports, args.similarity, normalize)
    split = data_name.rsplit("(", 1)[1].rstrip(")") if args.dataset != "synthetic" and data_name.endswith(")") else "heldout"
    results.update(model_name_or_path=model_dir, dataset=data_name, dataset_key=args.dataset, split=split,
                   ks=list(args.ks), precision=precision)
    png = os.path.join(args.output_dir, "recall_curves.png")
    _plot_recall_curves(results, png, f"Retrieval on {data_name}, {len(reports)} pairs")
    results["recall_png"] = png

    method = f"D-BETA ({os.path.basename(os.path.normpath(model_dir))})"
    markdown = format_retrieval_table(
        {method: results}, title=f"Retrieval Recall@k (%) on {data_name}: {results['num_pairs']} pairs, "
        f"{results['num_unique_reports']} distinct reports", ks=args.ks,
    )
    markdown += (
        "\nA retrieved item is correct when its report is identical to the query's own report (after text "
        f"normalization). Median rank of the first correct item: ECG→report {results['ecg_to_report']['median_rank']:.0f}, "
        f"report→ECG {results['report_to_ecg']['median_rank']:.0f}.\n"
    )
    json_path, md_path = write_results(results, markdown, args.output_dir, "retrieval_results")
    logger.info("wrote %s, %s and %s", json_path, md_path, png)
    if args.update_model_card:
        update_model_card(model_dir, results_from_retrieval(results))
    return results


if __name__ == "__main__":
    run_command(main)
