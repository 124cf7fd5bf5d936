"""The model card written next to every saved or pushed D-BETA (the `README.md` of a Hub repository).

Built with huggingface_hub's `ModelCard` / `ModelCardData` from the template `MODEL_CARD.md` at the top of the
repository: the YAML metadata (library, pipeline tag, licence, base model, datasets and a `model-index` with the
results measured for that model) and the human-readable text (how to load it, input contract, training settings,
intended use, citation).

`write_model_card(folder, ...)` is the one call a saving site makes. It reads the folder it writes into, so that
what the card says is true for that folder:

* the loading example uses the Auto class of the saved architecture, loads only what the folder holds (a processor
  with its tokenizer, a feature extractor alone, or nothing) and names the folder as the user types it (its path,
  or the Hub id it is pushed to);
* ``trust_remote_code=True`` appears only when the folder carries the code files;
* a ``base_model`` is kept only when the folder can be it: a local path is not a Hub id, and ``google/flan-t5-base``
  is dropped when the text tower does not have Flan-T5-base's shape (a tiny test model);
* a card that dbeta_hf wrote earlier into the same folder is updated, not replaced: its measured results, base
  model, datasets, licence and training settings are kept unless given again, so the model's save, the processor's
  save, the Trainer and the evaluation commands can each call it once.

    >>> write_model_card("outputs/finetune/model_ptbxl_super",
    ...                  results=[eval_result("fine-tune", "ptbxl_super", 0.912)])
    >>> write_model_card("outputs/dbeta", results=results_from_file("outputs/zero_shot/zero_shot_results.json"))
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..configuration_dbeta import FLAN_T5_BASE_TEXT_CONFIG
from ..evaluation.metrics import TASK_DISPLAY_NAMES, fraction_label
from ..feature_extraction_dbeta import DBetaECGFeatureExtractor

logger = logging.getLogger(__name__)

# `MODEL_CARD.md` at the top of the repository, linked into the package's resources so that wheels ship it too
TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "resources" / "MODEL_CARD.md"
MODEL_CARD_NAME = "README.md"
# D-BETA maps ECGs (and texts) to embeddings; zero-shot diagnosis scores them against class descriptions. The Hub's
# text task `zero-shot-classification` would advertise a text classifier, so the card uses `feature-extraction`.
PIPELINE_TAG = "feature-extraction"
OFFICIAL_LICENSE = "cc-by-nc-4.0"
FLAN_T5_BASE = "google/flan-t5-base"
TAGS = ["ecg", "electrocardiogram", "medical", "multimodal", "dbeta", "custom_code"]
_CARD_TAG = "dbeta"  # a README.md with this tag and library transformers was written by this module
_OFFICIAL_ORIGIN = "These are the official D-BETA weights, converted key for key to the transformers implementation."

# evaluation kind -> (model-index task type, readable task name). The Hub groups model-index entries by task type
# and dataset, so every kind has a task type of its own.
EVALUATION_KINDS = {
    "zero-shot": ("zero-shot-classification", "Zero-shot ECG classification"),
    "linear-probe": ("feature-extraction", "Linear probe on frozen ECG features"),
    "retrieval": ("text-retrieval", "ECG-report retrieval"),
    "fine-tune": ("other", "Fine-tuned ECG classification"),
}
_METRIC_NAMES = {"roc_auc": "macro AUROC", "recall": "Recall", "challenge_score": "CinC 2021 challenge score",
                 "f1": "macro F1"}

# saved architecture -> (Auto class that loads it, what the loading example does with it)
_AUTO_CLASSES = {
    "DBetaModel": "AutoModel",
    "DBetaForPreTraining": "AutoModel",  # the embeddings: the pretraining heads are not needed to use the model
    "DBetaForECGClassification": "AutoModelForSequenceClassification",
}
_CODE_FILES = ("configuration_dbeta.py", "modeling_dbeta.py")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model")


# ------------------------------------------------------------------------------------------------ results
def task_display_name(task: str) -> str:
    """``ptbxl_super`` -> ``PTB-XL Super``; a lead setting ``physionet2021_6lead`` -> ``PhysioNet 2021 (6 leads)``."""
    match = re.fullmatch(r"(.+)_(\d+)lead", task)
    if match and match.group(1) in TASK_DISPLAY_NAMES:
        return f"{TASK_DISPLAY_NAMES[match.group(1)]} ({match.group(2)} leads)"
    return TASK_DISPLAY_NAMES.get(task, task)


def eval_result(kind: str, dataset: str, value: float, metric: str = "roc_auc", *, split: str = "test",
                metric_name: str | None = None, dataset_name: str | None = None) -> EvalResult:
    """One measured number for the card's `model-index`.

    Args:
        kind: ``"zero-shot"``, ``"linear-probe"``, ``"retrieval"`` or ``"fine-tune"``.
        dataset: the dataset / task key (``"ptbxl_super"``, ``"synthetic"``, ...); its readable name
            (`task_display_name`) is the dataset's name unless `dataset_name` is given.
        value: the measured value (AUROC as a fraction, not a percentage).
        metric: the metric type (default ``"roc_auc"``; ``"recall"``, ``"challenge_score"``, ``"f1"``, ...).
        metric_name: the readable metric name (default from `metric`), e.g. ``"Recall@1, ECG->report"``.
    """
    if kind not in EVALUATION_KINDS:
        raise ValueError(f"unknown evaluation kind {kind!r}; choose one of {sorted(EVALUATION_KINDS)}")
    value = float(value)
    if value != value:  # NaN: nothing was measured
        raise ValueError(f"{kind} {metric} on {dataset} is NaN: a card reports measured numbers only")
    task_type, task_name = EVALUATION_KINDS[kind]
    return EvalResult(
        task_type=task_type, task_name=task_name, dataset_type=dataset,
        dataset_name=dataset_name or task_display_name(dataset), dataset_split=split, metric_type=metric,
        metric_value=value, metric_name=metric_name or _METRIC_NAMES.get(metric, metric),
    )


def _finite(value) -> bool:
    try:
        return value is not None and float(value) == float(value) and abs(float(value)) != float("inf")
    except (TypeError, ValueError):
        return False


def results_from_summary(kind: str, results: Mapping[str, Any]) -> list[EvalResult]:
    """Card entries from the results dict of the evaluation commands (`{"tasks": {task: {"macro_auroc": ...}}}`,
    as written by examples/zero_shot.py) or a plain `{task: value}` mapping."""
    tasks = results.get("tasks", results)
    out = []
    for task, value in tasks.items():
        if isinstance(value, Mapping):
            value = value.get("macro_auroc")
        if _finite(value):
            out.append(eval_result(kind, task, value))
    return out


def results_from_zero_shot(results: Mapping[str, Any]) -> list[EvalResult]:
    """`zero_shot_results.json` of examples/zero_shot.py: the macro AUROC of every task, and of every
    distribution-shift pair (``"S->T"``: T's test split on the classes T shares with S)."""
    split = results.get("split", "test")
    out = [eval_result("zero-shot", task, res["macro_auroc"], split=split)
           for task, res in (results.get("tasks") or {}).items() if _finite(res.get("macro_auroc"))]
    for pair, res in (results.get("cross_dataset") or {}).items():
        source, _, target = pair.partition("->")
        if _finite(res.get("macro_auroc")):
            out.append(eval_result("zero-shot", target, res["macro_auroc"], split=split,
                                   metric_name=f"macro AUROC, classes shared with {task_display_name(source)}"))
    return out


def results_from_linear_probe(results: Mapping[str, Any], method: str = "D-BETA") -> list[EvalResult]:
    """`linear_probe_results.json` of examples/linear_probe.py: the test macro AUROC of the pretrained encoder's
    probe per task and label fraction (mean over the seeds; with ``--protocol merl`` the last epoch's AUROC, not
    the maximum over epochs, which is selected on the test set). The random-init baseline is not this model."""
    out = []
    merl = results.get("protocol") == "merl"
    for task, res in (results.get("methods", {}).get(method) or {}).items():
        for label, entry in res.get("fractions", {}).items():
            value = entry.get("last_epoch_auroc") if merl else entry.get("macro_auroc_mean")
            if not _finite(value):
                continue
            runs = len(entry.get("runs", ())) or 1
            detail = "MERL protocol, last epoch" if merl else f"mean of {runs} seed{'s' if runs > 1 else ''}"
            out.append(eval_result("linear-probe", task, value,
                                   metric_name=f"macro AUROC, {fraction_label(label)} of the training labels ({detail})"))
    return out


def results_from_retrieval(results: Mapping[str, Any], dataset: str | None = None,
                           split: str | None = None) -> list[EvalResult]:
    """`retrieval_results.json` of examples/retrieval.py (or the ``retrieval`` entry of the pretraining report):
    Recall@k in both directions. `dataset` / `split` default to what the results record (``dataset_key``,
    ``dataset``, ``split``)."""
    name = results.get("dataset")
    dataset = dataset or results.get("dataset_key") or name or "heldout"
    split = split or results.get("split") or "test"
    out = []
    for direction, arrow in (("ecg_to_report", "ECG->report"), ("report_to_ecg", "report->ECG")):
        for key, value in (results.get(direction) or {}).items():
            if key.startswith("R@") and _finite(value):
                out.append(eval_result("retrieval", dataset, value, metric="recall", split=split,
                                       metric_name=f"Recall@{key[2:]}, {arrow}",
                                       dataset_name=name if name and name != dataset else None))
    return out


def results_from_finetune(record: Mapping[str, Any], task: str) -> list[EvalResult]:
    """The test numbers of one fine-tuning run (a run record of examples/finetune.py): macro AUROC, and for
    PhysioNet 2021 the challenge score and macro F1."""
    out = []
    for key, metric in (("macro_auroc", "roc_auc"), ("challenge_score", "challenge_score"), ("macro_f1", "f1")):
        if _finite(record.get(key)):
            out.append(eval_result("fine-tune", task, record[key], metric=metric))
    return out


def results_from_pretraining_report(report: Mapping[str, Any], dataset: str) -> list[EvalResult]:
    """The end-of-pretraining report (`dbeta_hf.evaluation.pretraining_report.pretraining_report`): zero-shot and
    linear-probe macro AUROC and Recall@k, all on the held-out records of `dataset`."""
    out = []
    if _finite((report.get("zero_shot") or {}).get("macro_auroc")):
        out.append(eval_result("zero-shot", dataset, report["zero_shot"]["macro_auroc"], split="heldout"))
    probe = report.get("linear_probe") or {}
    if _finite(probe.get("macro_auroc")):
        out.append(eval_result("linear-probe", dataset, probe["macro_auroc"], split="heldout",
                               metric_name=f"macro AUROC ({probe.get('num_train', '?')} training records)"))
    out += results_from_retrieval(report.get("retrieval") or {}, dataset, split="heldout")
    return out


def results_from_file(path: str | os.PathLike) -> list[EvalResult]:
    """The card entries of a results JSON written by the evaluation commands: ``zero_shot_results.json``,
    ``linear_probe_results.json``, ``retrieval_results.json`` (recognised by their content)."""
    results = json.loads(Path(path).read_text())
    if "tasks" in results or "cross_dataset" in results:
        return results_from_zero_shot(results)
    if "ecg_to_report" in results:
        return results_from_retrieval(results)
    if "methods" in results and "protocol" in results:
        return results_from_linear_probe(results)
    raise ValueError(f"{path} is not a results file of examples/zero_shot.py, linear_probe.py or retrieval.py")


# ------------------------------------------------------------------------------------------------ the folder
@dataclass
class SavedFolder:
    """What a saved folder holds, as far as its card is concerned (`inspect_folder`)."""

    architecture: str | None = "DBetaModel"
    remote_code: bool = True  # config.json's auto_map and the code files are there
    processor: str | None = "processor"  # "processor" (with tokenizer), "feature_extractor" or None
    processor_remote_code: bool = True
    text_config: Mapping[str, Any] | None = None
    problem_type: str | None = None
    feature_extractor: DBetaECGFeatureExtractor | None = None
    labels: list[str] | None = None  # a classifier's class names (config.id2label)

    @property
    def auto_class(self) -> str | None:
        return _AUTO_CLASSES.get(self.architecture or "")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def inspect_folder(folder: str | os.PathLike) -> SavedFolder:
    """Read a folder written by `save_pretrained`: the model class, whether the code files are there, and which
    preprocessing objects were saved with it (a whole processor, the feature extractor alone, or none)."""
    folder = Path(folder)
    config = _read_json(folder / "config.json")
    architecture = (config.get("architectures") or [None])[0]
    auto_class = _AUTO_CLASSES.get(architecture or "")
    has_code = all((folder / name).is_file() for name in _CODE_FILES)
    remote_code = bool(has_code and auto_class and auto_class in (config.get("auto_map") or {}))
    processor_config = _read_json(folder / "processor_config.json")
    preprocessor_config = _read_json(folder / "preprocessor_config.json")
    has_tokenizer = any((folder / name).is_file() for name in _TOKENIZER_FILES)
    if processor_config and has_tokenizer:
        processor, auto_map = "processor", processor_config.get("auto_map") or {}
        processor_remote = "AutoProcessor" in auto_map
    elif preprocessor_config or "feature_extractor" in processor_config:
        processor = "feature_extractor"
        auto_map = preprocessor_config.get("auto_map") or (processor_config.get("feature_extractor") or {}).get("auto_map") or {}
        processor_remote = "AutoFeatureExtractor" in auto_map
    else:
        processor, processor_remote = None, False
    feature_extractor = None
    if processor is not None:
        try:
            feature_extractor = DBetaECGFeatureExtractor.from_pretrained(folder)
        except (OSError, ValueError, TypeError) as error:
            logger.warning("model card: could not read the feature extractor saved in %s (%s)", folder, error)
    if feature_extractor is None and config.get("ecg_config"):
        ecg = config["ecg_config"]
        feature_extractor = DBetaECGFeatureExtractor(
            sampling_rate=ecg.get("sampling_rate", 500), num_samples=ecg.get("num_samples", 5000))
    return SavedFolder(
        architecture=architecture, remote_code=remote_code, processor=processor,
        processor_remote_code=bool(processor_remote and has_code), text_config=config.get("text_config"),
        problem_type=config.get("problem_type"), feature_extractor=feature_extractor,
        labels=[str(v) for _, v in sorted((config.get("id2label") or {}).items(), key=lambda kv: int(kv[0]))]
        if architecture == "DBetaForECGClassification" else None,
    )


def text_tower_is_flan_t5_base(text_config: Mapping[str, Any] | None) -> bool:
    """Whether a saved text config has Flan-T5-base's shape (width, depth, heads, vocabulary, activation)."""
    if not text_config:
        return False
    keys = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads", "feed_forward_proj")
    return all(text_config.get(key) == FLAN_T5_BASE_TEXT_CONFIG[key] for key in keys)


def _is_local_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or os.path.isabs(name) or Path(name).exists() or name.count("/") > 1


def checked_base_model(base_model: str | Sequence[str] | None, folder: SavedFolder | None) -> str | list[str] | None:
    """The ``base_model`` entries that are true for the folder: Hub ids only (a local path is left out), and
    ``google/flan-t5-base`` only when the saved text tower has its shape."""
    if not base_model:
        return None
    names = [base_model] if isinstance(base_model, str) else list(base_model)
    kept = []
    for name in names:
        if _is_local_path(name):
            logger.info("model card: base_model %r is a local path, not a Hub id; left out", name)
        elif name == FLAN_T5_BASE and folder is not None and folder.text_config is not None \
                and not text_tower_is_flan_t5_base(folder.text_config):
            logger.info("model card: base_model %s left out: the saved text tower does not have its shape", name)
        else:
            kept.append(name)
    return kept[0] if len(kept) == 1 else (kept or None)


# ------------------------------------------------------------------------------------------------ loading example
def _ecg_line(extractor: DBetaECGFeatureExtractor) -> str:
    leads, samples = len(extractor.lead_names), extractor.num_samples
    return (f"signal = np.random.default_rng(0).normal(scale=0.1, size=({leads}, {samples})).astype(np.float32)  "
            f"# stand-in for your ECG: (leads, samples) in millivolts")


def loading_section(folder: SavedFolder, load_path: str) -> str:
    """The card's "how to load it" text and code for exactly what `folder` holds, loaded from `load_path`."""
    extractor = folder.feature_extractor or DBetaECGFeatureExtractor()
    rate = f"{extractor.sampling_rate:g}"
    path = json.dumps(load_path)
    auto = folder.auto_class
    remote = ", trust_remote_code=True" if folder.remote_code else ""
    proc_remote = ", trust_remote_code=True" if folder.processor_remote_code else ""
    lines = ["import numpy as np", "import torch"]
    if auto is None:
        # an architecture without an Auto class (DBetaECGModel) loads through its own class
        name = folder.architecture or "DBetaModel"
        lines += [f"from dbeta_hf import {name}", "", f"model = {name}.from_pretrained({path}).eval()"]
        intro = f"The folder holds a `{name}`; it loads with `dbeta_hf` installed:"
    else:
        imports = [auto] + {"processor": ["AutoProcessor"], "feature_extractor": ["AutoFeatureExtractor"]}.get(
            folder.processor, [])
        needs_package = not folder.remote_code or (folder.processor and not folder.processor_remote_code)
        lines += (["import dbeta_hf  # pip install dbeta_hf"] if needs_package else []) + [
            f"from transformers import {', '.join(imports)}", ""]
        if needs_package:
            lines.append("dbeta_hf.register_auto_classes()  # the Auto classes now know D-BETA folders")
        lines.append(f"model = {auto}.from_pretrained({path}{remote}).eval()")
        intro = ("The folder carries its code (`trust_remote_code=True`), so it loads without installing `dbeta_hf`:"
                 if folder.remote_code else "The folder holds no code files; it loads with `dbeta_hf` installed:")
    classify = folder.architecture == "DBetaForECGClassification"
    if folder.processor == "processor":
        lines.append(f"processor = AutoProcessor.from_pretrained({path}{proc_remote})")
        lines.append(_ecg_line(extractor))
        if classify:
            lines.append(f"inputs = processor(ecg=signal, sampling_rate={rate})")
        else:
            lines.append(f'inputs = processor(ecg=signal, sampling_rate={rate}, text=["sinus rhythm. normal ecg."])')
    elif folder.processor == "feature_extractor":
        lines.append(f"feature_extractor = AutoFeatureExtractor.from_pretrained({path}{proc_remote})")
        lines.append(_ecg_line(extractor))
        lines.append(f'inputs = feature_extractor(signal, sampling_rate={rate}, return_tensors="pt")')
    else:
        lines.append(f"# no processor was saved here: prepare ECGs as the input specification below says "
                     f"({len(extractor.lead_names)} leads, {rate} Hz, {extractor.num_samples} samples, millivolts)")
        lines.append(f"inputs = {{\"ecg_values\": torch.zeros(1, {len(extractor.lead_names)}, {extractor.num_samples})}}")
    lines.append("with torch.no_grad():")
    if classify:
        activation = "torch.softmax(logits, dim=-1)" if folder.problem_type == "single_label_classification" \
            else "torch.sigmoid(logits)"
        lines += ['    logits = model(ecg_values=inputs["ecg_values"]).logits',
                  f"probabilities = {activation}[0]",
                  "print({model.config.id2label[i]: round(float(p), 3) for i, p in enumerate(probabilities)})"]
    else:
        lines.append('    ecg_embeds = model.get_ecg_features(inputs["ecg_values"])')
        if folder.processor == "processor" and folder.architecture != "DBetaECGModel":
            lines += ['    text_embeds = model.get_text_features(inputs["input_ids"], inputs["attention_mask"])',
                      "scores = ecg_embeds @ text_embeds.T   # the official zero-shot score (raw dot product, "
                      "example.ipynb:zero_shot)"]
    text = [intro, "", "```python", *lines, "```", ""]
    if folder.processor != "processor" and not classify and folder.architecture != "DBetaECGModel":
        text.append("No tokenizer was saved in this folder, so the example embeds ECGs only. Text features (zero-shot "
                    "scoring, retrieval) need the T5 tokenizer the text tower was trained with: save it here as a "
                    "`DBetaProcessor` (`DBetaProcessor.from_tokenizer(tokenizer_name_or_path, ...)` with this "
                    "folder's feature extractor settings, then `save_pretrained`).")
        text.append("")
    if folder.remote_code:
        text.append("With `pip install dbeta_hf`, `dbeta_hf.register_auto_classes()` registers the classes and "
                    "`trust_remote_code` is not needed.")
    return "\n".join(text).rstrip() + "\n"


# ------------------------------------------------------------------------------------------------ the card
def _input_contract(feature_extractor) -> dict[str, Any]:
    if feature_extractor is None:
        feature_extractor = DBetaECGFeatureExtractor()
    rate = feature_extractor.sampling_rate
    return {
        "num_leads": len(feature_extractor.lead_names),
        "lead_order": ", ".join(feature_extractor.lead_names),
        "sampling_rate": f"{rate:g}",
        "num_samples": feature_extractor.num_samples,
        "duration": f"{feature_extractor.num_samples / rate:g}",
        "units": {"mV": "millivolts", "uV": "microvolts", "V": "volts"}.get(feature_extractor.units, feature_extractor.units),
        "crop": f"crop={feature_extractor.crop!r}",
        "lead_order_name": feature_extractor.lead_order,
        "input_normalization": feature_extractor.input_normalization,
    }


def build_model_card(
    repo_id: str,
    *,
    feature_extractor=None,
    results: Sequence[EvalResult] = (),
    training_settings: Mapping[str, Any] | None = None,
    base_model: str | Sequence[str] | None = None,
    datasets: str | Sequence[str] | None = None,
    license: str | None = None,
    converted_from_official: bool = False,
    template_path: str | os.PathLike | None = None,
    folder: SavedFolder | None = None,
) -> ModelCard:
    """The D-BETA model card of one saved model.

    Args:
        repo_id: the Hub id or folder path the card names in its title and loading example, as the user types it.
        feature_extractor: the checkpoint's `DBetaECGFeatureExtractor`: its leads, rate, length and units are the
            card's input contract (default: the folder's, else the D-BETA defaults).
        results: measured numbers (`eval_result`, `results_from_*`); they go into `model-index`.
        training_settings: a readable table of how the model was trained.
        base_model, datasets: Hub ids for the metadata (`base_model` is checked with `checked_base_model`).
        license: the licence id; converted official weights are ``cc-by-nc-4.0`` whatever is given.
        converted_from_official: the weights come from the official D-BETA checkpoint.
        folder: what the saved folder holds (`inspect_folder`); None: a `DBetaModel` with its processor and code.
    """
    template = Path(template_path) if template_path is not None else TEMPLATE_PATH
    if not template.is_file():
        raise FileNotFoundError(
            f"the model card template {template} is missing (MODEL_CARD.md of the dbeta_hf repository, linked as "
            "dbeta_hf/resources/MODEL_CARD.md); reinstall dbeta_hf or pass template_path="
        )
    if converted_from_official:
        license = OFFICIAL_LICENSE
    contents = folder if folder is not None else SavedFolder()
    if feature_extractor is None:
        feature_extractor = contents.feature_extractor
    model_name = repo_id.rstrip("/").split("/")[-1] or repo_id
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        license=license,
        base_model=checked_base_model(base_model, folder),
        datasets=[datasets] if isinstance(datasets, str) else (list(datasets) if datasets else None),
        tags=list(TAGS),
        model_name=model_name,
        eval_results=list(results) or None,
    )
    if converted_from_official:
        origin = _OFFICIAL_ORIGIN
        licence_text = ("The official D-BETA code and weights are CC BY-NC 4.0 (non-commercial); these converted "
                        "weights inherit that licence.")
    else:
        origin = "This checkpoint was trained with the `dbeta_hf` package."
        licence_text = (f"Licence: {license}." if license else "No licence was set for this checkpoint.") + (
            " Weights trained on MIMIC-IV-ECG are subject to the PhysioNet Credentialed Health Data License; "
            "the official D-BETA code and weights are CC BY-NC 4.0.")
    if contents.architecture == "DBetaForECGClassification":
        labels = contents.labels or []
        outputs = "softmax" if contents.problem_type == "single_label_classification" else "multi-label, sigmoid"
        origin += (f" It is a `DBetaForECGClassification`: D-BETA's ECG encoder with a classification head "
                   f"({outputs} outputs) over {len(labels)} classes: {', '.join(labels)}.")
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        model_name=model_name,
        repo_id=repo_id,
        origin=origin,
        loading=loading_section(contents, repo_id),
        has_processor=contents.processor is not None,
        preprocessor_name="feature extractor" if contents.processor == "feature_extractor" else "processor",
        licence_text=licence_text,
        training_settings={str(k): v for k, v in (training_settings or {}).items()},
        results=list(results),
        **_input_contract(feature_extractor),
    )


def _result_key(result: EvalResult) -> tuple:
    return (result.task_type, result.dataset_type, result.dataset_split, result.metric_type, result.metric_name)


def merge_results(old: Iterable[EvalResult], new: Iterable[EvalResult]) -> list[EvalResult]:
    """`old` then `new`; a new result replaces an old one of the same task, dataset, split and metric."""
    merged = {_result_key(r): r for r in old}
    for result in new:
        merged.pop(_result_key(result), None)
        merged[_result_key(result)] = result
    return list(merged.values())


def _section_rows(text: str, heading: str) -> dict[str, str]:
    """The ``| name | value |`` rows of a card section (the Training table)."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    rows = {}
    for line in (match.group(1) if match else "").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 2 and cells != ["setting", "value"] and not set(cells[0]) <= set("-:"):
            rows[cells[0]] = cells[1]
    return rows


def read_model_card(path: str | os.PathLike) -> dict[str, Any] | None:
    """The inputs of a card dbeta_hf wrote (results, base model, datasets, licence, training settings, origin), to
    update it; None when `path` is missing or is not such a card."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        card = ModelCard.load(path)
    except Exception as error:  # a README.md of the user's own that is not a model card
        logger.info("model card: %s is not a model card dbeta_hf can read (%s)", path, error)
        return None
    data = card.data
    if _CARD_TAG not in (data.tags or []) or data.library_name != "transformers":
        return None
    base_model = data.base_model
    return {
        "results": list(data.eval_results or []),
        "base_model": base_model,
        "datasets": data.datasets,
        "license": data.license,
        "training_settings": _section_rows(card.text, "Training"),
        "converted_from_official": _OFFICIAL_ORIGIN in card.text,
    }


def write_model_card(save_directory: str | os.PathLike, repo_id: str | None = None, *,
                     results: Sequence[EvalResult] = (), training_settings: Mapping[str, Any] | None = None,
                     base_model: str | Sequence[str] | None = None, datasets: str | Sequence[str] | None = None,
                     license: str | None = None, converted_from_official: bool | None = None,
                     feature_extractor=None, replace: bool = False, **kwargs) -> Path:
    """Write (or update) `save_directory/README.md`, true for what the folder holds now (`inspect_folder`).

    Args:
        save_directory: the folder `save_pretrained` wrote.
        repo_id: the Hub id the folder is pushed to; None: the card names the folder by `save_directory` as given
            (e.g. ``outputs/finetune/model_ptbxl_super``), the path the user types to load it.
        results: measured numbers for `model-index` (`eval_result`, `results_from_*`).
        training_settings, base_model, datasets, license, converted_from_official: as in `build_model_card`.
        replace: ignore a card dbeta_hf wrote there before. By default its results (a new result replaces an old
            one of the same task, dataset and metric), base model, datasets, licence, origin and training settings
            (updated with the given ones) are kept unless given again.
    """
    folder = Path(save_directory)
    path = folder / MODEL_CARD_NAME
    previous = None if replace else read_model_card(path)
    if previous:
        results = merge_results(previous["results"], results)
        training_settings = {**previous["training_settings"], **dict(training_settings or {})}
        base_model = base_model if base_model is not None else previous["base_model"]
        datasets = datasets if datasets is not None else previous["datasets"]
        license = license if license is not None else previous["license"]
        if converted_from_official is None:
            converted_from_official = previous["converted_from_official"]
    build_model_card(
        repo_id or os.fspath(save_directory), folder=inspect_folder(folder), results=list(results),
        training_settings=training_settings, base_model=base_model, datasets=datasets, license=license,
        converted_from_official=bool(converted_from_official), feature_extractor=feature_extractor, **kwargs,
    ).save(path)
    return path


def refresh_model_card(save_directory: str | os.PathLike, **kwargs) -> Path | None:
    """The call for `save_pretrained` of the model, processor and feature extractor: (re)write the card of a
    folder that holds a saved model (its ``config.json``), keeping what an earlier card held (`write_model_card`);
    nothing for a folder without a model yet (the model's own save writes the card then). Returns the card's path
    or None."""
    if not (Path(save_directory) / "config.json").is_file():
        return None
    return write_model_card(save_directory, **kwargs)


def training_settings_from_args(args, **extra) -> dict[str, Any]:
    """The readable settings of a `TrainingArguments` run for the card."""
    world = getattr(args, "world_size", 1)
    settings = {
        "steps": args.max_steps if args.max_steps and args.max_steps > 0 else f"{args.num_train_epochs:g} epochs",
        "per-device batch": args.per_device_train_batch_size,
        "processes": world,
        "gradient accumulation": args.gradient_accumulation_steps,
        "learning rate": f"{args.learning_rate:g}",
        "schedule": f"{getattr(args.lr_scheduler_type, 'value', args.lr_scheduler_type)}, {args.warmup_steps} warm-up steps",
        "weight decay": args.weight_decay,
        "precision": "bf16" if args.bf16 else ("fp16" if args.fp16 else "fp32"),
        "seed": args.seed,
    }
    settings.update(extra)
    return settings


__all__ = [
    "EVALUATION_KINDS",
    "MODEL_CARD_NAME",
    "OFFICIAL_LICENSE",
    "PIPELINE_TAG",
    "SavedFolder",
    "build_model_card",
    "checked_base_model",
    "eval_result",
    "inspect_folder",
    "loading_section",
    "merge_results",
    "read_model_card",
    "refresh_model_card",
    "results_from_file",
    "results_from_finetune",
    "results_from_linear_probe",
    "results_from_pretraining_report",
    "results_from_retrieval",
    "results_from_summary",
    "results_from_zero_shot",
    "task_display_name",
    "text_tower_is_flan_t5_base",
    "training_settings_from_args",
    "write_model_card",
]
