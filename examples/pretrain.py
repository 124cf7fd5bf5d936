#!/usr/bin/env python
"""Pretrain D-BETA (MLM + MEM + ETM + ETS with N3S negatives) with the transformers Trainer.

Embedded default (no downloads, CPU, a few minutes):

    python examples/pretrain.py

builds a synthetic ECG-report corpus, trains a tiny tokenizer and a tiny D-BETA, prints the four losses as they
fall, saves model + processor to outputs/dbeta-tiny-synthetic and reports zero-shot rhythm AUROC on held-out
synthetic ECGs.

Real pretraining from Flan-T5-base on MIMIC-IV-ECG (one GPU, or many with accelerate):

    python -m dbeta_hf.data build mimic-iv-ecg /data/mimic-iv-ecg/1.0 --output /data/mimic-arrow
    accelerate launch --config_file examples/accelerate/multi_gpu.yaml examples/pretrain.py \
        --dataset_path /data/mimic-arrow --text_encoder google/flan-t5-base --n3s_index /data/n3s-index \
        --output_dir dbeta-mimic --bf16 --per_device_train_batch_size 128 --learning_rate 5e-5 \
        --num_train_epochs 10 --dataloader_num_workers 8 --save_steps 2000 [--push_to_hub --hub_model_id ORG/NAME]

Continue or resume: `--model_name_or_path DIR` starts from a saved D-BETA; `--resume_from_checkpoint DIR`
restores model, optimizer, scheduler and data order from a Trainer checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import HfArgumentParser, TrainingArguments

import dbeta_hf  # noqa: F401  (registers the D-BETA Auto classes)
from dbeta_hf import DBetaForPreTraining
from dbeta_hf.n3s import N3SIndex, build_n3s_index, build_n3s_index_from_embeddings
from dbeta_hf.pretraining_collator import DBetaPreTrainingCollator
from dbeta_hf.processing_dbeta import DBetaProcessor
from dbeta_hf.training import DBetaPreTrainer, LOGGED_METRICS

logger = logging.getLogger("dbeta_hf.pretrain")

DEFAULT_SYNTHETIC_OUTPUT = "outputs/dbeta-tiny-synthetic"


@dataclass
class ModelArguments:
    text_encoder: str = field(
        default="google/flan-t5-base",
        metadata={"help": "T5 checkpoint for a fresh model's text tower and tokenizer (ignored with --model_name_or_path)."},
    )
    model_name_or_path: str | None = field(default=None, metadata={"help": "Continue from a saved D-BETA (folder or Hub id)."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer to use (default: the text encoder's)."})
    demo_hidden_size: int = field(default=32, metadata={"help": "Embedded default: width of the tiny model."})
    config_overrides: str | None = field(
        default=None,
        metadata={"help": "Override DBetaConfig fields of a fresh model, e.g. 'mem_prob=0.6,ets_learnable_bias=true,"
                          "ets_logit_bias_init=-5'."},
    )


@dataclass
class DataArguments:
    dataset_path: str | None = field(
        default=None, metadata={"help": "A DatasetDict saved by `python -m dbeta_hf.data build mimic-iv-ecg` (train/validation)."}
    )
    mimic_root: str | None = field(default=None, metadata={"help": "MIMIC-IV-ECG root; built (and cached) on the fly."})
    n3s_index: str | None = field(
        default=None, metadata={"help": "N3S index folder; built from the training reports and saved there when absent."}
    )
    n3s_encoder: str = field(default="google/flan-t5-small", metadata={"help": "Text encoder that embeds reports for N3S."})
    n3s_k: int = field(default=64, metadata={"help": "Candidate negatives per report."})
    n3s_strategy: str = field(default="dissimilar", metadata={"help": "'dissimilar' (official) or 'hard'."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set (debugging)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the validation set."})
    synthetic_records: int = field(default=1536, metadata={"help": "Embedded default: synthetic training pairs."})
    synthetic_eval_records: int = field(default=256, metadata={"help": "Embedded default: held-out synthetic ECGs."})


def synthetic_defaults(argv: list[str]) -> list[str]:
    """Training settings of the embedded CPU demo, unless the user gave them."""
    defaults = {
        "--output_dir": DEFAULT_SYNTHETIC_OUTPUT,
        "--max_steps": "600",
        "--per_device_train_batch_size": "16",
        "--per_device_eval_batch_size": "32",
        "--learning_rate": "2e-3",
        "--weight_decay": "0.01",
        "--warmup_steps": "20",
        "--lr_scheduler_type": "cosine",
        "--logging_steps": "50",
        "--eval_strategy": "steps",
        "--eval_steps": "200",
        "--save_strategy": "no",
        "--seed": "0",
        "--dataloader_num_workers": "0",
        "--report_to": "none",
        "--disable_tqdm": "true",
    }
    given = {a.split("=")[0] for a in argv if a.startswith("--")}
    extra = []
    for key, value in defaults.items():
        if key not in given:
            extra += [key, value]
    return argv + extra


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


def load_data(data_args: DataArguments, synthetic: bool):
    if synthetic:
        from dbeta_hf.synthetic import make_synthetic_corpus

        start = time.time()
        train = make_synthetic_corpus(data_args.synthetic_records, seed=0)
        validation = make_synthetic_corpus(data_args.synthetic_eval_records, seed=1)
        logger.info("synthetic corpus: %d train / %d held-out pairs in %.1f s", len(train), len(validation), time.time() - start)
        return train, validation
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


def build_processor(model_args: ModelArguments, train, synthetic: bool) -> DBetaProcessor:
    if synthetic:
        from dbeta_hf.tokenizer_utils import train_t5_tokenizer
        from dbeta_hf.zero_shot_prompts import class_descriptions
        from dbeta_hf.synthetic import SYNTHETIC_CLASSES

        texts = list(train["report"]) + class_descriptions(SYNTHETIC_CLASSES, task="synthetic")
        return DBetaProcessor.from_tokenizer(train_t5_tokenizer(texts, vocab_size=400))
    source = model_args.tokenizer_name or model_args.model_name_or_path or model_args.text_encoder
    return DBetaProcessor.from_tokenizer(source)


def parse_config_overrides(text: str | None) -> dict:
    """'a=1,b=true,c=-5e-1,d=none' -> {'a': 1, 'b': True, 'c': -0.5, 'd': None}."""
    overrides = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        if "=" not in item:
            raise ValueError(f"--config_overrides expects key=value pairs separated by commas, got {item!r}")
        key, value = (x.strip() for x in item.split("=", 1))
        lowered = value.lower()
        if lowered in ("true", "false"):
            overrides[key] = lowered == "true"
        elif lowered in ("none", "null"):
            overrides[key] = None
        else:
            try:
                overrides[key] = int(value)
            except ValueError:
                try:
                    overrides[key] = float(value)
                except ValueError:
                    overrides[key] = value
    return overrides


def build_model(model_args: ModelArguments, processor: DBetaProcessor, synthetic: bool) -> DBetaForPreTraining:
    overrides = parse_config_overrides(model_args.config_overrides)
    if model_args.model_name_or_path:
        if overrides:
            raise ValueError("--config_overrides only applies to a fresh model, not with --model_name_or_path")
        return DBetaForPreTraining.from_pretrained(model_args.model_name_or_path)
    if synthetic:
        from dbeta_hf.presets import tiny_config

        # Demo settings: a wider initialisation lets a 0.2M-parameter model start learning within a few hundred CPU
        # steps, and the synthetic reports repeat a lot, so identical reports count as ETS positives.
        demo = {"initializer_range": 0.1, "ets_same_report_positives": True}
        demo.update(overrides)
        config = tiny_config(vocab_size=len(processor.tokenizer), hidden=model_args.demo_hidden_size, **demo)
        return DBetaForPreTraining(config)
    return DBetaForPreTraining.from_text_pretrained(model_args.text_encoder, **overrides)


def build_or_load_n3s(data_args: DataArguments, splits, output_dir: str, synthetic: bool) -> N3SIndex:
    """Load the N3S index, or build it over the reports of every split (validation batches need negatives too)."""
    path = Path(data_args.n3s_index) if data_args.n3s_index else Path(output_dir) / "n3s_index"
    if (path / "n3s_config.json").is_file():
        index = N3SIndex.from_pretrained(path)
        logger.info("loaded N3S index from %s (%d unique reports, k=%d)", path, len(index), index.k)
        return index
    reports = [r for split in splits if split is not None for r in split["report"]]
    if synthetic:
        from dbeta_hf.text_normalization import normalize_report

        unique = list(dict.fromkeys(normalize_report(r) for r in reports))
        index = build_n3s_index_from_embeddings(unique, bag_of_words_embeddings(unique), k=min(data_args.n3s_k, len(unique) - 1),
                                                strategy=data_args.n3s_strategy, progress=False)
    else:
        logger.info("building the N3S index of %d reports with %s (done once, saved to %s)", len(reports), data_args.n3s_encoder, path)
        index = build_n3s_index(reports, encoder_name_or_path=data_args.n3s_encoder, k=data_args.n3s_k, strategy=data_args.n3s_strategy)
    index.save_pretrained(path)
    return index


def zero_shot_rhythm_report(model, processor, eval_dataset) -> dict:
    """Zero-shot AUROC of the synthetic classes on held-out synthetic ECGs (raw dot-product scores)."""
    from dbeta_hf.evaluation.metrics import multilabel_auroc
    from dbeta_hf.synthetic import SYNTHETIC_CLASSES
    from dbeta_hf.zero_shot_prompts import class_descriptions

    model.eval()
    base = model.model
    prompts = class_descriptions(SYNTHETIC_CLASSES, task="synthetic")
    with torch.no_grad():
        text = processor(text=prompts, return_tensors="pt")
        text_embeds = base.get_text_features(text["input_ids"], text["attention_mask"])
        data = eval_dataset.with_format("numpy")
        scores = []
        for start in range(0, len(data), 64):
            ecg = torch.from_numpy(np.asarray(data[start : start + 64]["ecg"], dtype=np.float32))
            scores.append(base.get_ecg_features(ecg) @ text_embeds.T)
        scores = torch.cat(scores).numpy()
    labels = np.asarray(data["labels"])
    return multilabel_auroc(labels, scores, class_names=list(SYNTHETIC_CLASSES))


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    synthetic = not any(a.split("=")[0] in ("--dataset_path", "--mimic_root") for a in argv)
    if synthetic:
        argv = synthetic_defaults(argv)
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments), description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    training_args.remove_unused_columns = False
    training_args.label_names = ["mlm_labels", "match_labels"]
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if synthetic:
        logger.info("no --dataset_path/--mimic_root: running the embedded synthetic demo (tiny model, CPU-friendly)")

    torch.manual_seed(training_args.seed)
    train, validation = load_data(data_args, synthetic)
    processor = build_processor(model_args, train, synthetic)
    model = build_model(model_args, processor, synthetic)
    n3s = build_or_load_n3s(data_args, (train, validation), training_args.output_dir, synthetic)
    collator = DBetaPreTrainingCollator.from_config(model.config, processor.tokenizer, n3s, seed=training_args.seed)
    num_params = sum(p.numel() for p in model.parameters())
    logger.info("model: %.2fM parameters; N3S index: %d reports", num_params / 1e6, len(n3s))

    trainer = DBetaPreTrainer(
        model=model,
        args=training_args,
        # ECGs leave Arrow as float16 torch tensors (no numpy float16->float32 detour); other columns stay Python
        train_dataset=train.with_format("torch", columns=["ecg"], output_all_columns=True),
        eval_dataset=validation.with_format("torch", columns=["ecg"], output_all_columns=True) if validation is not None else None,
        data_collator=collator,
        processing_class=processor,
    )
    start = time.time()
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    elapsed = time.time() - start
    trainer.save_model(training_args.output_dir)
    processor.save_pretrained(training_args.output_dir)
    logger.info("saved model and processor to %s (%.0f s of training)", training_args.output_dir, elapsed)

    history = [h for h in trainer.state.log_history if "mlm_loss" in h and "eval_loss" not in h]
    summary = {"train_seconds": elapsed, "output_dir": training_args.output_dir}
    if history:
        first, last = history[0], history[-1]
        lines = [f"{'loss':>10} {'first log':>10} {'last log':>10}"]
        for name in ("loss",) + LOGGED_METRICS:
            if name in first and name in last:
                lines.append(f"{name:>10} {first[name]:10.4f} {last[name]:10.4f}")
        print("\n".join(lines))
        summary["first_log"], summary["last_log"] = first, last
    if synthetic and validation is not None:
        result = zero_shot_rhythm_report(model, processor, validation)
        print(f"zero-shot macro AUROC on {len(validation)} held-out synthetic ECGs: {result['macro_auroc']:.3f}")
        for name, value in result["per_class"].items():
            print(f"  {name:>6}: {'n/a' if value is None else f'{value:.3f}'}")
        summary["zero_shot"] = result
    if training_args.push_to_hub:
        trainer.push_to_hub()
        processor.push_to_hub(training_args.hub_model_id or Path(training_args.output_dir).name)
    return summary


if __name__ == "__main__":
    main()
