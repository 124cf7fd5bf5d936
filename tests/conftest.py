"""Shared pytest fixtures. Every test runs offline (no hub access) on the CPU."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
TINY_TOKENIZER_DIR = FIXTURES / "tiny_t5_tokenizer"
PARITY_DIR = FIXTURES / "parity_tiny"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_tokenizer_path() -> Path:
    """A T5-compatible tokenizer (pad=0, eos=1, unk=2, <extra_id_0..99>) with 500 tokens."""
    return TINY_TOKENIZER_DIR


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_tokenizer_path)


@pytest.fixture(scope="module")
def one_cpu_thread():
    """Tiny models: intra-op parallelism only adds synchronisation overhead (large on a busy CI machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def saved_model_dir(tmp_path_factory, tiny_tokenizer_path):
    """A tiny random D-BETA and its processor saved with save_pretrained (for the example commands)."""
    import torch

    from dbeta_hf import DBetaModel, DBetaProcessor
    from dbeta_hf.pretraining.recipes import tiny_config

    path = tmp_path_factory.mktemp("dbeta-tiny")
    torch.manual_seed(0)
    DBetaModel(tiny_config()).save_pretrained(path)
    DBetaProcessor.from_tokenizer(str(tiny_tokenizer_path)).save_pretrained(path)
    return path
