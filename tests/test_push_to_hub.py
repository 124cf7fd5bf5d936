"""`--push_to_hub` of examples/pretrain.py and examples/finetune.py and the converter's `--push-to-hub`, with the
Hub replaced by a recorder: which files would be uploaded, and that nothing else would."""

from __future__ import annotations

import concurrent.futures
import os
from pathlib import Path

import huggingface_hub
import pytest
from helpers import load_example
from huggingface_hub import ModelCard
from huggingface_hub.utils import filter_repo_objects
from transformers import AutoModelForSequenceClassification, AutoProcessor

from dbeta_hf.conversion.convert_original_checkpoint import main as convert_main

PARITY = Path(__file__).parent / "fixtures" / "parity_tiny"
CODE_FILES = {
    "configuration_dbeta.py", "modeling_dbeta.py", "losses.py", "fast_conv.py", "file_modes.py",
    "feature_extraction_dbeta.py", "ecg_signal.py", "processing_dbeta.py", "text_normalization.py",
    "input_convention.py",
}
MODEL_FILES = {"config.json", "model.safetensors", "README.md"} | CODE_FILES
PROCESSOR_FILES = {"processor_config.json", "tokenizer.json", "tokenizer_config.json"}


class RecordingHub:
    """Stands in for the Hub: records created repos and the files each upload would send."""

    def __init__(self):
        self.repos: list[str] = []
        self.uploads: list[tuple[str, set[str]]] = []

    def install(self, monkeypatch):
        hub = self

        def create_repo(api, repo_id, *args, **kwargs):
            hub.repos.append(repo_id)
            return huggingface_hub.RepoUrl(f"https://huggingface.co/{repo_id}")

        def upload_folder(api, *, repo_id, folder_path, allow_patterns=None, ignore_patterns=None, path_in_repo=None,
                          **kwargs):
            root = Path(folder_path)
            files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
            sent = set(filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns))
            hub.uploads.append((repo_id, sent))
            info = huggingface_hub.CommitInfo(
                commit_url=f"https://huggingface.co/{repo_id}/commit/0", commit_message="", commit_description="",
                oid="0" * 40)
            if kwargs.get("run_as_future"):  # the Trainer's pushes during training run in the background
                future = concurrent.futures.Future()
                future.set_result(info)
                return future
            return info

        def create_commit(api, repo_id, operations, *args, **kwargs):
            hub.uploads.append((repo_id, {op.path_in_repo for op in operations}))

        monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
        monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
        monkeypatch.setattr(huggingface_hub.HfApi, "create_commit", create_commit)
        monkeypatch.setenv("HF_TOKEN", "hf_test_token_not_used")
        return self

    def only_upload(self) -> tuple[str, set[str]]:
        assert len(self.uploads) == 1, [repo for repo, _ in self.uploads]
        return self.uploads[0]


@pytest.fixture
def hub(monkeypatch):
    return RecordingHub().install(monkeypatch)


def _assert_card(folder: Path, repo_id: str):
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "transformers" and card.data.pipeline_tag == "feature-extraction"
    assert repo_id in card.text
    return card


def test_converter_push_sends_weights_config_processor_card_and_code(hub, tmp_path, tiny_tokenizer_path):
    out = tmp_path / "converted"
    code = convert_main(["--checkpoint", str(PARITY / "checkpoint.pt"), "--original-config", str(PARITY / "config.json"),
                 "--text-config", str(PARITY / "text_config.json"), "--output-dir", str(out),
                 "--tokenizer", str(tiny_tokenizer_path), "--push-to-hub", "ORG/dbeta-converted",
                 "--lead-order", "standard", "--input-normalization", "none"])
    assert code == 0
    repo, sent = hub.only_upload()
    assert repo == "ORG/dbeta-converted" and hub.repos == ["ORG/dbeta-converted"]
    assert sent == MODEL_FILES | PROCESSOR_FILES | {"input_convention.json"}  # the converter's record of the choice
    card = _assert_card(out, "ORG/dbeta-converted")
    # the tiny fixture's text tower is not Flan-T5-base, so the card does not claim it as base model
    assert card.data.license == "cc-by-nc-4.0" and card.data.base_model is None
    assert 'from_pretrained("ORG/dbeta-converted", trust_remote_code=True)' in card.text


def test_pretrain_push_sends_the_model_not_the_optimizer_or_the_n3s_index(hub, tmp_path, one_cpu_thread):
    example = load_example("pretrain")
    out = tmp_path / "run"
    example.main(["--output_dir", str(out), "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "2",
                  "--synthetic_records", "32", "--synthetic_eval_records", "16", "--per_device_train_batch_size", "8",
                  "--eval_strategy", "no", "--push_to_hub", "--hub_model_id", "ORG/dbeta-demo",
                  "--hub_strategy", "end"])
    assert (out / "checkpoint-2" / "optimizer.pt").is_file() and (out / "_n3s_index").is_dir()  # present, not sent
    repo, sent = hub.only_upload()
    assert repo == "ORG/dbeta-demo"
    trainer_records = {"training_args.bin", "trainer_state.json", "train_results.json", "all_results.json",
                       "pretraining_report.json"}  # the demo's end-of-run report travels with the model it scored
    assert sent == MODEL_FILES | PROCESSOR_FILES | trainer_records
    card = _assert_card(out, "ORG/dbeta-demo")
    [result] = [r for r in card.data.eval_results if r.task_type == "zero-shot-classification"]
    assert result.dataset_type == "synthetic" and 0.0 <= result.metric_value <= 1.0


def test_pushes_during_training_do_not_send_the_output_lock(hub, tmp_path, one_cpu_thread):
    """hub_strategy=every_save pushes --output_dir while the run holds its lock file: the lock is not sent."""
    from dbeta_hf.utils.output_ownership import LOCK_NAME

    example = load_example("pretrain")
    out = tmp_path / "run"
    example.main(["--output_dir", str(out), "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1",
                  "--synthetic_records", "32", "--synthetic_eval_records", "16", "--per_device_train_batch_size", "8",
                  "--eval_strategy", "no", "--push_to_hub", "--hub_model_id", "ORG/dbeta-demo",
                  "--hub_strategy", "every_save"])
    assert len(hub.uploads) >= 2  # one per save, and the final push
    assert all(LOCK_NAME not in sent and not any(name.startswith(".dbeta") for name in sent) for _, sent in hub.uploads)


def test_finetune_push_sends_the_fine_tuned_model_with_processor_and_card(hub, tmp_path, saved_model_dir,
                                                                           one_cpu_thread):
    example = load_example("finetune")
    out = tmp_path / "ft"
    results = example.main([
        "--model_name_or_path", str(saved_model_dir), "--output_dir", str(out), "--synthetic_records", "40",
        "--max_steps", "4", "--per_device_train_batch_size", "6", "--num_bootstrap", "20", "--no_progress",
        "--push_to_hub", "--hub_model_id", "ORG/dbeta-ft"])
    repo, sent = hub.only_upload()
    assert repo == "ORG/dbeta-ft"
    assert sent == MODEL_FILES | PROCESSOR_FILES | {"training_args.bin"}
    folder = out / "model_synthetic"
    card = _assert_card(folder, "ORG/dbeta-ft")
    [result] = card.data.eval_results
    measured = results["methods"][example.PRETRAINED_METHOD]["synthetic"]["fractions"]["100%"]["runs"][0]["macro_auroc"]
    assert result.metric_value == pytest.approx(measured) and result.dataset_type == "synthetic"
    assert type(AutoModelForSequenceClassification.from_pretrained(folder)).__name__ == "DBetaForECGClassification"
    assert type(AutoProcessor.from_pretrained(folder)).__name__ == "DBetaProcessor"
    with pytest.raises(SystemExit):
        example.main(["--push_to_hub", "--tasks", "synthetic"])  # no --hub_model_id


def _saved_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "README.md").write_text("card")
    return folder


def test_push_without_network_says_the_hub_is_unreachable_and_where_the_model_is(tmp_path, monkeypatch):
    from dbeta_hf.hub.push import HubUnreachableError, push_model_folder

    folder = _saved_folder(tmp_path)

    class ConnectError(Exception):  # what huggingface_hub's HTTP client raises when no connection opens
        pass

    def refuse(api, repo_id, *args, **kwargs):
        raise ConnectError("[Errno 111] Connection refused")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", refuse)
    with pytest.raises(HubUnreachableError) as info:
        push_model_folder(folder, "ORG/dbeta", token="hf_test_token_not_used")
    message = str(info.value)
    assert "Hub is unreachable" in message and "Connection refused" in message and "HF_HUB_OFFLINE is not set" in message
    assert f"saved locally in {folder}" in message and f"push_model_folder('{folder}', 'ORG/dbeta')" in message
    assert isinstance(info.value.__cause__, ConnectError)


def test_push_in_offline_mode_names_hf_hub_offline(tmp_path, monkeypatch):
    """The real huggingface_hub call with HF_HUB_OFFLINE=1 (set for the whole test-suite): no network is touched."""
    from dbeta_hf.hub.push import HubUnreachableError, push_model_folder

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = _saved_folder(tmp_path)
    with pytest.raises(HubUnreachableError, match=r"HF_HUB_OFFLINE is set in this environment \(unset it to push\)"):
        push_model_folder(folder, "ORG/dbeta", token="hf_test_token_not_used")


def test_finetune_push_offline_ends_in_one_line_and_keeps_the_saved_model(tmp_path, monkeypatch, saved_model_dir,
                                                                          one_cpu_thread, capsys):
    example = load_example("finetune")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("sys.argv", ["finetune.py", "--model_name_or_path", str(saved_model_dir), "--output_dir",
                                     str(tmp_path / "ft"), "--synthetic_records", "40", "--max_steps", "2",
                                     "--num_bootstrap", "10", "--no_progress", "--push_to_hub", "--hub_model_id",
                                     "ORG/dbeta-ft"])
    from dbeta_hf.evaluation.cli import run_command

    with pytest.raises(SystemExit) as info:
        run_command(example.main)
    assert info.value.code == 2
    [error] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert error.startswith("error: could not push the model") and "HF_HUB_OFFLINE is set" in error
    assert (tmp_path / "ft" / "model_synthetic" / "model.safetensors").is_file()


def test_converter_push_offline_ends_in_one_line_and_keeps_the_converted_model(tmp_path, monkeypatch, capsys,
                                                                              tiny_tokenizer_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "converted"
    code = convert_main(["--checkpoint", str(PARITY / "checkpoint.pt"), "--original-config", str(PARITY / "config.json"),
                         "--text-config", str(PARITY / "text_config.json"), "--output-dir", str(out),
                         "--tokenizer", str(tiny_tokenizer_path), "--push-to-hub", "ORG/dbeta-converted",
                         "--lead-order", "standard", "--input-normalization", "none"])
    assert code == 2
    [error] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert error.startswith("error: could not push the model to the Hugging Face Hub repository 'ORG/dbeta-converted'")
    assert "HF_HUB_OFFLINE is set" in error and str(out) in error
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()


def test_metric_module_push_uploads_a_space(tmp_path, monkeypatch):
    from dbeta_hf.hub.push import push_metric_module

    calls = {}

    def create_repo(api, repo_id, *args, **kwargs):
        calls["create"] = (repo_id, kwargs.get("repo_type"), kwargs.get("space_sdk"))
        return huggingface_hub.RepoUrl(f"https://huggingface.co/spaces/{repo_id}")

    def upload_folder(api, *, repo_id, folder_path, repo_type=None, ignore_patterns=None, **kwargs):
        root = Path(folder_path)
        files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
        calls["upload"] = (repo_id, repo_type, set(filter_repo_objects(files, ignore_patterns=ignore_patterns)))

    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", create_repo)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload_folder)
    push_metric_module("cinc2021_challenge_score", "ORG/cinc2021_challenge_score", token="hf_test_token_not_used")
    assert calls["create"] == ("ORG/cinc2021_challenge_score", "space", "gradio")
    repo, repo_type, sent = calls["upload"]
    assert (repo, repo_type) == ("ORG/cinc2021_challenge_score", "space")
    assert sent == {"cinc2021_challenge_score.py", "README.md", "cinc2021_challenge_score_app.py", "requirements.txt"}
    with pytest.raises(ValueError, match="multilabel_auroc"):
        push_metric_module("auroc", "ORG/auroc")
