"""examples/pretrain.py: the embedded synthetic default runs end to end and saves a loadable model + processor."""

from __future__ import annotations

import pytest
from helpers import load_example

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


def test_embedded_default_end_to_end(tmp_path):
    from transformers import AutoProcessor

    from dbeta_hf import DBetaForPreTraining, DBetaModel, DBetaProcessor

    example = load_example("pretrain")
    out = tmp_path / "demo"
    summary = example.main([
        "--output_dir", str(out), "--synthetic_records", "48", "--synthetic_eval_records", "24",
        "--max_steps", "4", "--logging_steps", "2", "--eval_steps", "4", "--per_device_train_batch_size", "8",
    ])
    first, last = summary["first_log"], summary["last_log"]
    for name in ("mlm_loss", "mem_loss", "etm_loss", "ets_loss", "mlm_accuracy", "etm_accuracy"):
        assert name in first and name in last
    assert 0.0 <= summary["zero_shot"]["macro_auroc"] <= 1.0
    assert set(summary["zero_shot"]["per_class"]) <= {"SBRAD", "SR", "STACH", "AFIB", "1AVB", "BBB"}
    assert 0.0 <= summary["linear_probe"]["macro_auroc"] <= 1.0
    assert set(summary["retrieval"]["ecg_to_report"]) >= {"R@1", "R@5"} and summary["retrieval"]["num_pairs"] == 24
    assert isinstance(DBetaForPreTraining.from_pretrained(out), DBetaForPreTraining)
    assert isinstance(DBetaModel.from_pretrained(out), DBetaModel)
    processor = AutoProcessor.from_pretrained(out)
    assert isinstance(processor, DBetaProcessor)
    assert (out / "_n3s_index" / "n3s_config.json").is_file()
    # the card written with the model carries the zero-shot AUROC measured at the end of the run
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "feature-extraction" and card.data.library_name == "transformers"
    from dbeta_hf.hub.model_card import EVALUATION_KINDS

    values = {r.task_name: r.metric_value for r in card.data.eval_results if r.metric_type == "roc_auc"}
    assert values[EVALUATION_KINDS["zero-shot"][1]] == pytest.approx(summary["zero_shot"]["macro_auroc"])
    assert values[EVALUATION_KINDS["linear-probe"][1]] == pytest.approx(summary["linear_probe"]["macro_auroc"])
    assert (out / "train_results.json").is_file() and (out / "trainer_state.json").is_file()


def test_config_overrides_go_through_update_from_string():
    example = load_example("pretrain")
    assert example.config_overrides("mem_mask_ratio=0.6,ets_learnable_bias=true,ets_loss_weight=16") == {
        "mem_mask_ratio": 0.6, "ets_learnable_bias": True, "ets_loss_weight": 16.0}
    assert example.config_overrides(None) == {}
    with pytest.raises(ValueError, match="not_a_field"):
        example.config_overrides("not_a_field=1")
    with pytest.raises(ValueError, match="format"):
        example.config_overrides("oops")


DEMO = ["--synthetic_records", "32", "--synthetic_eval_records", "16", "--per_device_train_batch_size", "8",
        "--logging_steps", "1", "--eval_strategy", "no"]


def test_flags_are_never_silently_ignored(tmp_path):
    example = load_example("pretrain")
    # a data path that does not exist is an error in either spelling, never the synthetic demo
    for flag in ("--dataset-path", "--dataset_path", "--mimic_root"):
        with pytest.raises(FileNotFoundError, match="does not exist"):
            example.main([flag, str(tmp_path / "missing"), "--max_steps", "2"])
    with pytest.raises(ValueError, match="--synthetic"):
        example.main(["--synthetic", "--dataset_path", str(tmp_path)])
    with pytest.raises(SystemExit):  # argparse's answer (usage, "did you mean --max_steps?"): tests/test_pretrain_launch.py
        example.main(["--max_stepz", "2"])
    # the hyphenated spellings that --help shows override the demo's settings
    model_args, data_args, training_args, synthetic = example.parse_arguments(
        ["--output-dir", str(tmp_path / "o"), "--max-steps", "3", "--per-device-train-batch-size", "4", "--synthetic"])
    assert synthetic and training_args.output_dir == str(tmp_path / "o")
    assert training_args.max_steps == 3 and training_args.per_device_train_batch_size == 4
    assert training_args.learning_rate == 2e-3  # a demo default the user did not give
    _, _, defaults, synthetic = example.parse_arguments([])
    assert synthetic and defaults.output_dir == example.DEFAULT_SYNTHETIC_OUTPUT


def test_the_demo_recipe_gives_the_defaults_and_flags_override_it(tmp_path):
    import dataclasses

    from dbeta_hf.pretraining.recipes import DEMO_RECIPE

    example = load_example("pretrain")
    model_args, data_args, training_args, _ = example.parse_arguments([])
    for name, value in DEMO_RECIPE.training_arguments().items():
        got = getattr(training_args, name)
        assert getattr(got, "value", got) == value or (name == "report_to" and got == []), name
    for name, value in DEMO_RECIPE.collator.items():
        assert getattr(data_args, name) == value, name
    assert model_args.demo_hidden_size == DEMO_RECIPE.model["hidden"]
    assert data_args.synthetic_records == DEMO_RECIPE.train_records
    _, data_args, training_args, _ = example.parse_arguments(
        ["--ets_unmasked_inputs", "false", "--same_report_positives", "false", "--lead_mask_prob", "0.5"])
    assert not training_args.ets_unmasked_inputs and training_args.mlm_mem_on_matched_only
    assert not data_args.same_report_positives and data_args.lead_mask_prob == 0.5
    # real data: the official defaults, not the demo's
    _, data_args, training_args, synthetic = example.parse_arguments(["--dataset_path", str(tmp_path)])
    assert not synthetic and not any(example.training_policies(training_args).values())
    assert not data_args.same_report_positives and data_args.lead_mask_prob == 0.5 and training_args.max_steps == -1
    # another recipe, e.g. the one the learning test runs
    other = dataclasses.replace(DEMO_RECIPE, training={**DEMO_RECIPE.training, "max_steps": 7}, eval_records=9)
    _, data_args, training_args, _ = example.parse_arguments([], other)
    assert training_args.max_steps == 7 and data_args.synthetic_eval_records == 9
    typo = dataclasses.replace(DEMO_RECIPE, collator={"lead_mask_probability": 0.0})
    with pytest.raises(ValueError, match=r"\['lead_mask_probability'\], which are not flags"):
        example.parse_arguments([], typo)


def test_resume_reuses_the_checkpoint_tokenizer(tmp_path, monkeypatch):
    """A resumed demo run loads the processor saved in the checkpoint instead of training a new tokenizer."""
    import json

    example = load_example("pretrain")
    out = tmp_path / "run"
    example.main(["--output-dir", str(out), "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "2", *DEMO])
    checkpoint = out / "checkpoint-2"
    assert (checkpoint / "tokenizer.json").is_file() and (checkpoint / "README.md").is_file()

    def no_new_tokenizer(*args, **kwargs):
        raise AssertionError("a resumed run must not build a new processor")

    monkeypatch.setattr(example, "build_processor", no_new_tokenizer)
    # explicit --resume_from_checkpoint, then implicitly from the last checkpoint of --output_dir
    summary = example.main(["--output_dir", str(out), "--max_steps", "3", "--save_strategy", "no",
                            "--resume_from_checkpoint", str(checkpoint), *DEMO])
    assert summary["last_log"]["step"] == 3
    steps = [h["step"] for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
    assert steps == [1, 2, 3]  # steps 1 and 2 come from the checkpoint's state, step 3 was trained now
    vocabulary = [json.loads((folder / "tokenizer.json").read_text())["model"] for folder in (out, checkpoint)]
    assert vocabulary[0] == vocabulary[1]
    summary = example.main(["--output_dir", str(out), "--max_steps", "4", "--save_strategy", "no", *DEMO])
    assert summary["last_log"]["step"] == 4
    def resume_point(*flags):
        model_args, _, training_args, _ = example.parse_arguments(["--output_dir", str(out), *flags])
        return example.checkpoint_to_resume(model_args, training_args)

    assert resume_point() == resume_point("--resume_from_checkpoint", "true") == str(checkpoint)
    assert resume_point("--resume_from_checkpoint", "false") is None
    assert resume_point("--overwrite_output_dir") is None
    with pytest.raises(FileNotFoundError, match="no checkpoint-"):
        example.checkpoint_to_resume(*example.parse_arguments(
            ["--output_dir", str(tmp_path / "empty"), "--resume_from_checkpoint", "true"])[::2])
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        example.main(["--output_dir", str(out), "--resume_from_checkpoint", str(tmp_path / "nope"), *DEMO])


def test_real_data_path_with_a_local_t5(tmp_path, tiny_tokenizer):
    """The non-synthetic path: a saved DatasetDict, a fresh model from a pretrained T5 (here a tiny local one
    standing in for google/flan-t5-base), an N3S index built with a T5 encoder and saved on first use."""
    import datasets
    from transformers import T5Config, T5EncoderModel

    from dbeta_hf import DBetaForPreTraining
    from dbeta_hf.pretraining.n3s import N3SIndex
    from dbeta_hf.data.synthetic import make_synthetic_corpus

    t5_dir = tmp_path / "tiny-t5"
    T5EncoderModel(T5Config(vocab_size=len(tiny_tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                            feed_forward_proj="gated-gelu")).save_pretrained(t5_dir)
    tiny_tokenizer.save_pretrained(t5_dir)
    data_dir = tmp_path / "arrow"
    datasets.DatasetDict({"train": make_synthetic_corpus(24, seed=0),
                          "validation": make_synthetic_corpus(8, seed=1)}).save_to_disk(str(data_dir))
    out = tmp_path / "run"
    example = load_example("pretrain")
    args = ["--dataset_path", str(data_dir), "--text_encoder", str(t5_dir), "--n3s_encoder", str(t5_dir),
            "--n3s_k", "4", "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size", "4",
            "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--use_cpu", "true",
            "--config_overrides", "hidden_dim=32,num_heads=4,num_fusion_layers=1,mem_layer=0,mem_decoder_hidden_dim=16,"
                                  "mem_decoder_num_layers=1,mem_decoder_num_heads=2"]
    summary = example.main(args)
    assert "zero_shot" not in summary and "mlm_loss" in summary["last_log"]
    model = DBetaForPreTraining.from_pretrained(out)
    assert model.config.text_config.d_model == 32 and model.config.vocab_size == len(tiny_tokenizer)
    index = N3SIndex.from_pretrained(out / "_n3s_index")
    assert index.k == 4 and len(index) > 4
