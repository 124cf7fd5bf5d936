"""The CinC 2021 score and the multi-label AUROC as `evaluate` modules: they load offline from the package's folders
and give exactly the numbers of the functions they wrap; fine-tuning and linear probing compute through them."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dbeta_hf.evaluation import metric_modules
from dbeta_hf.evaluation.cinc2021_classes import cinc2021_class_names
from dbeta_hf.evaluation.linear_probe import LinearProbeConfig, run_linear_probe
from dbeta_hf.evaluation.metric_modules import METRIC_MODULES, metric_module_path
from dbeta_hf.evaluation.metrics import cinc2021_metrics, multilabel_auroc

REPO = Path(__file__).resolve().parents[1]

OFFLINE_LOAD = r"""
import json, sys
import numpy as np
import evaluate
from dbeta_hf.evaluation.metrics import cinc2021_metrics, multilabel_auroc
from dbeta_hf.evaluation.cinc2021_classes import cinc2021_class_names

auroc_path, cinc_path = sys.argv[1:3]
rng = np.random.default_rng(0)
labels = (rng.random((300, 26)) < 0.15).astype(np.float32)
labels[:, 3] = 0.0  # a class without positives: skipped by both
scores = rng.normal(size=(300, 26)).astype(np.float32)
probabilities = 1.0 / (1.0 + np.exp(-scores.astype(np.float64)))
names = cinc2021_class_names()
auroc = evaluate.load(auroc_path)
cinc = evaluate.load(cinc_path)
print(json.dumps({
    "auroc_module": auroc.compute(predictions=scores, references=labels, class_names=names),
    "auroc_direct": multilabel_auroc(labels, scores, class_names=names),
    "cinc_module": cinc.compute(predictions=probabilities, references=labels, threshold=0.4),
    "cinc_direct": cinc2021_metrics(labels, probabilities, threshold=0.4),
    "modules": [type(auroc).__name__, type(cinc).__name__],
}))
"""


def test_modules_load_offline_with_evaluate_and_give_the_direct_numbers(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_EVALUATE_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HOME=str(tmp_path / "hf-home"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_LOAD, metric_module_path("multilabel_auroc"),
         metric_module_path("cinc2021_challenge_score")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["modules"] == ["MultilabelAUROC", "Cinc2021ChallengeScore"]
    assert out["auroc_module"] == out["auroc_direct"]  # exactly: one implementation
    assert out["auroc_module"]["num_classes_scored"] == 25 and cinc2021_class_names()[3] in out["auroc_module"]["skipped_classes"]
    assert out["cinc_module"] == out["cinc_direct"] and out["cinc_module"]["threshold"] == 0.4


def test_module_folders_are_what_evaluate_and_the_hub_need():
    for name in METRIC_MODULES:
        folder = Path(metric_module_path(name))
        assert folder.name == name and (folder / f"{name}.py").is_file()  # evaluate: a script named like its folder
        card = (folder / "README.md").read_text()
        assert card.startswith("---\n") and "sdk: gradio" in card and "- evaluate\n- metric" in card
        assert f"app_file: {name}_app.py" in card and f'"{name}.py"' in (folder / f"{name}_app.py").read_text()
        assert "from dbeta_hf.evaluation.metrics import" in (folder / f"{name}.py").read_text()  # a wrapper only
    with pytest.raises(ValueError, match="cinc2021_challenge_score"):
        metric_module_path("roc_auc")


def test_setup_ships_the_module_folders():
    tree = ast.parse((REPO / "setup.py").read_text())
    [package_data] = [kw.value for node in ast.walk(tree) if isinstance(node, ast.Call)
                      for kw in node.keywords if kw.arg == "package_data"]
    patterns = ast.literal_eval(package_data)["dbeta_hf"]
    shipped = {p for pattern in patterns for p in (REPO / "dbeta_hf").glob(pattern)}
    for name in METRIC_MODULES:
        folder = Path(metric_module_path(name))
        assert {p for p in folder.iterdir() if p.is_file() and p.suffix != ".pyc"} <= shipped


def test_compute_helpers_match_the_functions_on_tensors_and_one_column():
    import torch

    rng = np.random.default_rng(3)
    labels = rng.random(50) < 0.3
    scores = torch.from_numpy(rng.normal(size=50))  # float64 tensor, one class
    assert metric_modules.compute_multilabel_auroc(labels, scores) == multilabel_auroc(labels, scores)
    names = ["426783006", "164889003"]
    y = rng.random((30, 2)) < 0.5
    p = rng.random((30, 2))
    assert metric_modules.compute_cinc2021_metrics(y, p, names, 0.3) == cinc2021_metrics(y, p, names, 0.3)


def test_linear_probe_scores_the_test_split_through_the_module(monkeypatch):
    used = []
    load = metric_modules.load_metric

    def recording_load(name):
        used.append(name)
        return load(name)

    monkeypatch.setattr(metric_modules, "load_metric", recording_load)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 8)).astype(np.float32)
    y = (x[:, :2] > 0).astype(np.float32)
    result = run_linear_probe(x[:50], y[:50], x[50:70], y[50:70], x[70:], y[70:], ["a", "b"], fractions=[1.0],
                              seeds=[0], config=LinearProbeConfig(max_steps=20, eval_every=10), num_bootstrap=10,
                              progress=False)
    assert used == ["multilabel_auroc"]
    entry = result["fractions"]["100%"]
    scores = result["test_scores"]["100%"]
    assert entry["runs"][0]["macro_auroc"] == multilabel_auroc(y[70:], scores)["macro_auroc"]
    assert entry["macro_auroc_std"] is None  # one seed: no spread
