"""Push a saved D-BETA folder to the Hugging Face Hub in one commit, and the package's metric modules as Spaces.

The folder is what `save_pretrained` wrote (weights, config, the code files of `trust_remote_code`, the processor)
plus the model card (`dbeta_hf.hub.model_card`); Trainer leftovers are skipped: ``checkpoint-*`` folders (optimizer
and scheduler state) and ``_*`` entries (the pretraining script's N3S index), as `Trainer.push_to_hub` does.

When the Hub cannot be reached (no network, a proxy, ``HF_HUB_OFFLINE=1``) the push raises `HubUnreachableError`,
which says so, names the folder that is saved locally and how to push it later, instead of a bare connection error.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import HfApi

from ..evaluation.metric_modules import metric_module_path
from .errors import HubUnreachableError

IGNORE_PATTERNS = ("_*", "checkpoint-*", "checkpoint-*/**", "optimizer.pt", "scheduler.pt", "rng_state*.pth")
# what the HTTP client of huggingface_hub raises when it gets no answer (matched by name: the client library's
# module name differs between huggingface_hub versions)
_TRANSPORT_ERRORS = {"TransportError", "NetworkError", "ConnectError", "TimeoutException", "ProxyError"}


def _is_unreachable(error: BaseException) -> bool:
    return isinstance(error, (ConnectionError, TimeoutError)) or any(
        cls.__name__ in _TRANSPORT_ERRORS for cls in type(error).__mro__)


def _unreachable(error: BaseException, folder: Path, repo_id: str, what: str, later: str) -> HubUnreachableError:
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}
    reason = ("HF_HUB_OFFLINE is set in this environment (unset it to push)" if offline
              else "check the network connection, a proxy (HTTPS_PROXY) and HF_ENDPOINT; HF_HUB_OFFLINE is not set")
    return HubUnreachableError(
        f"could not push {what} to the Hugging Face Hub repository {repo_id!r}: the Hub is unreachable "
        f"({type(error).__name__}: {error}); {reason}. Nothing was lost: the folder is saved locally in {folder}. "
        f"Push it later with {later}."
    )


def push_model_folder(folder: str | os.PathLike, repo_id: str, *, commit_message: str = "Upload D-BETA",
                      private: bool | None = None, token: str | None = None):
    """Create `repo_id` (if needed) and upload `folder` to it; returns the commit info.

    Raises `HubUnreachableError` (a `ConnectionError`) when the Hub cannot be reached."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} holds no config.json: save the model there (save_pretrained) before pushing")
    if not (folder / "README.md").is_file():
        raise FileNotFoundError(f"{folder} holds no README.md model card: write it with dbeta_hf.hub.model_card.write_model_card")
    api = HfApi(token=token)
    try:
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        return api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message,
                                 ignore_patterns=list(IGNORE_PATTERNS))
    except Exception as error:
        if _is_unreachable(error):
            later = f"dbeta_hf.hub.push.push_model_folder({str(folder)!r}, {repo_id!r})"
            raise _unreachable(error, folder, repo_id, "the model", later) from error
        raise


def push_metric_module(name: str, repo_id: str, *, private: bool | None = None, token: str | None = None):
    """Upload the package's `evaluate` module `name` (`dbeta_hf.evaluation.metric_modules`) as a Gradio metric
    Space `repo_id`: its script, README.md (the Space's metadata and the metric card), the Space's app and
    requirements.txt.
    Then ``evaluate.load(repo_id)`` loads it from the Hub. Returns the commit info."""
    folder = Path(metric_module_path(name))
    api = HfApi(token=token)
    try:
        repo_id = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private,
                                  exist_ok=True).repo_id
        return api.upload_folder(repo_id=repo_id, repo_type="space", folder_path=str(folder),
                                 commit_message=f"Upload the {name} metric of dbeta_hf",
                                 ignore_patterns=["__pycache__", "__pycache__/**", "*.pyc"])
    except Exception as error:
        if _is_unreachable(error):
            later = f"dbeta_hf.hub.push.push_metric_module({name!r}, {repo_id!r})"
            raise _unreachable(error, folder, repo_id, f"the metric module {name}", later) from error
        raise


__all__ = ["HubUnreachableError", "IGNORE_PATTERNS", "push_metric_module", "push_model_folder"]
