"""Push a saved D-BETA folder to the Hugging Face Hub in one commit.

The folder is what `save_pretrained` wrote (weights, config, the code files of `trust_remote_code`, the processor)
plus the model card (`dbeta_hf.hub.model_card`); Trainer leftovers are skipped: ``checkpoint-*`` folders (optimizer
and scheduler state) and ``_*`` entries (the pretraining script's N3S index), as `Trainer.push_to_hub` does.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import HfApi

IGNORE_PATTERNS = ("_*", "checkpoint-*", "checkpoint-*/**", "optimizer.pt", "scheduler.pt", "rng_state*.pth")


def push_model_folder(folder: str | os.PathLike, repo_id: str, *, commit_message: str = "Upload D-BETA",
                      private: bool | None = None, token: str | None = None):
    """Create `repo_id` (if needed) and upload `folder` to it; returns the commit info."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} holds no config.json: save the model there (save_pretrained) before pushing")
    if not (folder / "README.md").is_file():
        raise FileNotFoundError(f"{folder} holds no README.md model card: write it with dbeta_hf.hub.model_card.write_model_card")
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    return api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=commit_message,
                             ignore_patterns=list(IGNORE_PATTERNS))


__all__ = ["IGNORE_PATTERNS", "push_model_folder"]
