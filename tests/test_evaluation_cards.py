"""The evaluation commands write what they measure into the evaluated model's card (`--update_model_card`), and the
ROC plots name their run and keep a perfect curve off the frame."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from huggingface_hub import ModelCard

from helpers import load_example

from dbeta_hf.evaluation.plotting import ROC_AXIS_PAD, plot_roc_curves, roc_figure

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def test_zero_shot_and_retrieval_results_accumulate_in_the_card(saved_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(saved_model_dir, model_dir)
    zero_shot = load_example("zero_shot").main([
        "--model_name_or_path", str(model_dir), "--output_dir", str(tmp_path / "zs"), "--synthetic_records", "40",
        "--num_bootstrap", "10", "--no_progress", "--update_model_card"])
    retrieval = load_example("retrieval").main([
        "--model_name_or_path", str(model_dir), "--output_dir", str(tmp_path / "rt"), "--synthetic_records", "24",
        "--no_progress", "--update_model_card"])
    card = ModelCard.load(model_dir / "README.md")
    entries = {(r.task_type, r.dataset_type, r.dataset_split, r.metric_name): r.metric_value
               for r in card.data.eval_results}
    assert entries[("zero-shot-classification", "synthetic", "test", "macro AUROC")] == zero_shot["tasks"]["synthetic"]["macro_auroc"]
    for k in (1, 5, 10):
        assert entries[("text-retrieval", "synthetic", "heldout", f"Recall@{k}, ECG->report")] == retrieval["ecg_to_report"][f"R@{k}"]
        assert entries[("text-retrieval", "synthetic", "heldout", f"Recall@{k}, report->ECG")] == retrieval["report_to_ecg"][f"R@{k}"]
    assert len(entries) == 7
    assert {r.dataset_name for r in card.data.eval_results if r.task_type == "text-retrieval"} == {"synthetic (seed 20250)"}
    # the loading example names the folder as given, with what it holds (its processor has a tokenizer)
    assert f'AutoModel.from_pretrained("{model_dir}"' in card.text and "AutoProcessor.from_pretrained" in card.text


def test_roc_plot_pads_the_axes_and_titles_the_run(tmp_path):
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]] * 5)
    scores = labels + 0.1 * np.arange(20)[:, None] / 20  # both classes perfectly separated: AUROC 1.0
    fig = roc_figure(labels, scores, ["AFIB", "SR"], title="Fine-tuned, PhysioNet 2021, P-6-lead (I, II)")
    ax = fig.axes[0]
    assert ax.get_xlim() == (-ROC_AXIS_PAD, 1 + ROC_AXIS_PAD) and ax.get_ylim() == (-ROC_AXIS_PAD, 1 + ROC_AXIS_PAD)
    assert ROC_AXIS_PAD > 0  # a curve along x = 0 and y = 1 is drawn inside the frame, not on it
    title = ax.get_title()
    assert title.startswith("Fine-tuned, PhysioNet 2021, P-6-lead (I, II)\n") and "macro AUROC 1.000 over 2 classes" in title
    path = plot_roc_curves(labels, scores, ["AFIB", "SR"], tmp_path / "roc.png", title="x")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
