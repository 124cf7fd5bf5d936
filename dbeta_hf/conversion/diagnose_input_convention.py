"""Which input convention does a checkpoint expect? A label-free measurement with the model's own MEM head.

    python -m dbeta_hf.conversion.diagnose_input_convention --model DIR [--records WFDB_RECORD ...] [--json report.json]

A model reconstructs masked ECG tokens best from inputs prepared the way its pretraining data was. For every
candidate convention, standard vs MIMIC lead order (`dbeta_hf.input_convention.LEAD_ORDERS`) x three scalings
(`DIAGNOSTIC_NORMALIZATIONS`):

* ``none``: millivolts as recorded (the official dataset code's input);
* ``per-lead-zscore``: each lead z-scored over time (fairseq-signals' pipeline);
* ``per-record-minmax``: ``(x - min) / (max - min + 1e-8)`` with one minimum and maximum over all leads of the
  record (MERL and MELP; `DBetaECGFeatureExtractor(input_normalization="per-record-minmax")`, which applies
  `dbeta_hf.input_convention.per_record_minmax` after cropping / padding, as MERL does),

the same ECGs are prepared that way and the model's MEM reconstruction loss is measured with the *same* fixed
masking noise and a constant text (the end-of-sequence token alone), so the conventions differ only in the input.
The report lists the six losses, the best convention and the margin: the relative gap between the best and the
runner-up loss, ``(second - best) / best``, and the loss increase of each single-setting flip of the best
(``flip_margins``). A margin of at least `min_margin` (default 0.05) is called conclusive.

``none`` and ``per-record-minmax`` differ by one scale and one offset shared by every lead and sample. An ECG tower
with ``extractor_mode="default"`` (the official setting: an unpadded first conv, then a GroupNorm per channel over
time) removes the offset exactly and the scale up to the GroupNorm's eps, and the per-lead normalized MEM target
ignores both, so the measurement cannot tell these two apart: on tiny models pretrained in either convention their
losses differed by 0.06-0.08 %, min-max always the lower one, against 2-10 % for per-lead z-scoring and 22-29 % for
the lead order (`tests/test_diagnose_minmax.py`). For such a model (`affine_invariant`) the two are ranked as one,
reported as ``none`` with the other listed under ``equivalent``; the choice between them barely changes its outputs.

Without ``--records`` the package's synthetic 12-lead ECGs (`dbeta_hf.data.synthetic.generate_ecg`, 500 Hz, mV,
physiologically consistent limb leads) are used, so no data set is needed. With ``--records`` the WFDB headers
give each record's rate, lead names and units, and the leads are mapped by name.

The MEM target is z-normalized per lead (``mem_norm_target=True``, the default of the official
``models/dbeta.py:DBETA.get_targets``; the released ``configs/config.json`` has no ``norm_pix_loss``, so the value
that trained the official checkpoint is unconfirmed, see docs/DIFFERENCES.md section 6). That target makes the loss
comparable across input scalings; models configured without it are refused.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Sequence

import numpy as np
import torch

from ..data.synthetic import generate_ecg
from ..ecg_signal import CANONICAL_LEAD_NAMES
from ..feature_extraction_dbeta import DBetaECGFeatureExtractor
from ..input_convention import INPUT_NORMALIZATIONS, LEAD_ORDERS
from ..modeling_dbeta import DBetaForPreTraining

logger = logging.getLogger(__name__)

__all__ = [
    "CANDIDATE_CONVENTIONS",
    "DIAGNOSTIC_CONVENTIONS",
    "DIAGNOSTIC_NORMALIZATIONS",
    "prepare_for_convention",
    "affine_invariant",
    "DEFAULT_MIN_MARGIN",
    "convention_name",
    "synthetic_diagnostic_ecgs",
    "measure_mem_losses",
    "diagnose_input_convention",
    "format_report",
    "report_as_json",
]

PER_RECORD_MINMAX = "per-record-minmax"
# Every scaling the diagnostic measures: the feature extractor's own settings (MERL's / MELP's per-record min-max
# among them).
DIAGNOSTIC_NORMALIZATIONS = tuple(dict.fromkeys((*INPUT_NORMALIZATIONS, "none", "per-lead-zscore", PER_RECORD_MINMAX)))
# The diagnostic's default candidates: both lead orders x every scaling above.
DIAGNOSTIC_CONVENTIONS = [(order, norm) for order in LEAD_ORDERS for norm in DIAGNOSTIC_NORMALIZATIONS]
# The conventions `DBetaECGFeatureExtractor` can apply and save (what the converter may choose from).
CANDIDATE_CONVENTIONS = [(order, norm) for order in LEAD_ORDERS for norm in INPUT_NORMALIZATIONS]
DEFAULT_MIN_MARGIN = 0.05


def convention_name(lead_order: str, input_normalization: str) -> str:
    return f"{lead_order}/{input_normalization}"


def synthetic_diagnostic_ecgs(num_records: int = 32, seed: int = 0) -> np.ndarray:
    """(N, 12, 5000) synthetic ECGs in mV at 500 Hz, canonical lead order, cycling through rhythms and findings."""
    if num_records < 1:
        raise ValueError(f"num_records must be at least 1, got {num_records}")
    conditions = ["SR", "SBRAD", "STACH", "AFIB", ["SR", "1AVB"], ["SR", "RBBB"], ["SR", "LBBB"]]
    return np.stack(
        [generate_ecg(conditions[i % len(conditions)], seed=seed * 100_003 + i) for i in range(num_records)]
    ).astype(np.float32)


def _feature_extractor(model_config, lead_order: str, input_normalization: str):
    ecg_config = model_config.ecg_config
    return DBetaECGFeatureExtractor(
        sampling_rate=ecg_config.sampling_rate, num_samples=ecg_config.num_samples,
        lead_order=lead_order, input_normalization=input_normalization,
    )


def _prepare(feature_extractor, ecgs: np.ndarray | None, records: Sequence[str] | None) -> torch.Tensor:
    if records:
        return feature_extractor.from_wfdb(list(records), return_tensors="pt")["ecg_values"]
    return feature_extractor(
        list(ecgs), sampling_rate=500, lead_names=list(CANONICAL_LEAD_NAMES), return_tensors="pt"
    )["ecg_values"]


def prepare_for_convention(
    model_config, lead_order: str, input_normalization: str, ecgs: np.ndarray | None = None,
    records: Sequence[str] | None = None,
) -> torch.Tensor:
    """The model inputs (N, 12, num_samples) of `ecgs` (mV, canonical order, 500 Hz) or WFDB `records` in one
    convention, prepared by `DBetaECGFeatureExtractor(lead_order=..., input_normalization=...)` (its
    ``per-record-minmax`` is `input_convention.per_record_minmax` after resampling, cropping and zero-padding: MERL
    pads, then scales)."""
    if lead_order not in LEAD_ORDERS or input_normalization not in DIAGNOSTIC_NORMALIZATIONS:
        raise ValueError(
            f"unknown convention {(lead_order, input_normalization)}; lead orders {list(LEAD_ORDERS)}, scalings "
            f"{list(DIAGNOSTIC_NORMALIZATIONS)}"
        )
    return _prepare(_feature_extractor(model_config, lead_order, input_normalization), ecgs, records)


@torch.no_grad()
def measure_mem_losses(model, ecg_values: torch.Tensor, noise: torch.Tensor, batch_size: int = 16) -> float:
    """Mean MEM loss of `model` (a `DBetaForPreTraining`) over (N, leads, samples) inputs with masking `noise`
    (N, T) and the end-of-sequence token as the text of every record."""
    device = next(model.parameters()).device
    eos = getattr(model.config.text_config, "eos_token_id", None)
    eos = 1 if eos is None else int(eos)
    total, count = 0.0, 0
    # The text is deliberately empty (</s> alone), which the processor's input checks reject for real use.
    for start in range(0, ecg_values.shape[0], batch_size):
        batch = ecg_values[start:start + batch_size].to(device)
        ids = torch.full((batch.shape[0], 1), eos, dtype=torch.long, device=device)
        out = model(ecg_values=batch, input_ids=ids, attention_mask=torch.ones_like(ids),
                    noise=noise[start:start + batch_size].to(device), apply_ecg_mask=True, return_mlm_logits=False,
                    return_loss=True)
        total += float(out.mem_loss) * batch.shape[0]
        count += batch.shape[0]
    return total / count


def diagnose_input_convention(
    model,
    records: Sequence[str] | None = None,
    ecgs: np.ndarray | None = None,
    num_synthetic: int = 32,
    candidates: Sequence[tuple[str, str]] | None = None,
    min_margin: float = DEFAULT_MIN_MARGIN,
    seed: int = 0,
    batch_size: int = 16,
) -> dict[str, Any]:
    """Measure the MEM loss of `model` under each candidate convention (default: all six, `DIAGNOSTIC_CONVENTIONS`).

    Args:
        model: a `DBetaForPreTraining` (the MEM head is needed), in eval mode or not (it is switched to eval).
        records: WFDB record paths; else `ecgs`, (N, 12, samples) at 500 Hz in mV and canonical order; else
            `num_synthetic` synthetic ECGs.
        candidates: ``[(lead_order, input_normalization), ...]`` to compare, e.g. only the two lead orders when
            the scaling is known; `CANDIDATE_CONVENTIONS` keeps to the scalings the feature extractor can save.
        min_margin: smallest relative gap between the best and the runner-up loss that counts as conclusive.

    Returns:
        ``{"losses": {"standard/none": ..., "mimic/per-record-minmax": ..., ...}, "best": (lead_order,
        input_normalization), "runner_up": ...,
        "margin": float, "axis_margins": {"lead_order": float, "input_normalization": float}, "conclusive": bool,
        "min_margin", "num_records", "source"}``. ``axis_margins`` is the relative loss increase when only that
        setting of the best convention is flipped (inf when the flipped convention was not a candidate).
    """
    if not hasattr(model, "mem_head"):
        raise TypeError(
            f"{type(model).__name__} has no MEM head; load the checkpoint with DBetaForPreTraining.from_pretrained"
        )
    if not model.config.mem_norm_target:
        raise ValueError(
            "the diagnostic compares MEM losses across input scalings, which needs the per-lead normalized MEM target "
            "(config.mem_norm_target=True, the default of the official models/dbeta.py:DBETA.get_targets); this model "
            "was configured without it"
        )
    candidates = [tuple(c) for c in candidates] if candidates is not None else list(DIAGNOSTIC_CONVENTIONS)
    for order, norm in candidates:
        if order not in LEAD_ORDERS or norm not in DIAGNOSTIC_NORMALIZATIONS:
            raise ValueError(f"unknown convention {(order, norm)}; candidates are {DIAGNOSTIC_CONVENTIONS}")
    if len(candidates) < 2:
        raise ValueError("the diagnostic needs at least two candidate conventions to compare")
    if records:
        source = f"{len(records)} WFDB record(s)"
    elif ecgs is not None:
        ecgs = np.asarray(ecgs, dtype=np.float32)
        source = f"{len(ecgs)} given ECG(s)"
    else:
        ecgs = synthetic_diagnostic_ecgs(num_synthetic, seed=seed)
        source = f"{len(ecgs)} synthetic ECG(s) (dbeta_hf.data.synthetic)"

    model.eval()
    losses: dict[str, float] = {}
    noise = None
    for order, norm in candidates:
        values = prepare_for_convention(model.config, order, norm, ecgs=ecgs, records=records)
        if noise is None:  # one fixed masking noise for every convention
            num_tokens = model.config.ecg_config.num_tokens(values.shape[-1])
            noise = torch.rand(values.shape[0], num_tokens, generator=torch.Generator().manual_seed(seed))
        losses[convention_name(order, norm)] = measure_mem_losses(model, values, noise, batch_size=batch_size)

    invariant = affine_invariant(model.config)
    representative = {c: _class_of(c, candidates, invariant) for c in candidates}
    classes = sorted(dict.fromkeys(representative.values()), key=lambda c: losses[convention_name(*c)])
    if len(classes) < 2:
        raise ValueError(
            f"the candidates {[convention_name(*c) for c in candidates]} are indistinguishable for this model (none "
            "and per-record-minmax differ by a scale and offset its ECG tower removes); add another candidate"
        )
    best, runner_up = classes[0], classes[1]
    equivalent = [convention_name(*c) for c in candidates if representative[c] == best and c != best]
    folded = [convention_name(*c) for c in candidates if representative[c] != c]
    best_loss, second_loss = losses[convention_name(*best)], losses[convention_name(*runner_up)]
    margin = (second_loss - best_loss) / max(best_loss, 1e-12)
    return {
        "axis_margins": _axis_margins(losses, best, folded),
        "flip_margins": _flip_margins(losses, best),
        "losses": losses,
        "best": best,
        "equivalent": equivalent,
        "affine_invariant": invariant,
        "runner_up": runner_up,
        "margin": margin,
        "conclusive": bool(margin >= min_margin),
        "min_margin": min_margin,
        "num_records": int(len(records) if records else len(ecgs)),
        "source": source,
    }


def affine_invariant(model_config) -> bool:
    """Whether the ECG tower ignores one scale and one offset shared by every lead and sample: with
    ``extractor_mode="default"`` (the official setting) the first conv block (no padding) is followed by a GroupNorm
    per channel over time, which removes the offset exactly and the scale up to its eps."""
    return getattr(model_config.ecg_config, "extractor_mode", None) == "default"


def _class_of(candidate: tuple[str, str], candidates, invariant: bool) -> tuple[str, str]:
    """The convention that stands for `candidate` in the ranking: ``(order, "none")`` for ``(order,
    "per-record-minmax")`` when the model is `affine_invariant` and both were measured (the two inputs differ by a
    scale and offset common to all leads, which such a model cannot tell apart), else `candidate` itself."""
    order, norm = candidate
    if invariant and norm == PER_RECORD_MINMAX and (order, "none") in candidates:
        return (order, "none")
    return candidate


def _axis_margins(losses: dict[str, float], best: tuple[str, str], folded: Sequence[str] = ()) -> dict[str, float]:
    """Per setting: how much worse the best convention gets when only that setting is flipped (relative); inf when
    the flipped convention was not a candidate (the setting was fixed), so it cannot be ambiguous. Conventions in
    `folded` (ranked as another one, see `_class_of`) do not count."""
    best_loss = losses[convention_name(*best)]
    flips = {
        "lead_order": [(order, best[1]) for order in LEAD_ORDERS if order != best[0]],
        "input_normalization": [
            (best[0], norm) for norm in DIAGNOSTIC_NORMALIZATIONS
            if norm != best[1] and convention_name(best[0], norm) not in folded
        ],
    }
    margins = {}
    for setting, others in flips.items():
        measured = [losses[convention_name(*c)] for c in others if convention_name(*c) in losses]
        margins[setting] = (min(measured) - best_loss) / max(best_loss, 1e-12) if measured else float("inf")
    return margins


def _flip_margins(losses: dict[str, float], best: tuple[str, str]) -> dict[str, float]:
    """``{convention: relative loss increase over the best}`` for every measured convention that differs from the
    best in one setting only (the other lead order, or another scaling)."""
    best_loss = losses[convention_name(*best)]
    flips = [(order, best[1]) for order in LEAD_ORDERS if order != best[0]]
    flips += [(best[0], norm) for norm in DIAGNOSTIC_NORMALIZATIONS if norm != best[1]]
    return {
        convention_name(*c): (losses[convention_name(*c)] - best_loss) / max(best_loss, 1e-12)
        for c in flips if convention_name(*c) in losses
    }


def report_as_json(report: dict[str, Any]) -> dict[str, Any]:
    """The report with lists for tuples and None for an infinite (fixed-setting) margin, for `json.dump`."""
    out = {k: list(v) if isinstance(v, tuple) else v for k, v in report.items()}
    out["axis_margins"] = {k: (None if v == float("inf") else v) for k, v in report["axis_margins"].items()}
    return out


def format_report(report: dict[str, Any]) -> str:
    """The diagnostic as a small text table."""
    lines = [f"MEM reconstruction loss on {report['source']} (lower = the model's convention):"]
    for name, loss in sorted(report["losses"].items(), key=lambda item: item[1]):
        lines.append(f"  {name:<28} {loss:.5f}")
    verdict = "conclusive" if report["conclusive"] else f"inconclusive (below {report['min_margin']:.0%})"
    axes = ", ".join(f"{k} {v:.1%}" for k, v in report["axis_margins"].items() if v != float("inf"))
    lines.append(f"margin of each setting (loss increase when only it is flipped): {axes}")
    flips = report.get("flip_margins") or {}
    if flips:
        lines.append("  " + ", ".join(f"{name} {value:+.2%}" for name, value in flips.items()))
    if report.get("equivalent"):
        lines.append(
            f"note: {convention_name(*report['best'])} and {', '.join(report['equivalent'])} differ by one scale and "
            "offset common to all leads; this model's ECG tower (extractor_mode='default') removes the offset exactly "
            "and the scale up to its GroupNorm eps, so the loss cannot separate them (and the choice barely changes "
            "the model's outputs): they are ranked as one"
        )
    lines.append(
        f"best: {convention_name(*report['best'])}; margin over {convention_name(*report['runner_up'])}: "
        f"{report['margin']:.1%} ({verdict})"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dbeta_hf.conversion.diagnose_input_convention",
        description="Measure which lead order and input scaling a D-BETA checkpoint expects (label-free, MEM loss).",
    )
    parser.add_argument("--model", required=True, help="model folder or Hub id (a DBetaForPreTraining checkpoint)")
    parser.add_argument("--records", nargs="+", default=None, help="WFDB records (default: synthetic ECGs)")
    parser.add_argument("--num-synthetic", type=int, default=32, help="synthetic ECGs when no --records")
    parser.add_argument("--min-margin", type=float, default=DEFAULT_MIN_MARGIN, help="relative margin called conclusive")
    parser.add_argument("--seed", type=int, default=0, help="seed of the masking noise and the synthetic ECGs")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", default=None, help="also write the report to this JSON file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    model, info = DBetaForPreTraining.from_pretrained(args.model, output_loading_info=True)
    missing_heads = [k for k in info.get("missing_keys", []) if k.startswith("mem_head.")]
    if missing_heads:
        print(f"error: {args.model} has no MEM head weights ({missing_heads[0]}, ...); the diagnostic needs the "
              "pretraining checkpoint (DBetaForPreTraining), not a DBetaModel export", file=sys.stderr)
        return 1
    report = diagnose_input_convention(
        model, records=args.records, num_synthetic=args.num_synthetic, min_margin=args.min_margin, seed=args.seed,
        batch_size=args.batch_size,
    )
    print(format_report(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report_as_json(report), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
