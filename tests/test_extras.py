"""The base install replays CSV files; an optional part that is missing is named in one
line. The extras' packages are hidden from a fresh interpreter (an import of them fails
as it would where they are not installed), and the real command line runs in it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT

EXTRAS = ("kafka", "crc32c", "river", "scipy", "h5py", "matplotlib", "zstandard")


def run_without_extras(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    hide = "; ".join(f"sys.modules[{m!r}] = None" for m in EXTRAS)
    code = f"import sys; {hide}; from streamad.app.cli import main; main({list(args)!r})"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture()
def csv_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "in.csv"
    path.write_text("a,b\n" + "".join(f"{x:.4f},{y:.4f}\n" for x, y in rng.normal(size=(600, 2))))
    return path


def test_the_base_replays_csv(csv_file, tmp_path):
    r = run_without_extras("replay", str(csv_file), "--out-dir", str(tmp_path / "out"), "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "records read       600" in r.stdout and "reconciled         yes" in r.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["replay", "{odds}", "--no-progress"], "reading MATLAB .mat files needs the scipy package: pip install 'streamad-loe[mat]'"),
        (["replay", "{csv}", "--detector", "river-hst", "--no-progress"], "the river-hst detector needs the river package: pip install 'streamad-loe[river]'"),
        (["run"], "streamad run needs the kafka package: pip install 'streamad-loe[kafka]'"),
    ],
)
def test_a_missing_extra_is_named_in_one_line(args, message, csv_file, tmp_path, odds_dir):
    args = [a.format(odds=odds_dir / "wbc.mat", csv=csv_file) for a in args]
    r = run_without_extras(*args, "--out-dir", str(tmp_path / "out"), cwd=tmp_path) if args[0] == "replay" else run_without_extras(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1] == f"streamad: error: {message}"
    assert "Traceback" not in r.stderr


def test_the_demo_runs_without_matplotlib(tmp_path):
    r = run_without_extras("demo", "--records", "3000", "--out-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "no plot: it needs matplotlib" in r.stdout
    assert not (tmp_path / "out" / "demo.png").exists()


@pytest.mark.parametrize(
    "args",
    [["--help"], ["detectors"], ["replay", "/nonexistent.csv"], ["replay", "{csv}", "--window-size", "0"], ["replay", "{csv}", "--param", "alpah=0.2"]],
)
def test_help_listings_and_usage_errors_need_no_torch(args, csv_file, tmp_path):
    """What answers at once must not pay for importing torch (seconds)."""
    args = [a.format(csv=csv_file) for a in args]
    code = (
        "import sys\n"
        "from streamad.app.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.stdout.strip().splitlines()[-1] == "no torch", r.stderr
