"""Hostile options and files through the real command line: every one of them stops with
exactly one line ``streamad: error: ...`` on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from tests.conftest import ROOT, run_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    with open(d / "ok.csv", "w") as f:
        f.write("ts,a,b\n")
        for i in range(40):
            f.write(f"{1_700_000_000 + i},{rng.normal():.4f},{rng.normal():.4f}\n")
    scipy.io.savemat(d / "small.mat", {"X": rng.normal(size=(40, 3)), "y": np.zeros((40, 1))})
    scipy.io.savemat(d / "nocolumns.mat", {"X": np.zeros((10, 0))})
    (d / "adir").mkdir()
    (d / "binary.yaml").write_bytes(bytes(range(256)) * 8)
    (d / "list.yaml").write_text("- a\n- b\n")
    (d / "bad-seed.yaml").write_text("detector: {seed: -3}\n")
    (d / "mine.txt").write_text("my own notes, not streamad's\n")
    return d


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("streamad: error: "), r.stderr
    return lines[0]


HOSTILE = [
    # (arguments after `replay`, words the one line must hold)
    (["{d}/small.mat", "--permute", "-1"], "--permute takes a seed"),
    (["{d}/ok.csv", "--permute", "3"], "--permute applies to .mat files only"),
    (["{d}/ok.csv", "--delimiter", ";;"], "--delimiter must be one character"),
    (["{d}/ok.csv", "--delimiter", ""], "--delimiter is empty"),
    (["{d}/ok.csv", "--delimiter", '"'], "quote character"),
    (["{d}/ok.csv", "--delimiter", "\n"], "line break"),
    (["{d}/ok.csv", "--delimiter", "\r"], "line break"),
    (["{d}/ok.csv", "--delimiter", "\x07"], "--delimiter must be a visible character"),
    (["{d}/ok.csv", "--timestamp", "ts", "--speed", "0"], "--speed must be a positive number"),
    (["{d}/ok.csv", "--timestamp", "ts", "--speed", "-1"], "--speed must be a positive number"),
    (["{d}/ok.csv", "--timestamp", "ts", "--speed", "nan"], "--speed must be a positive number"),
    (["{d}/ok.csv", "--timestamp", "ts", "--speed", "inf"], "--speed must be a positive number"),
    (["{d}/ok.csv", "--speed", "fast"], "Invalid value for '--speed'"),
    (["{d}/ok.csv", "--seed", "-1"], "--seed must be a non-negative integer"),
    (["{d}/ok.csv", "--seed", "99999999999999999999999"], "--seed must be a non-negative integer"),
    (["{d}/ok.csv", "--limit", "0"], "--limit must be at least 1"),
    (["{d}/ok.csv", "--limit", "-5"], "--limit must be at least 1"),
    (["{d}/ok.csv", "--window-size", "100000000000000000000"], "window.size"),
    (["{d}/ok.csv", "--window-size", "-1"], "window.size"),
    (["{d}/ok.csv", "--max-wait", "nan"], "window.max_wait_seconds"),
    (["{d}/ok.csv", "--risk", "nan"], "threshold.risk"),
    (["{d}/ok.csv", "--warmup", "-1"], "threshold.warmup_records"),
    (["{d}/ok.csv", "--metrics-port", "-1"], "metrics.port"),
    (["{d}/ok.csv", "--metrics-port", "70000"], "metrics.port"),
    (["{d}/ok.csv", "--metrics-linger", "nan"], "metrics.linger_seconds"),
    (["{d}/ok.csv", "--param", "="], "--param takes NAME=VALUE"),
    (["{d}/ok.csv", "--param", "novalue"], "--param takes NAME=VALUE"),
    (["{d}/ok.csv", "--config", "{d}/adir"], "Is a directory"),
    (["{d}/ok.csv", "--config", "{d}/binary.yaml"], "is not UTF-8 text"),
    (["{d}/ok.csv", "--config", "{d}/small.mat"], "is not UTF-8 text"),
    (["{d}/ok.csv", "--config", "/dev/zero"], "is a device"),
    (["{d}/ok.csv", "--config", "{d}/list.yaml"], "must hold a mapping"),
    (["{d}/ok.csv", "--config", "{d}/bad-seed.yaml"], "detector.seed: Input should be greater than or equal to 0"),
    (["{d}/ok.csv", "--config", "{d}/missing.yaml"], "No such file"),
    (["{d}/ok.csv", "--out", "{d}/adir"], "is a directory"),
    (["{d}/ok.csv", "--out", ""], "give a file name"),
    (["{d}/ok.csv", "--out", "{d}/ok.csv/d.jsonl"], "is not a directory"),
    (["{d}/ok.csv", "--out", "{d}/ok.csv"], "is the input file"),
    (["{d}/ok.csv", "--rejects", "{d}/ok.csv"], "is the input file"),
    (["{d}/ok.csv", "--out", "{d}/x.jsonl", "--rejects", "{d}/x.jsonl"], "both name"),
    (["{d}/ok.csv", "--out", "{d}/mine.txt"], "does not hold streamad results; --force"),
    (["{d}/ok.csv", "--out-dir", "{d}/ok.csv"], "is not a directory"),
    (["{d}/ok.csv", "--out-dir", "{d}/ok.csv/sub"], "is not a directory"),
    (["{d}/ok.csv", "--summary-json", "{d}/adir"], "is a directory"),
    (["{d}/ok.csv", "--summary-json", "{d}/ok.csv/s.json"], "is not a directory"),
    (["{d}/ok.csv", "--rejects", "-"], "--rejects cannot go to stdout"),
    (["{d}/ok.csv", "--drift-events", "-"], "--drift-events cannot go to stdout"),
    (["{d}/ok.csv", "--out", "-", "--summary-json", "-"], "cannot both go to stdout"),
    (["{d}/ok.csv", "--out", "/dev/full", "--emit", "all"], "cannot write /dev/full: No space left on device"),
    (["{d}/ok.csv", "--summary-json", "/dev/full"], "No space left on device"),
    (["{d}/nocolumns.mat"], "'X' has no columns"),
    (["/dev/zero"], "/dev/zero"),
    (["/dev/null"], "is empty"),
    (["-"], "to read standard input, give /dev/stdin"),
    (["{d}/" + "n" * 300 + ".csv"], "File name too long"),
    (["{d}/ok.csv", "--out", "{d}/" + "n" * 300 + ".jsonl"], "File name too long"),
]


@pytest.mark.parametrize("args, words", HOSTILE, ids=[" ".join(a[1:])[:60] or a[0] for a, _ in HOSTILE])
def test_hostile_options_and_files_stop_with_one_line(files: Path, tmp_path: Path, args: list[str], words: str) -> None:
    out_dir = [] if "--out-dir" in args else ["--out-dir", str(tmp_path / "o")]
    r = run_cli("replay", *[a.replace("{d}", str(files)) for a in args], *out_dir, "--no-progress")
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert words in one_error_line(r)
    assert r.stdout == ""


def test_metrics_port_in_use_is_one_line(files: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli("replay", str(files / "ok.csv"), "--metrics-host", "127.0.0.1", "--metrics-port", str(port), "--out-dir", str(tmp_path))
    assert r.returncode == 2
    assert "cannot serve metrics on 127.0.0.1" in one_error_line(r)


def test_usage_errors_of_every_command_are_one_line() -> None:
    for args in (["replay"], ["nosuchcommand"], ["demo", "--records", "10"], ["demo", "--seed", "-1"], ["replay", "x.csv", "--no-such-option"]):
        r = run_cli(*args)
        assert r.returncode == 2, (args, r.stderr)
        one_error_line(r)


def test_a_tab_delimiter_can_be_typed_as_backslash_t(tmp_path: Path) -> None:
    p = tmp_path / "t.tsv"
    p.write_text("a\tb\n" + "".join(f"{i % 5}\t{i % 3}\n" for i in range(30)))
    r = run_cli("replay", str(p), "--delimiter", "\\t", "--out-dir", str(tmp_path / "o"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "2 features; delimiter '\\t'" in r.stdout


def test_one_feature_is_named_in_the_singular(tmp_path: Path) -> None:
    p = tmp_path / "one.csv"
    p.write_text("v\n" + "".join(f"{i % 7}\n" for i in range(30)))
    r = run_cli("replay", str(p), "--out-dir", str(tmp_path / "o"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "1 feature; delimiter ','" in r.stdout


def _crashing_cli(tmp_path: Path, debug: bool) -> subprocess.CompletedProcess[str]:
    """The real entry point with a fault injected where a bug could be: the naming of
    the outputs (it runs before the model loads, so this stays fast)."""
    code = (
        "import streamad.app.outputs as outputs\n"
        "def boom(*a, **k):\n"
        "    raise RuntimeError('a bug\\nover two lines')\n"
        "outputs.default_output_paths = boom\n"
        "from streamad.app.cli import main\n"
        f"main(['replay', {str(tmp_path / 'x.mat')!r}, '--out-dir', {str(tmp_path / 'o')!r}])\n"
    )
    (tmp_path / "x.mat").write_bytes(b"MATLAB")
    env = {k: v for k, v in os.environ.items() if k != "STREAMAD_DEBUG"}
    env["PYTHONPATH"] = str(ROOT)
    if debug:
        env["STREAMAD_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)


def test_a_bug_shows_one_line_unless_debugging(tmp_path: Path) -> None:
    r = _crashing_cli(tmp_path, debug=False)
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines == ["streamad: internal error: RuntimeError: a bug; over two lines; rerun with STREAMAD_DEBUG=1 for the details"]
    r = _crashing_cli(tmp_path, debug=True)
    assert r.returncode == 1 and "Traceback" in r.stderr and "RuntimeError: a bug" in r.stderr


def test_streamad_debug_is_not_taken_for_a_setting(files: Path, tmp_path: Path) -> None:
    r = run_cli("replay", str(files / "ok.csv"), "--out-dir", str(tmp_path), "--no-progress", "--summary-json", str(tmp_path / "s.json"), env={"STREAMAD_DEBUG": "1"})
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "s.json").read_text())["read"] == 40
