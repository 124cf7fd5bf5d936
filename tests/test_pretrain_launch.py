"""examples/pretrain.py at start: unknown flags answered by argparse with a suggestion, every default in --help,
Hub ids that cannot be downloaded refused in seconds naming the flag, launches that would not do what their config
says refused; `--dataset_path DIR --preset tiny` trains the tiny architecture offline on a built dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import load_example

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def example():
    return load_example("pretrain")


@pytest.fixture(scope="module")
def built_dataset(tmp_path_factory):
    """A tiny dataset in the format `python -m dbeta_hf.data build` writes: a DatasetDict with ecg and report."""
    import datasets

    from dbeta_hf.data.synthetic import make_synthetic_corpus

    path = tmp_path_factory.mktemp("built") / "corpus"
    datasets.DatasetDict({"train": make_synthetic_corpus(24, seed=0),
                          "validation": make_synthetic_corpus(8, seed=1)}).save_to_disk(str(path))
    return path


def test_an_unknown_flag_gets_a_suggestion_and_exit_status_2(example, capsys):
    with pytest.raises(SystemExit) as exit_info:
        example.parse_arguments(["--max_stepz", "2", "--lerning_rate", "1e-3"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized argument --max_stepz; did you mean --max_steps?" in err
    assert "did you mean --learning_rate?" in err and "Traceback" not in err


def test_help_shows_every_default(example):
    text = " ".join(example.build_parser().format_help().split())  # argparse wraps lines
    assert "(default: google/flan-t5-base)" in text and "(default: google/flan-t5-small)" in text
    assert "(default: 0.25)" in text  # --mlm_probability
    assert "(default: 5e-05)" in text  # --learning_rate, a TrainingArguments field


def test_offline_hub_ids_fail_at_start_naming_the_flag(example, built_dataset, tiny_tokenizer_path, tmp_path,
                                                       monkeypatch):
    monkeypatch.setattr(example, "_in_local_cache", lambda repo_id: False)
    monkeypatch.setattr(example, "_hub_reachable", lambda timeout=3.0: False)
    out = ["--output_dir", str(tmp_path / "o"), "--max_steps", "1"]
    with pytest.raises(example.UsageError, match=r"^--text_encoder google/flan-t5-base is not in the local cache.*"
                                                 r"--preset tiny"):
        example.main(["--dataset_path", str(built_dataset), *out])
    with pytest.raises(example.UsageError, match=r"^--n3s_encoder google/flan-t5-small is not in the local cache"):
        example.main(["--dataset_path", str(built_dataset), "--text_encoder", str(tiny_tokenizer_path), *out])
    # no N3S encoder needed with in-batch negatives: then only the text encoder is checked, and it is local
    model_args, data_args, training_args, synthetic = example.parse_arguments(
        ["--dataset_path", str(built_dataset), "--text_encoder", str(tiny_tokenizer_path), "--n3s_strategy", "in_batch",
         *out])
    example.check_downloads(model_args, data_args, training_args, synthetic)


def test_hub_reachable_is_false_offline(example, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert example._hub_reachable() is False


def test_launch_checks(example, monkeypatch, tmp_path):
    _, _, training_args, _ = example.parse_arguments(["--output_dir", str(tmp_path), "--use_cpu", "true"])
    for variable, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        with monkeypatch.context() as patch:
            patch.setenv(variable, "true")
            with pytest.raises(example.UsageError, match=f"^{name} needs CUDA devices.*multi_gpu.yaml with --use_cpu"):
                example.check_launch(training_args)
    with monkeypatch.context() as patch:  # a launcher's processes that each see world size 1
        patch.setenv("WORLD_SIZE", "2")
        with pytest.raises(example.UsageError, match="did not form one process group"):
            example.check_launch(training_args)
    example.check_launch(training_args)  # a plain single process


def test_preset_tiny_trains_offline_on_a_built_dataset(example, built_dataset, tmp_path, monkeypatch):
    from dbeta_hf.pretraining.recipes import DEMO_RECIPE

    def no_download(*args, **kwargs):
        raise AssertionError("--preset tiny must not load a Hub model")

    monkeypatch.setattr(example.DBetaForPreTraining, "from_text_pretrained", no_download)
    monkeypatch.setattr(example, "build_n3s_index", no_download)
    _, _, defaults, synthetic = example.parse_arguments(["--dataset_path", str(built_dataset), "--preset", "tiny"])
    assert not synthetic and defaults.output_dir == example.DEFAULT_TINY_OUTPUT
    assert defaults.learning_rate == DEMO_RECIPE.training["learning_rate"]
    out = tmp_path / "tiny"
    summary = example.main(["--dataset_path", str(built_dataset), "--preset", "tiny", "--output_dir", str(out),
                            "--max_steps", "2", "--per_device_train_batch_size", "4", "--logging_steps", "1"])
    assert summary["last_log"]["step"] == 2
    config = json.loads((out / "config.json").read_text())
    assert config["hidden_dim"] == DEMO_RECIPE.model["hidden"] and config["vocab_size"] < 1000  # the corpus tokenizer
    assert (out / "_n3s_index" / "n3s_config.json").is_file() and (out / "tokenizer.json").is_file()
    assert (out / "README.md").is_file()


def test_main_prints_a_usage_error_as_one_line(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    result = subprocess.run([sys.executable, str(REPO / "examples" / "pretrain.py"), "--synthetic", "--dataset_path",
                             str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "pretrain.py: error: --synthetic runs the embedded demo; it cannot be combined with --dataset_path/--mimic_root")
    assert "Traceback" not in result.stderr
