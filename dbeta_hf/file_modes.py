"""Give files written by safetensors the mode of any other new file.

`safetensors.torch.save_file` creates its file with mode 0600 (owner only), so a saved model folder or a feature
cache would mix 0600 weights with 0644 JSON files, and a shared cache would be unreadable to the group. Files
passed here get ``0666 & ~umask``, what `open(path, "w")` gives.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable


def default_file_mode() -> int:
    """``0666 & ~umask``: the mode `open(path, "w")` gives a new file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def apply_default_file_mode(paths: Iterable[str | os.PathLike]) -> None:
    """chmod every existing path in `paths` to `default_file_mode()`."""
    mode = default_file_mode()
    for path in paths:
        if Path(path).is_file():
            os.chmod(path, mode)


__all__ = ["apply_default_file_mode", "default_file_mode"]
