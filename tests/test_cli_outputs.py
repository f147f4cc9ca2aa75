"""Where a replay's results go, through the real command line: default names unique per
input path, no input's results overwritten by another's, stdout that carries detections
only, and outputs that are devices or FIFOs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np

from streamad.app.outputs import default_drift_path, default_output_paths
from tests.conftest import ROOT, run_cli


def write_csv(path: Path, n: int = 600, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write("ts,a,b\n")
        for i in range(n):
            f.write(f"{1_700_000_000 + i},{rng.normal():.4f},{rng.normal():.4f}\n")
    return path


def error_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("streamad: error: "), r.stderr
    return lines[0]


def test_same_file_name_in_two_folders_gets_two_sets_of_outputs(skab_dir: Path, tmp_path: Path) -> None:
    for valve in ("valve1", "valve2"):
        (tmp_path / valve).mkdir()
        shutil.copy(skab_dir / valve / "0.csv", tmp_path / valve / "0.csv")
    out = tmp_path / "out"
    for valve in ("valve1", "valve2"):
        r = run_cli("replay", f"{valve}/0.csv", "--out-dir", str(out), "--emit", "all", "--no-progress", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    written = sorted(p.name for p in out.iterdir())
    assert len(written) == 6 and all(n.startswith(("valve1-0-", "valve2-0-")) for n in written), written
    for valve in ("valve1", "valve2"):
        det, rej = default_output_paths(tmp_path / valve / "0.csv", out)
        assert det.exists() and rej.exists() and default_drift_path(tmp_path / valve / "0.csv", out).exists()
        streams = {json.loads(line)["source"]["stream"] for line in det.read_text().splitlines()}
        assert streams == {f"{valve}/0.csv"}  # nothing of the other valve's
    # Re-running an input replaces its own outputs, from any working directory.
    r = run_cli("replay", str(tmp_path / "valve1" / "0.csv"), "--out-dir", str(out), "--emit", "all", "--no-progress", cwd=tmp_path / "valve2")
    assert r.returncode == 0, r.stderr
    assert len(list(out.iterdir())) == 6


def test_an_output_of_another_input_is_not_overwritten_without_force(tmp_path: Path) -> None:
    a, b = write_csv(tmp_path / "a.csv", seed=1), write_csv(tmp_path / "b.csv", seed=2)
    d, s = tmp_path / "d.jsonl", tmp_path / "s.json"
    r = run_cli("replay", str(a), "--out", str(d), "--emit", "all", "--summary-json", str(s), "--out-dir", str(tmp_path / "o"), "--no-progress")
    assert r.returncode == 0, r.stderr
    before = d.read_bytes()
    # The same input again: its own results, overwritten.
    r = run_cli("replay", str(a), "--out", str(d), "--emit", "all", "--summary-json", str(s), "--out-dir", str(tmp_path / "o"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert d.read_bytes() == before
    # Another input: refused, and nothing touched.
    for option, path in (("--out", d), ("--summary-json", s)):
        r = run_cli("replay", str(b), option, str(path), "--out-dir", str(tmp_path / "o2"), "--no-progress")
        assert "holds the results of another input" in error_line(r) and "--force" in r.stderr
    assert d.read_bytes() == before and json.loads(s.read_text())["source"] == str(a)
    r = run_cli("replay", str(b), "--out", str(d), "--emit", "all", "--force", "--out-dir", str(tmp_path / "o2"), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert {json.loads(line)["source"]["stream"] for line in d.read_text().splitlines()} == {str(b)}
    # A file streamad did not write is never overwritten without --force; an empty one may be.
    mine = tmp_path / "mine.csv"
    mine.write_text("my,own\n1,2\n")
    r = run_cli("replay", str(b), "--rejects", str(mine), "--out-dir", str(tmp_path / "o3"), "--no-progress")
    assert "does not hold streamad results" in error_line(r)
    assert mine.read_text() == "my,own\n1,2\n"
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = run_cli("replay", str(b), "--out", str(empty), "--out-dir", str(tmp_path / "o3"), "--no-progress")
    assert r.returncode == 0, r.stderr


def test_out_dash_keeps_stdout_for_detections_only(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "in.csv", n=800)
    r = run_cli("replay", str(p), "--out", "-", "--emit", "all", "--out-dir", str(tmp_path / "o"), "--no-progress")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 800
    for line in lines:
        assert json.loads(line)["schema_version"] == 1  # every line of stdout is a detection
    assert re.search(r"^records read +800$", r.stderr, re.M) and re.search(r"^detections +stdout$", r.stderr, re.M)  # the summary went to stderr


def test_summary_json_on_stdout(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "in.csv", n=300)
    r = run_cli("replay", str(p), "--summary-json", "-", "--out-dir", str(tmp_path / "o"), "--no-progress")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["read"] == summary["scored"] == 300
    assert re.search(r"^records read +300$", r.stderr, re.M)


def test_outputs_may_be_dev_null_or_a_fifo(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "in.csv", n=500)
    r = run_cli("replay", str(p), "--out", "/dev/null", "--rejects", "/dev/null", "--drift-events", "/dev/null", "--emit", "all", "--no-progress")
    assert r.returncode == 0, r.stderr
    fifo = tmp_path / "detections.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    try:
        r = run_cli("replay", str(p), "--out", str(fifo), "--emit", "all", "--out-dir", str(tmp_path / "o"), "--no-progress")
    finally:
        if reader.is_alive():  # the replay failed before opening the FIFO: unblock the reader
            with open(fifo, "wb"):
                pass
        reader.join(timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(got[0].splitlines()) == 500


def test_stdout_closed_by_its_reader_stops_the_replay_quietly(tmp_path: Path) -> None:
    """``streamad replay --out - | head -n 2``: exit 141 like any filter whose reader left,
    no traceback, and the summary (on stderr) says what happened."""
    p = write_csv(tmp_path / "in.csv", n=20_000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamad", "replay", str(p), "--out", "-", "--emit", "all", "--out-dir", str(tmp_path / "o"), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    first = [proc.stdout.readline() for _ in range(2)]
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert all(json.loads(line)["schema_version"] == 1 for line in first)
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "stdout closed by its reader" in err and "reconciled    yes" in err
    rejects = default_output_paths(p, tmp_path / "o")[1]
    assert rejects.read_text().startswith("stream,partition,offset,code")  # the other outputs were flushed
