"""Pretraining with DBetaPreTrainer: losses fall, every loss is logged, resuming is exact."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from dbeta_hf import DBetaForPreTraining
from dbeta_hf.pretraining.n3s import build_n3s_index_from_embeddings
from dbeta_hf.pretraining.recipes import tiny_config
from dbeta_hf.pretraining.collator import DBetaPreTrainingCollator
from dbeta_hf.pretraining.arguments import (
    TRAINING_POLICIES,
    DBetaTrainingArguments,
    dbeta_training_arguments,
    training_policies,
)
from dbeta_hf.pretraining.trainer import LOGGED_METRICS, DBetaPreTrainer

REPORTS = [
    "sinus rhythm. normal ecg.", "sinus bradycardia. otherwise normal ecg.", "sinus tachycardia. abnormal ecg.",
    "atrial fibrillation with rapid ventricular response.", "sinus rhythm. first degree av block.",
    "sinus rhythm. right bundle branch block.", "atrial flutter. borderline ecg.", "sinus rhythm. left axis deviation.",
]


NUM_SAMPLES = 2500  # 5 s keeps the CPU steps short; the model is built for this length


def make_dataset(n=16, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(NUM_SAMPLES) / 500.0
    ecgs, reports = [], []
    for i in range(n):
        rate = 50 + 70 * (i % 4) / 3
        beat = np.sin(2 * np.pi * rate / 60 * t) ** 15
        ecg = (rng.normal(0, 0.05, (12, NUM_SAMPLES)) + beat * rng.uniform(0.5, 1.5, (12, 1))).astype(np.float16)
        ecgs.append(ecg)
        reports.append(REPORTS[i % len(REPORTS)])
    features = datasets.Features({"ecg": datasets.Array2D((12, NUM_SAMPLES), "float16"), "report": datasets.Value("string"),
                                  "record_id": datasets.Value("int64")})
    return datasets.Dataset.from_dict({"ecg": ecgs, "report": reports, "record_id": list(range(n))}, features=features)


@pytest.fixture(scope="module")
def n3s_index():
    rng = np.random.default_rng(0)
    return build_n3s_index_from_embeddings(REPORTS, rng.normal(size=(len(REPORTS), 16)).astype(np.float32), k=4, progress=False)


def make_trainer(tmp_path, tiny_tokenizer, n3s_index, **overrides):
    torch.manual_seed(0)
    config = tiny_config(vocab_size=len(tiny_tokenizer), num_samples=NUM_SAMPLES)
    model = DBetaForPreTraining(config)
    kwargs = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=8, max_steps=6,
                  learning_rate=2e-3, logging_steps=2, save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
                  dataloader_num_workers=0)
    kwargs.update(overrides)
    args = dbeta_training_arguments(**kwargs)
    collator = DBetaPreTrainingCollator.from_config(config, tiny_tokenizer, n3s_index)
    data = make_dataset().with_format("numpy")
    return DBetaPreTrainer(model=model, args=args, train_dataset=data, eval_dataset=data.select(range(8)),
                           data_collator=collator)


def test_every_loss_is_logged_as_an_average(tmp_path, tiny_tokenizer, n3s_index):
    trainer = make_trainer(tmp_path, tiny_tokenizer, n3s_index, eval_strategy="steps", eval_steps=3)
    seen = []
    original = trainer.compute_loss

    def spy(model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, outputs = original(model, inputs, return_outputs=True)
        if model.training:
            seen.append(outputs.mem_loss.item())
        return (loss, outputs) if return_outputs else loss

    trainer.compute_loss = spy
    trainer.train()
    train_logs = [h for h in trainer.state.log_history if "loss" in h and "train_runtime" not in h]
    assert len(train_logs) == 3
    for log in train_logs:
        for name in LOGGED_METRICS:
            assert name in log and np.isfinite(log[name]), name
    # the logged mem_loss is the mean over the two steps since the previous log, not the last batch
    assert train_logs[0]["mem_loss"] == pytest.approx(np.mean(seen[0:2]), rel=1e-4)
    assert train_logs[1]["mem_loss"] == pytest.approx(np.mean(seen[2:4]), rel=1e-4)
    eval_logs = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert len(eval_logs) == 2
    for name in LOGGED_METRICS:
        assert f"eval_{name}" in eval_logs[0]
    metrics = trainer.evaluate()
    total = sum(metrics[f"eval_{n}"] for n in ("mlm_loss", "mem_loss", "etm_loss", "ets_loss"))
    assert metrics["eval_loss"] == pytest.approx(total, rel=1e-4)


def test_training_lowers_the_loss(tmp_path, tiny_tokenizer, n3s_index):
    trainer = make_trainer(tmp_path, tiny_tokenizer, n3s_index, max_steps=30, logging_steps=10, learning_rate=3e-3)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert after < before - 0.5, (before, after)
    logs = [h for h in trainer.state.log_history if "mlm_loss" in h and "eval_loss" not in h]
    assert logs[-1]["mlm_loss"] < logs[0]["mlm_loss"]


def test_resume_from_checkpoint_is_exact(tmp_path, tiny_tokenizer, n3s_index):
    full = make_trainer(tmp_path / "full", tiny_tokenizer, n3s_index)
    full.train()
    first = make_trainer(tmp_path / "resumed", tiny_tokenizer, n3s_index, save_strategy="steps", save_steps=3)

    class Crash(TrainerCallback):  # the run dies right after step 3 (its checkpoint is written)
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step == 3

    first.add_callback(Crash())
    first.train()
    assert first.state.global_step == 3
    assert (tmp_path / "resumed" / "checkpoint-3").is_dir()
    second = make_trainer(tmp_path / "resumed", tiny_tokenizer, n3s_index, save_strategy="steps", save_steps=3)
    second.train(resume_from_checkpoint=str(tmp_path / "resumed" / "checkpoint-3"))
    assert second.state.global_step == 6
    for (name, a), (_, b) in zip(full.model.named_parameters(), second.model.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_training_arguments_carry_the_loss_policies_to_the_model(tmp_path, tiny_tokenizer, n3s_index):
    from transformers import TrainingArguments

    defaults = dbeta_training_arguments(output_dir=str(tmp_path))
    assert isinstance(defaults, DBetaTrainingArguments)
    assert defaults.remove_unused_columns is False and defaults.label_names == ["mlm_labels", "match_labels"]
    assert training_policies(defaults) == dict.fromkeys(TRAINING_POLICIES, False)  # the official behaviour
    assert training_policies(TrainingArguments(output_dir=str(tmp_path))) == dict.fromkeys(TRAINING_POLICIES, False)

    trainer = make_trainer(tmp_path, tiny_tokenizer, n3s_index, max_steps=2, ets_unmasked_inputs=True,
                           mlm_mem_on_matched_only=True)
    seen = []
    forward = trainer.model.forward

    def spy(*args, **kwargs):
        seen.append({name: kwargs[name] for name in TRAINING_POLICIES})
        return forward(*args, **kwargs)

    trainer.model.forward = spy
    trainer.train()
    trainer.evaluate()
    assert len(seen) == 3  # two training steps and one evaluation batch
    assert all(s == {"ets_unmasked_inputs": True, "mlm_mem_on_matched_only": True, "ets_global_batch": False}
               for s in seen)
    card = (tmp_path / "README.md")
    trainer.save_model(str(tmp_path))
    assert "ets_unmasked_inputs" in card.read_text()  # run settings, not in config.json: the card records them
