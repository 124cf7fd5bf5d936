#!/usr/bin/env python
"""Pretrain D-BETA (MLM + MEM + ETM + ETS with N3S negatives) with the transformers Trainer.

Embedded default (no downloads, CPU, a few minutes):

    python examples/pretrain.py

builds a synthetic ECG-report corpus, trains a tiny tokenizer and a tiny D-BETA, prints the four losses as they
fall, saves model + processor to outputs/dbeta-tiny-synthetic and reports, on held-out synthetic ECGs, the zero-shot
and linear-probe AUROC per class and ECG<->report Recall@1/5 (`dbeta_hf.evaluation.pretraining_report`).

Any built dataset, offline, with the demo's pieces (tiny model, corpus tokenizer, bag-of-words N3S index):

    python examples/pretrain.py --dataset_path /data/mimic-arrow --preset tiny --max_steps 200

Real pretraining from Flan-T5-base on MIMIC-IV-ECG (one GPU, or many with accelerate; fsdp.yaml and
deepspeed_zero2.yaml need CUDA devices and are refused on CPU):

    python -m dbeta_hf.data build mimic-iv-ecg /data/mimic-iv-ecg/1.0 --output /data/mimic-arrow
    accelerate launch --config_file examples/accelerate/multi_gpu.yaml examples/pretrain.py \
        --dataset_path /data/mimic-arrow --text_encoder google/flan-t5-base --n3s_index /data/n3s-index \
        --output_dir dbeta-mimic --bf16 --per_device_train_batch_size 128 --learning_rate 5e-5 \
        --num_train_epochs 10 --dataloader_num_workers 8 --save_steps 2000 [--push_to_hub --hub_model_id ORG/NAME]

Several processes on CPU (DDP over gloo, to try a multi-process setup without GPUs; `--cpu --num_processes 2`
would start a single process):

    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \
        examples/pretrain.py --use_cpu true --max_steps 20

Continue or resume: `--model_name_or_path DIR` starts from a saved D-BETA; `--resume_from_checkpoint DIR`
restores model, optimizer, scheduler, data order and the processor (its tokenizer) from a Trainer checkpoint. A
run whose `--output_dir` holds checkpoints resumes from the last complete one (a checkpoint whose save was cut
short has no completeness marker and is skipped, named in a warning) unless `--overwrite_output_dir` is given. A
resume compares the checkpoint's recorded data, N3S settings and model config with this run's (another config is an
error naming the fields; other data a warning). One run at a time per `--output_dir` (a lock file names the holder).

The demo is chosen when no data argument (`--dataset_path`, `--mimic_root`) is given, or with `--synthetic`; its
settings (model, collator, loss policies, training arguments) are `dbeta_hf.pretraining.recipes.DEMO_RECIPE`, and
every flag given overrides them. The defaults that `--help` shows are those of real pretraining. The N3S index goes
to `<output_dir>/_n3s_index` unless `--n3s_index` says otherwise; Trainer pushes skip `_*` folders.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from dbeta_hf.pretraining.arguments import DBetaTrainingArguments, training_policies
from dbeta_hf.pretraining.recipes import DEMO_RECIPE, PretrainingRecipe
from dbeta_hf.text_normalization import MAX_TEXT_LENGTH

logger = logging.getLogger("dbeta_hf.pretrain")

DEFAULT_SYNTHETIC_OUTPUT = DEMO_RECIPE.training["output_dir"]
DEFAULT_N3S_DIR = "_n3s_index"  # inside --output_dir; Trainer's Hub pushes skip `_*`
SYNTHETIC_CACHE_DIR = "_synthetic_corpus"  # inside --output_dir, multi-process demo runs only
DEFAULT_TINY_OUTPUT = "outputs/dbeta-tiny"  # --dataset_path DIR --preset tiny
PRESETS = ("tiny",)


class UsageError(ValueError):
    """A flag or launch that cannot work; run as a script, its message is printed as one line (exit status 2)."""


@dataclass
class ModelArguments:
    text_encoder: str = field(
        default="google/flan-t5-base",
        metadata={"help": "T5 checkpoint for a fresh model's text tower and tokenizer (ignored with --model_name_or_path)."},
    )
    model_name_or_path: str | None = field(default=None, metadata={"help": "Continue from a saved D-BETA (folder or Hub id)."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer to use (default: the text encoder's)."})
    demo_hidden_size: int = field(default=DEMO_RECIPE.model["hidden"],
                                  metadata={"help": "Embedded default: width of the tiny model."})
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Override DBetaConfig fields of a fresh model, e.g. 'mem_mask_ratio=0.6,ets_learnable_bias=true,"
                          "ets_logit_bias_init=-5' (parsed by PretrainedConfig.update_from_string)."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Train from scratch even if --output_dir holds checkpoints (default: resume)."}
    )


@dataclass
class DataArguments:
    dataset_path: str | None = field(
        default=None, metadata={"help": "A DatasetDict saved by `python -m dbeta_hf.data build mimic-iv-ecg` (train/validation)."}
    )
    synthetic: bool = field(
        default=False, metadata={"help": "Run the embedded synthetic demo (also the default when no data argument is given)."}
    )
    preset: str | None = field(default=None, metadata={
        "help": "'tiny': with --dataset_path, train the demo's tiny architecture with a tokenizer trained on the "
                "corpus and a bag-of-words N3S index (no download; the demo's training settings, output "
                f"{DEFAULT_TINY_OUTPUT}). Default: none (Flan-T5 text tower and N3S encoder).",
        "choices": list(PRESETS)})
    mimic_root: str | None = field(default=None, metadata={"help": "MIMIC-IV-ECG root; built (and cached) on the fly."})
    n3s_index: str | None = field(
        default=None, metadata={"help": "N3S index folder; built from the training reports and saved there when absent "
                                        "(default: <output_dir>/_n3s_index, which pushes to the Hub skip)."}
    )
    n3s_encoder: str = field(default="google/flan-t5-small", metadata={"help": "Text encoder that embeds reports for N3S."})
    n3s_k: int = field(default=64, metadata={"help": "Candidate negatives per report."})
    n3s_strategy: str = field(default="dissimilar", metadata={
        "help": "'dissimilar' (official), 'hard', or 'in_batch' (no N3S index: each negative row gets another report of "
                "its batch, the ALBEF-style random negative)."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set (debugging)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the validation set."})
    synthetic_records: int = field(default=DEMO_RECIPE.train_records,
                                   metadata={"help": "Embedded default: synthetic training pairs."})
    synthetic_eval_records: int = field(default=DEMO_RECIPE.eval_records,
                                        metadata={"help": "Embedded default: held-out synthetic ECGs."})
    # the pretraining collator's settings (defaults: the official recipe)
    mlm_probability: float = field(default=0.25, metadata={"help": "Fraction of report tokens selected for MLM."})
    lead_mask_prob: float = field(default=0.5, metadata={"help": "Probability that each ECG lead is zeroed."})
    negative_fraction: float = field(default=0.5, metadata={"help": "Fraction of a batch that gets a negative report."})
    max_text_length: int = field(default=MAX_TEXT_LENGTH, metadata={"help": "Longest tokenised report, </s> included."})
    statement_dropout: float = field(default=0.0, metadata={
        "help": "ETS text view: drop each statement (sentence) of the report with this probability, keeping at least one, "
                "and count a text as an ETS positive of every ECG whose report contains all its statements "
                "(0: official, ETS sees the whole report)."})
    same_report_positives: bool = field(default=False, metadata={
        "help": "Count pairs whose text is the ECG's own report as ETS positives off the diagonal too (identical "
                "reports in a batch); default: off (official; the synthetic demo turns it on)."})


PARSED_ARGUMENTS = (ModelArguments, DataArguments, DBetaTrainingArguments)


def demo_defaults(recipe: PretrainingRecipe) -> dict:
    """The flag defaults of the embedded demo: the recipe's training arguments, loss policies, collator settings,
    model width and corpus sizes. A recipe key that is not a flag is an error (it would be silently ignored)."""
    defaults = {**recipe.training_arguments(), **recipe.collator, "demo_hidden_size": recipe.model["hidden"],
                "synthetic_records": recipe.train_records, "synthetic_eval_records": recipe.eval_records}
    flags = {f.name for arguments in PARSED_ARGUMENTS for f in dataclasses.fields(arguments)}
    unknown = sorted(set(defaults) - flags)
    if unknown:
        raise ValueError(f"the recipe sets {unknown}, which are not flags of examples/pretrain.py")
    return defaults


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and "(default: X)" after every flag's help."""


def build_parser() -> HfArgumentParser:
    return HfArgumentParser(PARSED_ARGUMENTS, description=__doc__, formatter_class=HelpFormatter)


def reject_unknown_flags(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """An unknown flag is answered as argparse answers a bad value (usage, one error line, exit status 2), with the
    closest known flag, instead of HfArgumentParser's traceback."""
    _, unknown = parser.parse_known_args(argv)
    if not unknown:
        return
    known = [option for action in parser._actions for option in action.option_strings]
    problems = []
    for item in unknown:
        flag = item.split("=", 1)[0]
        if not flag.startswith("-"):
            problems.append(f"unexpected value {item!r}")
            continue
        close = difflib.get_close_matches(flag, known, n=1, cutoff=0.6)
        problems.append(f"unrecognized argument {flag}" + (f"; did you mean {close[0]}?" if close else ""))
    parser.error("; ".join(problems))


def parse_arguments(argv: list[str], recipe: PretrainingRecipe = DEMO_RECIPE):
    """Parse the flags (every spelling `--help` shows: `--max_steps` and `--max-steps` alike). Without data arguments
    the demo `recipe` gives the defaults, which any flag the user gives overrides; `--preset tiny` takes the recipe's
    model and training settings for a built dataset. Returns (model, data, training args, synthetic)."""
    parser = build_parser()
    reject_unknown_flags(parser, argv)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    has_data = data_args.dataset_path is not None or data_args.mimic_root is not None
    if data_args.synthetic and has_data:
        raise UsageError("--synthetic runs the embedded demo; it cannot be combined with --dataset_path/--mimic_root")
    synthetic = not has_data
    if synthetic or data_args.preset == "tiny":
        defaults = demo_defaults(recipe)
        if not synthetic:
            defaults["output_dir"] = DEFAULT_TINY_OUTPUT
        parser.set_defaults(**defaults)
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if not synthetic:
        for flag, value in (("--dataset_path", data_args.dataset_path), ("--mimic_root", data_args.mimic_root)):
            if value is not None and not Path(value).exists():
                raise FileNotFoundError(f"{flag} {value} does not exist; build it with `python -m dbeta_hf.data build "
                                        f"...` (or omit the data arguments to run the synthetic demo)")
    return model_args, data_args, training_args, synthetic


def uses_tiny_preset(data_args: DataArguments, synthetic: bool) -> bool:
    """The demo's pieces (corpus tokenizer, tiny model, bag-of-words N3S): the demo, or `--preset tiny`."""
    return synthetic or data_args.preset == "tiny"


if __name__ == "__main__":
    # --help, unknown flags and bad values are answered here (argparse alone), before the run's imports below
    reject_unknown_flags(build_parser(), sys.argv[1:])

# the run's imports: after the argument parsing above, so that `--help` answers without loading the model code
import numpy as np  # noqa: E402
from transformers import set_seed  # noqa: E402

from dbeta_hf import DBetaConfig, DBetaForPreTraining  # noqa: E402
from dbeta_hf.hub.model_card import results_from_pretraining_report  # noqa: E402
from dbeta_hf.pretraining.collator import DBetaPreTrainingCollator  # noqa: E402
from dbeta_hf.pretraining.n3s import N3SIndex, N3SIndexCorruptError, build_n3s_index, build_n3s_index_from_embeddings  # noqa: E402
from dbeta_hf.pretraining.trainer import (  # noqa: E402
    LOGGED_METRICS,
    DBetaPreTrainer,
    compare_run_fingerprints,
    is_complete_checkpoint,
    last_complete_checkpoint,
    read_checkpoint_fingerprint,
)
from dbeta_hf.utils.output_ownership import OutputLock  # noqa: E402
from dbeta_hf.processing_dbeta import DBetaProcessor  # noqa: E402
from dbeta_hf.utils.atomic import atomic_write_json  # noqa: E402


def bag_of_words_embeddings(reports: list[str], dim: int = 256) -> np.ndarray:
    """Hashed bag-of-words vectors: a text-model-free embedding for the synthetic demo's N3S index."""
    out = np.zeros((len(reports), dim), dtype=np.float32)
    for i, report in enumerate(reports):
        for word in report.replace(".", " ").replace(",", " ").split():
            out[i, _stable_hash(word) % dim] += 1.0
    return out


def _stable_hash(word: str) -> int:
    """FNV-1a, stable across processes (Python's hash() is salted)."""
    value = 2166136261
    for ch in word.encode():
        value = ((value ^ ch) * 16777619) & 0xFFFFFFFF
    return value


# synthetic corpora already built in this process, by size: `examples/ablate.py` calls `main` once per run
_SYNTHETIC_CORPORA: dict[tuple[int, int], tuple] = {}


def load_data(data_args: DataArguments, synthetic: bool, cache_dir: str | os.PathLike | None = None):
    """The train and validation splits. The synthetic corpus is built once per process and size; with `cache_dir`
    (a multi-process run: the main process builds first) it is saved there and the other processes load it."""
    if synthetic:
        from dbeta_hf.data.synthetic import make_synthetic_corpus

        key = (data_args.synthetic_records, data_args.synthetic_eval_records)
        cached = Path(cache_dir) / f"{key[0]}-{key[1]}" if cache_dir is not None else None
        if key not in _SYNTHETIC_CORPORA and cached is not None and (cached / "dataset_dict.json").is_file():
            import datasets

            corpus = datasets.load_from_disk(str(cached))
            _SYNTHETIC_CORPORA[key] = (corpus["train"], corpus["validation"])
        if key not in _SYNTHETIC_CORPORA:
            start = time.time()
            train = make_synthetic_corpus(data_args.synthetic_records, seed=0)
            validation = make_synthetic_corpus(data_args.synthetic_eval_records, seed=1)
            logger.info("synthetic corpus: %d train / %d held-out pairs in %.1f s", len(train), len(validation),
                        time.time() - start)
            _SYNTHETIC_CORPORA[key] = (train, validation)
            if cached is not None:
                import datasets

                datasets.DatasetDict({"train": train, "validation": validation}).save_to_disk(str(cached))
                logger.info("saved the synthetic corpus to %s for the other processes (reused by later runs of this "
                            "--output_dir; delete it freely)", cached)
        return _SYNTHETIC_CORPORA[key]
    import datasets

    if data_args.dataset_path:
        dataset = datasets.load_from_disk(data_args.dataset_path)
    else:
        from dbeta_hf.data import load_mimic_iv_ecg

        dataset = load_mimic_iv_ecg(data_args.mimic_root)
    if not isinstance(dataset, datasets.DatasetDict) or "train" not in dataset:
        raise ValueError(f"{data_args.dataset_path or data_args.mimic_root}: expected a DatasetDict with a 'train' split")
    for split in dataset.values():
        missing = {"ecg", "report"} - set(split.column_names)
        if missing:
            raise ValueError(f"the dataset lacks the columns {sorted(missing)} (expected 'ecg' and 'report')")
    train = dataset["train"]
    validation = dataset.get("validation")
    if data_args.max_train_samples:
        train = train.select(range(min(len(train), data_args.max_train_samples)))
    if validation is not None and data_args.max_eval_samples:
        validation = validation.select(range(min(len(validation), data_args.max_eval_samples)))
    return train, validation


def build_processor(model_args: ModelArguments, train, synthetic: bool, recipe: PretrainingRecipe = DEMO_RECIPE
                    ) -> DBetaProcessor:
    if synthetic:
        from dbeta_hf.pretraining.tokenizer import train_t5_tokenizer
        from dbeta_hf.evaluation.prompts import describe_classes
        from dbeta_hf.data.synthetic import SYNTHETIC_CLASSES

        texts = list(train["report"]) + describe_classes(SYNTHETIC_CLASSES, task="synthetic")
        tokenizer = train_t5_tokenizer(texts, vocab_size=recipe.tokenizer_vocab_size, whole_words=True)
        return DBetaProcessor.from_tokenizer(tokenizer)
    source = model_args.tokenizer_name or model_args.model_name_or_path or model_args.text_encoder
    return DBetaProcessor.from_tokenizer(source)


def config_overrides(text: str | None) -> dict:
    """'mem_mask_ratio=0.6,ets_learnable_bias=true' -> {'mem_mask_ratio': 0.6, 'ets_learnable_bias': True}.

    `PretrainedConfig.update_from_string` does the parsing: every key must be a `DBetaConfig` field, and each value
    is converted to the type of the field's default (an unknown key or a bad value is an error).
    """
    if not text:
        return {}
    probe = DBetaConfig()
    try:
        probe.update_from_string(text)
    except ValueError as error:
        raise ValueError(f"--config_overrides {text!r}: {error} (format: 'field=value,field=value')") from None
    keys = [item.split("=", 1)[0].strip() for item in text.split(",") if item.strip()]
    return {key: getattr(probe, key) for key in keys}


def build_model(model_args: ModelArguments, processor: DBetaProcessor, synthetic: bool,
                recipe: PretrainingRecipe = DEMO_RECIPE) -> DBetaForPreTraining:
    overrides = config_overrides(model_args.config_overrides)
    if model_args.model_name_or_path:
        if overrides:
            raise ValueError("--config_overrides only applies to a fresh model, not with --model_name_or_path")
        return DBetaForPreTraining.from_pretrained(model_args.model_name_or_path)
    if synthetic:
        config = recipe.model_config(len(processor.tokenizer), hidden=model_args.demo_hidden_size, **overrides)
        return DBetaForPreTraining(config)
    return DBetaForPreTraining.from_text_pretrained(model_args.text_encoder, **overrides)


def build_or_load_n3s(data_args: DataArguments, splits, output_dir: str, synthetic: bool) -> N3SIndex | None:
    """Load the N3S index, or build it over the reports of every split (validation batches need negatives too).

    `None` with ``--n3s_strategy in_batch``: the collator then draws random in-batch negatives."""
    if data_args.n3s_strategy == "in_batch":
        logger.info("--n3s_strategy in_batch: no N3S index, negatives are other reports of the same batch")
        return None
    path = Path(data_args.n3s_index) if data_args.n3s_index else Path(output_dir) / DEFAULT_N3S_DIR
    wanted = n3s_settings(data_args, synthetic)
    if (path / "n3s_config.json").is_file():
        try:
            index = N3SIndex.from_pretrained(path)
        except N3SIndexCorruptError as error:
            if data_args.n3s_index:  # the user's index: not overwritten
                raise
            logger.warning("%s; rebuilding it", error)
        else:
            differences = n3s_settings_differences(index, wanted)
            if not differences:
                logger.info("loaded N3S index from %s (%d unique reports, k=%d)", path, len(index), index.k)
                return index
            if data_args.n3s_index:
                raise ValueError(f"the N3S index {path} was built with other settings than the flags ask for: "
                                 f"{'; '.join(differences)}. Pass the flags it was built with, or another "
                                 "--n3s_index folder (or none) to build one with these")
            logger.warning("the N3S index %s was built with other settings (%s); rebuilding it with the flags'",
                           path, "; ".join(differences))
    reports = [r for split in splits if split is not None for r in split["report"]]
    if synthetic:
        from dbeta_hf.text_normalization import normalize_report

        unique = list(dict.fromkeys(normalize_report(r) for r in reports))
        index = build_n3s_index_from_embeddings(unique, bag_of_words_embeddings(unique), k=min(data_args.n3s_k, len(unique) - 1),
                                                strategy=data_args.n3s_strategy, progress=False)
    else:
        logger.info("building the N3S index of %d reports with %s (done once, saved to %s)", len(reports), data_args.n3s_encoder, path)
        index = build_n3s_index(reports, encoder_name_or_path=data_args.n3s_encoder, k=data_args.n3s_k, strategy=data_args.n3s_strategy)
    index.settings.update({f"requested_{key}": value for key, value in wanted.items()})
    index.save_pretrained(path)  # atomic: a temporary folder renamed into place
    return index


def n3s_settings(data_args: DataArguments, synthetic: bool) -> dict:
    """The flags an N3S index is built with, recorded in it (``requested_*``) and compared with when it is reused."""
    return {"strategy": data_args.n3s_strategy, "k": data_args.n3s_k,
            "encoder": "bag-of-words (demo)" if synthetic else data_args.n3s_encoder}


def n3s_settings_differences(index: N3SIndex, wanted: dict) -> list[str]:
    """``--n3s_k: 4 (index) != 64 (flags)`` for every setting the index was built with that the flags change (an
    index without recorded flags is compared on its strategy, encoder and k)."""
    stored = {key: index.settings.get(f"requested_{key}", index.settings.get(key)) for key in wanted}
    if "requested_k" not in index.settings:
        stored["k"] = index.k
    return [f"--n3s_{key}: {stored[key]!r} (index) != {value!r} (flags)" for key, value in wanted.items()
            if stored[key] is not None and stored[key] != value]


def _is_hub_id(name: str) -> bool:
    return not Path(name).exists()


def _hub_reachable(timeout: float = 3.0) -> bool:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    import socket
    from urllib.parse import urlparse

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _in_local_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def check_downloads(model_args: ModelArguments, data_args: DataArguments, training_args, synthetic: bool) -> None:
    """Each Hub id the run would download must be in the local cache or the Hub reachable: otherwise fail now, in
    seconds, naming the flag to change (not after a minute of retries deep inside `from_pretrained`)."""
    if uses_tiny_preset(data_args, synthetic) and not model_args.model_name_or_path:
        needed = []
    elif model_args.model_name_or_path:
        needed = [("--model_name_or_path", model_args.model_name_or_path)]
    else:
        needed = [("--text_encoder", model_args.text_encoder)]
    if model_args.tokenizer_name:
        needed.append(("--tokenizer_name", model_args.tokenizer_name))
    index = Path(data_args.n3s_index) if data_args.n3s_index else Path(training_args.output_dir) / DEFAULT_N3S_DIR
    if (not uses_tiny_preset(data_args, synthetic) and data_args.n3s_strategy != "in_batch"
            and not (index / "n3s_config.json").is_file()):
        needed.append(("--n3s_encoder", data_args.n3s_encoder))
    missing = [(flag, name) for flag, name in needed if _is_hub_id(name) and not _in_local_cache(name)]
    if missing and not _hub_reachable():
        flag, name = missing[0]
        raise UsageError(f"{flag} {name} is not in the local cache and the Hub is offline (HF_HUB_OFFLINE or no "
                         f"connection): pass a local folder, or use --preset tiny")


def check_launch(training_args) -> None:
    """Refuse a launch that would not do what it says: FSDP/DeepSpeed (`accelerate launch --config_file
    examples/accelerate/{fsdp,deepspeed_zero2}.yaml`) without CUDA devices, and processes of a multi-process
    launcher that did not form one process group (each would train alone and save into the same --output_dir)."""
    import torch

    for variable, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(variable, "").lower() in ("1", "true", "yes") and (
                training_args.use_cpu or not torch.cuda.is_available()):
            raise UsageError(f"{name} needs CUDA devices (this launch runs on CPU); use "
                             "examples/accelerate/multi_gpu.yaml with --use_cpu true for CPU processes")
    launched = max(int(os.environ.get("WORLD_SIZE", "1") or 1), int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    if launched > 1 and training_args.world_size == 1:
        raise UsageError(f"the launcher started {launched} processes (WORLD_SIZE={launched}) but they did not form one "
                         "process group (each would train alone into the same --output_dir): on CPU pass "
                         "--use_cpu true, on GPUs check that each process sees a CUDA device")


def checkpoint_to_resume(model_args: ModelArguments, training_args: DBetaTrainingArguments) -> str | None:
    """The checkpoint to resume from: `--resume_from_checkpoint` (a folder, or `true` for the last checkpoint of
    `--output_dir`), else the last checkpoint already in `--output_dir` unless `--overwrite_output_dir`.

    "Last" means the highest *complete* checkpoint (`last_complete_checkpoint`): one whose save was cut short
    (no completeness marker) is skipped with a warning naming it."""
    requested = training_args.resume_from_checkpoint
    last = last_complete_checkpoint(training_args.output_dir)
    if requested is not None and str(requested).lower() in ("true", "1", "yes"):
        if last is None:
            raise FileNotFoundError(f"--resume_from_checkpoint true: no checkpoint-* folder with a completeness "
                                    f"marker in {training_args.output_dir}")
        return last
    if requested is not None and str(requested).lower() in ("false", "0", "no"):
        return None
    if requested:
        if not os.path.isdir(requested):
            raise FileNotFoundError(f"--resume_from_checkpoint {requested} is not a folder")
        if not os.path.isfile(os.path.join(requested, "trainer_state.json")):
            raise FileNotFoundError(f"--resume_from_checkpoint {requested} is not a complete Trainer checkpoint (no "
                                    "trainer_state.json: its save was cut short?); pass an earlier checkpoint-* folder")
        if not is_complete_checkpoint(requested):
            logger.warning("--resume_from_checkpoint %s has no completeness marker (its save may have been cut short, "
                           "or an older version wrote it); resuming as asked", requested)
        return str(requested)
    if last is not None and not model_args.overwrite_output_dir:
        logger.info("checkpoint detected, resuming training at %s; pass --overwrite_output_dir to train from scratch "
                    "or choose another --output_dir", last)
        return last
    return None


# config fields that say nothing about the weights' shapes or the computation (left out of the run fingerprint)
_CONFIG_FIELDS_NOT_FINGERPRINTED = ("transformers_version", "_name_or_path", "architectures", "dtype", "torch_dtype",
                                    "auto_map")


def run_fingerprint(model, train, validation, data_args: DataArguments, synthetic: bool) -> dict:
    """What a checkpoint of this run records and a resume is compared with: the data (path, the built dataset's
    fingerprint, split sizes), the N3S settings and the model config."""
    if synthetic:
        source = f"synthetic({data_args.synthetic_records},{data_args.synthetic_eval_records})"
    else:
        source = os.path.abspath(data_args.dataset_path) if data_args.dataset_path else os.path.abspath(data_args.mimic_root)
    data = {"source": source, "train_size": len(train), "validation_size": None if validation is None else len(validation)}
    if not synthetic and getattr(train, "cache_files", None):
        data["train_fingerprint"] = getattr(train, "_fingerprint", None)
    n3s = {"strategy": data_args.n3s_strategy}
    if data_args.n3s_strategy != "in_batch":
        n3s.update({"k": data_args.n3s_k, "encoder": "bag-of-words (demo)" if synthetic else data_args.n3s_encoder})
    config = {k: v for k, v in model.config.to_dict().items() if k not in _CONFIG_FIELDS_NOT_FINGERPRINTED}
    return {"data": data, "n3s": n3s, "model_config": config}


def check_resume_fingerprint(resume: str | None, fingerprint: dict) -> None:
    """Compare the checkpoint's recorded run fingerprint with this run's. A different model config is an error
    naming the fields (the weights would not load); different data or N3S settings are a warning naming them."""
    if resume is None:
        return
    differences = compare_run_fingerprints(read_checkpoint_fingerprint(resume), fingerprint)
    config = [d for d in differences if d.startswith("model_config.")]
    if config:
        raise ValueError(f"the model config of this run differs from that of the checkpoint {resume}: "
                         + "; ".join(config) + ". Resume with the checkpoint's settings, or pass "
                         "--overwrite_output_dir (or another --output_dir) to train this config from scratch")
    if differences:
        logger.warning("resuming from %s with other data or N3S settings than the checkpoint was trained with: %s",
                       resume, "; ".join(differences))


def build_collator(model, processor: DBetaProcessor, n3s: N3SIndex | None, data_args: DataArguments,
                   training_args: DBetaTrainingArguments) -> DBetaPreTrainingCollator:
    """The pretraining collator of the model, with the collator settings of the flags."""
    return DBetaPreTrainingCollator.from_config(
        model.config, processor, n3s, seed=training_args.seed, mlm_probability=data_args.mlm_probability,
        lead_mask_prob=data_args.lead_mask_prob, negative_fraction=data_args.negative_fraction,
        max_length=data_args.max_text_length, same_report_positives=data_args.same_report_positives,
        statement_dropout=data_args.statement_dropout,
    )


def build_trainer(model_args, data_args, training_args, synthetic: bool, resume: str | None,
                  recipe: PretrainingRecipe) -> tuple[DBetaPreTrainer, object]:
    """The data, processor, model, N3S index and collator of the run, in a `DBetaPreTrainer`; also the held-out split."""
    # several processes: the main one synthesises the demo corpus, the others load its copy
    corpus_cache = Path(training_args.output_dir) / SYNTHETIC_CACHE_DIR if training_args.world_size > 1 else None
    with training_args.main_process_first(desc="building the training data"):
        train, validation = load_data(data_args, synthetic, corpus_cache)
    tiny = uses_tiny_preset(data_args, synthetic)
    if resume is not None:
        # the checkpoint's tokenizer: a new one (the demo trains its own) would renumber the vocabulary
        processor = DBetaProcessor.from_pretrained(resume)
    else:
        processor = build_processor(model_args, train, tiny, recipe)
    model = build_model(model_args, processor, tiny, recipe)
    with training_args.main_process_first(desc="building the N3S index"):
        n3s = build_or_load_n3s(data_args, (train, validation), training_args.output_dir, tiny)
    collator = build_collator(model, processor, n3s, data_args, training_args)
    num_params = sum(p.numel() for p in model.parameters())
    logger.info("model: %.2fM parameters; N3S index: %s reports", num_params / 1e6, "no" if n3s is None else len(n3s))

    fingerprint = run_fingerprint(model, train, validation, data_args, synthetic)
    check_resume_fingerprint(resume, fingerprint)

    card = {"datasets": None if synthetic else ["physionet/mimic-iv-ecg"]}
    if not tiny and not model_args.model_name_or_path:
        card["base_model"] = model_args.text_encoder
    trainer = DBetaPreTrainer(
        model=model,
        args=training_args,
        # ECGs leave Arrow as float16 torch tensors (no numpy float16->float32 detour); other columns stay Python
        train_dataset=train.with_format("torch", columns=["ecg"], output_all_columns=True),
        eval_dataset=validation.with_format("torch", columns=["ecg"], output_all_columns=True) if validation is not None else None,
        data_collator=collator,
        processing_class=processor,  # the Trainer saves it with the model and with every checkpoint
        model_card_kwargs=card,
        run_fingerprint=fingerprint,
    )
    return trainer, (train, validation)


def loss_summary(trainer: DBetaPreTrainer) -> dict:
    """The first and last logged training averages, printed side by side on the main process."""
    history = [h for h in trainer.state.log_history if "mlm_loss" in h and "eval_loss" not in h]
    if not history:
        return {}
    first, last = history[0], history[-1]
    if trainer.is_world_process_zero():
        lines = [f"{'loss':>10} {'first log':>10} {'last log':>10}"]
        for name in ("loss",) + LOGGED_METRICS:
            if name in first and name in last:
                lines.append(f"{name:>10} {first[name]:10.4f} {last[name]:10.4f}")
        print("\n".join(lines))
    return {"first_log": first, "last_log": last}


def synthetic_report(trainer: DBetaPreTrainer, train, validation, seed: int, prompt_ensemble: str) -> dict:
    """Zero-shot, linear-probe and retrieval scores on the held-out synthetic pairs, printed and saved as
    `<output_dir>/pretraining_report.json`; the card records the zero-shot AUROC."""
    from dbeta_hf.evaluation.pretraining_report import format_pretraining_report, pretraining_report
    from dbeta_hf.data.synthetic import SYNTHETIC_CLASSES

    report = pretraining_report(trainer.model, trainer.processing_class, train, validation, list(SYNTHETIC_CLASSES),
                                task="synthetic", seed=seed, prompt_ensemble=prompt_ensemble)
    print(format_pretraining_report(report, num_heldout=len(validation)))
    os.makedirs(trainer.args.output_dir, exist_ok=True)
    atomic_write_json(os.path.join(trainer.args.output_dir, "pretraining_report.json"), report, default=float)
    trainer.model_card_kwargs["results"] = results_from_pretraining_report(report, "synthetic")
    return report


def setup_logging(training_args) -> None:
    """INFO on the main process, warnings only on the others (one copy of each message in a multi-process run); no
    pinned memory without an accelerator (PyTorch would warn at every DataLoader that it is unused)."""
    level = logging.INFO if training_args.should_log else logging.WARNING  # transformers' own: Trainer's log_level
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    logging.getLogger().setLevel(level)
    if training_args.dataloader_pin_memory and training_args.device.type == "cpu":
        training_args.dataloader_pin_memory = False


def main(argv: list[str] | None = None, recipe: PretrainingRecipe = DEMO_RECIPE) -> dict:
    """Pretrain, report and save; `recipe` gives the settings of the embedded demo. Returns a summary dict."""
    argv = list(sys.argv[1:] if argv is None else argv)
    model_args, data_args, training_args, synthetic = parse_arguments(argv, recipe)
    setup_logging(training_args)
    check_launch(training_args)
    if uses_tiny_preset(data_args, synthetic) and training_args.ddp_find_unused_parameters is None:
        # every parameter of the tiny model gets a gradient: spare DDP's extra graph walk (and its warning)
        training_args.ddp_find_unused_parameters = False
    check_downloads(model_args, data_args, training_args, synthetic)
    if synthetic:
        logger.info("no --dataset_path/--mimic_root: running the embedded synthetic demo (tiny model, CPU-friendly)")
    logger.info("world size %d, per-device batch %d (global batch %d), device %s", training_args.world_size,
                training_args.per_device_train_batch_size,
                training_args.per_device_train_batch_size * training_args.world_size * training_args.gradient_accumulation_steps,
                training_args.device)
    logger.info("loss policies: %s", ", ".join(f"{k}={v}" for k, v in training_policies(training_args).items()))
    with training_output_lock(training_args):
        trainer, summary, elapsed = train_and_report(model_args, data_args, training_args, synthetic, recipe)
        if not training_args.push_to_hub:
            trainer.save_model(training_args.output_dir)
    # after the measurements, so that the card written with the model carries them; outside the lock, so that
    # the lock file is not uploaded
    if training_args.push_to_hub:
        trainer.push_to_hub()  # saves model, processor and card to --output_dir, then uploads it in one commit
    logger.info("saved model and processor to %s (%.0f s of training)", training_args.output_dir, elapsed)
    return summary


def training_output_lock(training_args: DBetaTrainingArguments):
    """One training per `--output_dir`: the main process locks it (`dbeta_hf.utils.output_ownership.OutputLock`:
    PID + host; a second run is refused naming the first, a lock left by a killed run is taken over with a
    warning). Other processes of the same run do not lock."""
    if training_args.process_index != 0:
        return contextlib.nullcontext()
    return OutputLock(training_args.output_dir, purpose="examples/pretrain.py",
                      timeout=0.0)


def train_and_report(model_args, data_args, training_args, synthetic: bool, recipe: PretrainingRecipe):
    """Resume or start, train, and measure (while `--output_dir` is locked). Returns (trainer, summary, seconds)."""
    resume = checkpoint_to_resume(model_args, training_args)
    set_seed(training_args.seed)
    trainer, (train, validation) = build_trainer(model_args, data_args, training_args, synthetic, resume, recipe)

    start = time.time()
    train_result = trainer.train(resume_from_checkpoint=resume)
    elapsed = time.time() - start
    metrics = dict(train_result.metrics)
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()

    summary = {"train_seconds": elapsed, "output_dir": training_args.output_dir, "train_metrics": metrics}
    summary.update(loss_summary(trainer))
    if synthetic and validation is not None and trainer.is_world_process_zero():
        summary.update(synthetic_report(trainer, train, validation, training_args.seed, recipe.prompt_ensemble))
    return trainer, summary, elapsed


if __name__ == "__main__":
    try:
        main()
    except UsageError as error:
        if os.environ.get("RANK", "0") == "0":  # once under a multi-process launcher
            print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        sys.exit(2)
