"""Thread counts: the settings' ``threads`` reach numpy's BLAS as well as torch."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import numpy as np
from threadpoolctl import threadpool_info
from streamad.config import load_settings
from streamad.factory import apply_threads

blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
assert blas, "numpy has a BLAS"
apply_threads(load_settings(None, {"threads": 1}, env={}))
print(sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}))
"""


def test_the_pipelines_thread_count_limits_numpys_blas() -> None:
    # A fresh process that would spread BLAS over two threads: the settings bring it to one.
    env = {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[1]", out.stderr
