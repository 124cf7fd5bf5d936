"""Cross-dataset zero-shot (the paper's Table 4): the shared-class mapping, labels, scores, table and command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import data_fixtures as fx
from helpers import load_example

from dbeta_hf.evaluation.cross_dataset import (
    CROSS_DATASET_TASKS,
    SHARED_CLASSES,
    cross_dataset_labels,
    cross_dataset_scores,
    evaluate_cross_dataset_zero_shot,
    format_cross_dataset_table,
    shared_classes,
)
from dbeta_hf.evaluation.metrics import multilabel_auroc
from dbeta_hf.evaluation.prompts import class_descriptions, task_class_names
from dbeta_hf.evaluation.zero_shot import DBetaZeroShotClassifier, zero_shot_scores

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def test_mapping_names_real_classes_and_reads_both_ways():
    for pair, entries in SHARED_CLASSES.items():
        assert set(pair) <= set(CROSS_DATASET_TASKS) and len(pair) == 2
        for task in pair:
            members = [c for entry in entries for c in entry[task]]
            assert set(members) <= set(task_class_names(task)), (task, members)
            assert len(members) == len(set(members))  # a class belongs to one shared class
    forward = shared_classes("ptbxl_super", "cpsc2018")
    assert [(s.name, s.target_classes) for s in forward] == [
        ("NORM", ("NORM",)), ("CD", ("1AVB", "CLBBB", "CRBBB")), ("STTC", ("STD", "STE"))
    ]
    backward = shared_classes("cpsc2018", "ptbxl_super")
    assert [s.source_classes for s in backward] == [s.target_classes for s in forward]
    assert [s.name for s in backward] == ["NORM", "1AVB/CLBBB/CRBBB", "STD/STE"]
    assert [s.name for s in shared_classes("csn", "cpsc2018")] == ["AFIB", "1AVB", "LBBB", "RBBB", "APB", "VPB", "STDD"]
    assert [s.target_classes for s in shared_classes("csn", "cpsc2018")][2:6] == [("CLBBB",), ("CRBBB",), ("PAC",), ("VPC",)]
    with pytest.raises(ValueError, match="defined between"):
        shared_classes("ptbxl_form", "csn")
    with pytest.raises(ValueError, match="both"):
        shared_classes("csn", "csn")


def test_labels_are_ors_and_scores_are_maxima_over_members():
    shared = shared_classes("ptbxl_super", "cpsc2018")
    names = task_class_names("cpsc2018")  # AFIB, VPC, NORM, 1AVB, CRBBB, STE, PAC, CLBBB, STD
    labels = np.zeros((4, len(names)), dtype=np.float32)
    labels[0, names.index("NORM")] = 1
    labels[1, names.index("CLBBB")] = 1
    labels[2, [names.index("STE"), names.index("1AVB")]] = 1
    labels[3, names.index("AFIB")] = 1  # not shared: negative everywhere
    np.testing.assert_array_equal(cross_dataset_labels(labels, names, shared), [[1, 0, 0], [0, 1, 0], [0, 1, 1], [0, 0, 0]])
    backward = shared_classes("cpsc2018", "ptbxl_super")
    source_names = ["NORM", "1AVB", "CLBBB", "CRBBB", "STD", "STE"]
    scores = np.array([[0.1, 0.5, 0.9, 0.2, -1.0, 3.0]])
    np.testing.assert_array_equal(cross_dataset_scores(scores, source_names, backward), [[0.1, 0.9, 3.0]])
    with pytest.raises(KeyError, match="missing"):
        cross_dataset_labels(labels[:, :3], names[:3], shared)


def test_evaluation_scores_the_shared_classes_with_the_source_descriptions(saved_model_dir):
    classifier = DBetaZeroShotClassifier.from_pretrained(saved_model_dir)
    rng = np.random.default_rng(0)
    names = task_class_names("csn")
    labels = (rng.random((30, len(names))) < 0.3).astype(np.float32)
    features = torch.from_numpy(rng.normal(size=(30, classifier.model.config.hidden_dim)).astype(np.float32))
    result = evaluate_cross_dataset_zero_shot(
        classifier, None, labels, names, "cpsc2018", "csn", ecg_features=features, num_bootstrap=10, progress=False
    )
    assert [c["name"] for c in result["shared_classes"]] == ["AFIB", "1AVB", "CLBBB", "CRBBB", "PAC", "VPC", "STD"]
    texts = class_descriptions(["AFIB", "1AVB", "CLBBB", "CRBBB", "PAC", "VPC", "STD"], task="cpsc2018")
    assert list(result["descriptions"].values()) == texts
    expected_scores = zero_shot_scores(features, classifier.encode_texts(texts)).numpy()
    expected_labels = cross_dataset_labels(labels, names, shared_classes("cpsc2018", "csn"))
    expected = multilabel_auroc(expected_labels, expected_scores, class_names=[c["name"] for c in result["shared_classes"]])
    assert result["macro_auroc"] == pytest.approx(expected["macro_auroc"])
    assert result["num_samples"] == 30 and result["prompt_set"]["name"].startswith("dbeta_hf built-in")


def test_table_has_the_layout_of_table_4():
    table = format_cross_dataset_table({"D-BETA (mine)": {("cpsc2018", "csn"): 0.8123}})
    lines = table.splitlines()
    assert lines[2] == ("| Method | Zero-shot | Training ratio | PTBXL-Super→CPSC2018 | PTBXL-Super→CSN | "
                        "CPSC2018→PTBXL-Super | CPSC2018→CSN | CSN→PTBXL-Super | CSN→CPSC2018 |")
    assert "| D-BETA (mine) | ✓ | 0% | – | – | – | 81.23 | – | – |" in lines
    assert "| D-BETA (paper) | ✓ | 0% | 72.09 | 79.11 | 77.12 | 82.91 | 76.24 | 80.10 |" in lines
    assert "| MERL (paper) | ✓ | 0% | 88.21 | 78.01 | 76.77 | 76.56 | 74.15 | 82.86 |" in lines


def test_zero_shot_example_source_and_target(saved_model_dir, tmp_path):
    example = load_example("zero_shot")
    root, _ = fx.write_physionet_challenge(tmp_path / "cpsc", fx.default_cpsc_records(), "cpsc2018")
    out_dir = tmp_path / "zs"
    results = example.main([
        "--model_name_or_path", str(saved_model_dir), "--output_dir", str(out_dir), "--cpsc2018_root", str(root),
        "--source-task", "ptbxl_super", "--target-task", "cpsc2018", "--split", "train", "--num_bootstrap", "10",
        "--no_progress",
    ])
    saved = json.loads((out_dir / "zero_shot_results.json").read_text())
    entry = saved["cross_dataset"]["ptbxl_super->cpsc2018"]
    assert [c["name"] for c in entry["shared_classes"]] == ["NORM", "CD", "STTC"]
    assert entry["num_samples"] > 0 and 0.0 <= entry["macro_auroc"] <= 1.0
    assert results["cross_dataset"]["ptbxl_super->cpsc2018"]["macro_auroc"] == pytest.approx(entry["macro_auroc"])
    markdown = (out_dir / "zero_shot_results.md").read_text()
    assert "PTBXL-Super→CPSC2018" in markdown and "Prompts: dbeta_hf built-in" in markdown
    with pytest.raises(SystemExit):
        example.main(["--source-task", "ptbxl_super", "--target-task", "ptbxl_form"])
    with pytest.raises(SystemExit):
        example.main(["--source-task", "ptbxl_super"])
