"""The README's Python example runs as written, from the repository root."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_first_python_block_runs_as_written():
    if not (ROOT.parent / "shared" / "datasets" / "odds" / "cardio.mat").is_file():
        pytest.skip("the README reads ../shared/datasets, which is not beside this checkout")
    code = python_blocks()[0]
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    m = re.search(r"^(\d+) alarms, (\d+) of them labelled outliers$", r.stdout, re.M)
    assert m, r.stdout
    alarms, true = int(m.group(1)), int(m.group(2))
    assert alarms > 10 and true / alarms > 0.8  # the example shows a detector that finds outliers
