"""`--help` of every example script exits 0 after argument parsing alone: the heavy modules that only a run needs
(the metrics library `evaluate`, `datasets`, scikit-learn, matplotlib, transformers' model, processor and Trainer
code, the D-BETA model) are not imported by then. No timings are asserted (they depend on the machine; see
`benchmarks/bench_help.py`); the import list is what keeps --help fast."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))
HEAVY = ("evaluate", "datasets", "sklearn", "matplotlib", "transformers.modeling_utils", "transformers.processing_utils",
         "transformers.trainer", "dbeta_hf.modeling_dbeta", "dbeta_hf.processing_dbeta")

PROBE = """
import json, runpy, sys
path = sys.argv[1]
sys.argv = [path, "--help"]
try:
    runpy.run_path(path, run_name="__main__")
    code = 0
except SystemExit as exit_:
    code = exit_.code or 0
print("\\nPROBE " + json.dumps({"code": code, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


def test_every_example_is_covered():
    assert {p.name for p in EXAMPLES} >= {"pretrain.py", "finetune.py", "zero_shot.py", "linear_probe.py",
                                          "retrieval.py", "ablate.py"}


_PROBES: dict[Path, dict] = {}


def _probe(script: Path) -> dict:
    """Run `script --help` in a fresh interpreter once; its exit code, stdout and the heavy modules then loaded."""
    if script not in _PROBES:
        env = dict(os.environ, HF_HUB_OFFLINE="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        result = subprocess.run([sys.executable, "-c", PROBE, str(script)], env=env, capture_output=True, text=True,
                                timeout=300, cwd=REPO)
        lines = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
        assert result.returncode == 0 and lines, result.stderr[-3000:]
        _PROBES[script] = {**json.loads(lines[-1][len("PROBE "):]), "stdout": result.stdout, "stderr": result.stderr}
    return _PROBES[script]


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_help_exits_0_and_prints_usage(script):
    probe = _probe(script)
    assert probe["code"] == 0, probe["stderr"][-3000:]
    assert "usage:" in probe["stdout"]


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_help_imports_no_heavy_module(script):
    probe = _probe(script)
    assert probe["heavy"] == [], f"{script.name} --help imported {probe['heavy']}"
