"""examples/finetune.py on a PhysioNet 2021 5 s segment build (`--segment_seconds 5`): the model is fed the stored
2500-sample segments (never zero-padded to 10 s), and the test scores are given per segment (fairseq-signals' /
Table 1 protocol, which also selects the checkpoint) and per record (`aggregate_segment_scores`)."""

from __future__ import annotations

import argparse
import functools

import datasets
import numpy as np
import pytest

from data_fixtures import default_physionet2021_records, write_physionet2021
from helpers import load_example

from dbeta_hf import DBetaForECGClassification
from dbeta_hf.data import load_physionet2021
from dbeta_hf.evaluation.cli import load_task_splits_from_args, loader_kwargs_from_args
from dbeta_hf.evaluation.metric_modules import compute_cinc2021_metrics
from dbeta_hf.evaluation.segments import aggregate_segment_scores

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture(scope="module")
def physionet2021_root(tmp_path_factory):
    root, _ = write_physionet2021(tmp_path_factory.mktemp("c21seg"), default_physionet2021_records(copies=3))
    return root


@pytest.fixture
def isolated_datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")


def test_finetune_on_5_second_segments_reports_segment_and_record_scores(
    saved_model_dir, physionet2021_root, tmp_path, monkeypatch, isolated_datasets_cache
):
    seen = []
    original = DBetaForECGClassification.forward

    @functools.wraps(original)  # Trainer keeps the dataset columns named in forward's signature
    def recording_forward(self, ecg_values, *args, **kwargs):
        seen.append(tuple(ecg_values.shape))
        return original(self, ecg_values, *args, **kwargs)

    monkeypatch.setattr(DBetaForECGClassification, "forward", recording_forward)
    logits_of_test = {}
    example = load_example("finetune")
    record_level = example.record_level_scores

    def recording_record_level(task, logits, threshold):
        logits_of_test["logits"], logits_of_test["task"] = logits, task
        return record_level(task, logits, threshold)

    monkeypatch.setattr(example, "record_level_scores", recording_record_level)
    results = example.main([
        "--model_name_or_path", str(saved_model_dir), "--output_dir", str(tmp_path / "ft"), "--task", "physionet2021",
        "--physionet2021_root", str(physionet2021_root), "--segment_seconds", "5", "--max_steps", "2",
        "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--num_bootstrap", "10", "--no_progress",
        "--no_save_model",
    ])
    # every batch is 5 s segments (the saved checkpoint's extractor makes 5000 samples: not used as it is)
    assert seen and all(shape[1:] == (12, 2500) for shape in seen)
    run = results["methods"]["D-BETA (fine-tuned)"]["physionet2021"]["fractions"]["100%"]["runs"][0]
    test = load_physionet2021(physionet2021_root, segment_seconds=5)["test"]
    assert run["num_test_segments"] == len(test) == 5
    assert run["num_test_records"] == len(set(test["record_id"])) == 2
    assert run["segment_seconds"] == 5.0 and "segments" in run["checkpoint_selection"]
    # the record-level score is the challenge score of the per-record mean probabilities
    task = logits_of_test["task"]
    probabilities = 1.0 / (1.0 + np.exp(-logits_of_test["logits"].astype(np.float64)))
    records = aggregate_segment_scores(test["record_id"], probabilities, labels=task.test_labels)
    expected = compute_cinc2021_metrics(records.labels, records.scores, classes=task.class_names)
    assert run["record_challenge_score"] == pytest.approx(expected["challenge_score"])
    assert run["record_macro_f1"] == pytest.approx(expected["macro_f1"])
    # beside the segment-level score (every segment counted as a record)
    segments = compute_cinc2021_metrics(task.test_labels, probabilities, classes=task.class_names)
    assert run["challenge_score"] == pytest.approx(segments["challenge_score"])


def _args(**kwargs) -> argparse.Namespace:
    defaults = dict(tasks=["physionet2021"], dataset_path=[], split_files=[], num_proc=None, max_samples=None,
                    segment_seconds=None, synthetic_records=10, synthetic_seed=0)
    return argparse.Namespace(**{**defaults, **kwargs})


def test_segment_flag_reaches_the_loader_and_is_checked_against_a_built_dataset(
    physionet2021_root, tmp_path, isolated_datasets_cache
):
    assert loader_kwargs_from_args(_args(segment_seconds=5.0), "physionet2021") == {"segment_seconds": 5.0}
    assert "segment_seconds" not in loader_kwargs_from_args(_args(), "physionet2021")
    with pytest.raises(ValueError, match="physionet2021 task only"):
        loader_kwargs_from_args(_args(tasks=["cpsc2018"], segment_seconds=5.0), "cpsc2018")
    # a dataset built from whole records is refused under --segment_seconds
    whole = tmp_path / "whole"
    load_physionet2021(physionet2021_root).save_to_disk(whole)
    with pytest.raises(ValueError, match="built with whole records; rebuild it with .*--segment-seconds 5"):
        load_task_splits_from_args(_args(dataset_path=[str(whole)], segment_seconds=5.0), "physionet2021")
    segmented = tmp_path / "segmented"
    load_physionet2021(physionet2021_root, segment_seconds=5).save_to_disk(segmented)
    splits, _ = load_task_splits_from_args(_args(dataset_path=[str(segmented)], segment_seconds=5.0), "physionet2021")
    assert splits["train"].features["ecg"].shape == (12, 2500)
