"""A virtual environment made in the repository (`python -m venv .venv`, the usual name) is not picked up by git."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
@pytest.mark.parametrize("path", [".venv/bin/python", ".venv/lib/python3.11/site-packages/x.py"])
def test_virtual_environment_is_ignored(path):
    result = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO)
    assert result.returncode == 0, f"{path} is not ignored by .gitignore"


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_sources_are_not_ignored():
    result = subprocess.run(["git", "check-ignore", "-q", "--no-index", "dbeta_hf/hub/model_card.py"], cwd=REPO)
    assert result.returncode == 1
