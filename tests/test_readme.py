"""Every ```python and ```bash block of README.md runs as written, in order, in a scratch folder.

Substitutions, all listed here: the `pip install ...` prefix of the quick start is dropped (this environment is
the installed one), and the example commands get `FAST_FLAGS` appended so that the CI run takes seconds (the
commands still parse every flag the README gives; unknown flags are errors). A block preceded by
`<!-- readme-test: skip (reason) -->` or `<!-- readme-test: covered (where) -->` is not run here; the reasons
are pinned in `NOT_RUN_HERE` so that a new one is a visible change.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MARKER = re.compile(r"<!-- readme-test: (skip|covered) \((.+)\) -->")
NOT_RUN_HERE = {
    "it is the test suite that runs these blocks",
    "needs the official D-BETA checkpoint",
    "needs the PhysioNet / Zenodo downloads",
    "needs MIMIC-IV-ECG and GPUs",
    "tests/test_accelerate_launch.py launches these accelerate flags with a recording worker",
    "tests/test_pretrain_launch.py trains --preset tiny on a small built dataset",
}
FAST_FLAGS = {
    "pretrain": "--synthetic_records 64 --synthetic_eval_records 32 --max_steps 4 --logging_steps 2 --eval_steps 4",
    "zero_shot": "--synthetic_records 40 --num_bootstrap 20 --no_progress",
    "linear_probe": "--synthetic_records 60 --num_bootstrap 20 --no_progress",
    "finetune": "--synthetic_records 40 --max_steps 4 --num_bootstrap 20 --no_progress",
    "retrieval": "--synthetic_records 24 --no_progress",
    "ablate": "--seeds 0 --variants full --max_steps 2 --synthetic_records 40 --synthetic_eval_records 16 "
              "--per_device_train_batch_size 8 --logging_steps 1",
}
PIP_PREFIX = 'pip install torch==2.13.0 && pip install -e ".[test]" && '


def readme_blocks() -> list[tuple[str, str, str | None]]:
    """(language, code, reason it is not run here or None) of every python / bash block, in order."""
    blocks, lines = [], README.read_text().splitlines()
    i = 0
    while i < len(lines):
        fence = re.fullmatch(r"```(python|bash)\s*", lines[i])
        if fence:
            end = lines.index("```", i + 1)
            previous = next((line for line in reversed(lines[:i]) if line.strip()), "")
            marker = MARKER.fullmatch(previous.strip())
            blocks.append((fence.group(1), "\n".join(lines[i + 1 : end]), marker.group(2) if marker else None))
            i = end
        i += 1
    return blocks


def _fast(code: str) -> str:
    code = code.replace(PIP_PREFIX, "")
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        command, hash_, comment = line.partition(" #")
        match = re.search(r"examples/(\w+)\.py", command)
        if match and match.group(1) in FAST_FLAGS:
            command = f"{command.rstrip()} {FAST_FLAGS[match.group(1)]}"
        out.append(command + (hash_ + comment if hash_ else ""))
    return "\n".join(out)


def test_the_blocks_not_run_here_are_the_known_ones():
    blocks = readme_blocks()
    assert {reason for _, _, reason in blocks if reason} == NOT_RUN_HERE
    assert sum(reason is None for _, _, reason in blocks) >= 5
    assert any(code.startswith(PIP_PREFIX + "python examples/pretrain.py") for _, code, _ in blocks)


def test_readme_accelerate_recipe_is_the_tested_one():
    [recipe] = [code for _, code, reason in readme_blocks() if reason and "test_accelerate_launch" in reason]
    launcher = recipe.split("examples/pretrain.py")[0].replace("\\\n", " ").split()
    assert launcher == ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                        "--mixed_precision", "no", "--dynamo_backend", "no"]
    assert "--use_cpu true" in recipe
    source = (Path(__file__).with_name("test_accelerate_launch.py")).read_text()
    assert '"--multi_gpu", "--num_processes", "2"' in source and '"--use_cpu", "true"' in source


RUN_PYTHON_BLOCKS = """
import runpy, sys
for path in sys.argv[1:]:
    print("running", path, flush=True)
    runpy.run_path(path, run_name="__main__")  # each block in a fresh namespace
"""


def test_every_readme_block_runs(tmp_path):
    """The bash blocks in README order (the first one trains the demo model the others use), then the python
    blocks in README order, each in a fresh namespace of one interpreter (saves an interpreter start per block)."""
    (tmp_path / "examples").symlink_to(REPO / "examples")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               OMP_NUM_THREADS="1", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    blocks = [(number, language, code) for number, (language, code, reason) in enumerate(readme_blocks()) if not reason]
    for number, language, code in blocks:
        if language == "bash":
            result = subprocess.run(["bash", "-e", "-c", _fast(code)], cwd=tmp_path, env=env, capture_output=True,
                                    text=True, timeout=600)
            assert result.returncode == 0, f"README bash block {number} failed:\n{code}\n{result.stderr[-3000:]}"
    scripts = []
    for number, language, code in blocks:
        if language == "python":
            scripts.append(tmp_path / f"readme_block_{number}.py")
            scripts[-1].write_text(code)
    result = subprocess.run([sys.executable, "-c", RUN_PYTHON_BLOCKS, *map(str, scripts)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{result.stdout[-1000:]}\n{result.stderr[-3000:]}"
    assert result.stdout.count("running ") == len(scripts) >= 3


def test_readme_parameter_count_is_the_demo_models():
    """The README's count of the demo's ECG tower, computed from the model the demo builds (the text side depends
    on the vocabulary the demo trains, so the README gives the whole model's size as the demo's log prints it)."""
    from helpers import load_example

    example = load_example("pretrain")
    model_args, _, _, synthetic = example.parse_arguments([])

    class DemoSizedProcessor:  # the demo trains a 400-token tokenizer (train_t5_tokenizer(vocab_size=400))
        tokenizer = [None] * 400

    model = example.build_model(model_args, DemoSizedProcessor(), synthetic)
    ecg_tower = sum(p.numel() for p in model.model.ecg_encoder.parameters())
    assert f"The ECG tower has {ecg_tower:,} parameters" in README.read_text()
