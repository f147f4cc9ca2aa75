"""The command line, run as a user runs it: a fresh process, real files."""

import json
import re

import numpy as np
import pytest
import scipy.io

from tests.conftest import run_cli


def summary_value(out: str, name: str) -> str:
    m = re.search(rf"^{re.escape(name)}\s+(.+)$", out, re.M)
    assert m, f"{name!r} missing from summary:\n{out}"
    return m.group(1)


def test_replay_odds_v5_prints_quality(odds_dir, tmp_path):
    r = run_cli("replay", str(odds_dir / "cardio.mat"), "--out-dir", str(tmp_path), "--summary-json", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    assert float(summary_value(r.stdout, "ROC-AUC")) > 0.5
    assert "reconciled         yes" in r.stdout
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["read"] == s["scored"] == 1831 and s["quality"]["anomalies"] == 176
    assert "too short a stream for alarms" not in r.stdout  # 1831 records: the threshold got ready


@pytest.mark.slow
def test_replay_odds_v73_http(odds_dir, tmp_path):
    r = run_cli("replay", str(odds_dir / "http.mat"), "--out-dir", str(tmp_path), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert summary_value(r.stdout, "records read") == "567,498"
    assert 0.0 <= float(summary_value(r.stdout, "ROC-AUC")) <= 1.0


def test_replay_skab_with_its_delimiter_timestamp_and_label(skab_dir, tmp_path):
    out = tmp_path / "d.jsonl"
    r = run_cli("replay", str(skab_dir / "valve1" / "0.csv"), "--out", str(out), "--emit", "all")
    assert r.returncode == 0, r.stderr
    assert "timestamp: datetime, label: anomaly; delimiter ';'" in r.stdout
    # 1147 records: the provisional threshold (the detector's warm-up) makes alarms possible.
    assert "too short a stream for alarms" not in r.stdout
    assert "ignored columns: changepoint" in r.stdout
    lines = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(lines) == int(summary_value(r.stdout, "scored").replace(",", ""))
    first = lines[0]
    assert first["event_time"].startswith("2020-") and first["model"]["name"]
    assert "anomaly" not in json.dumps(first["features"]) and "changepoint" not in json.dumps(first["features"])


def test_bad_rows_go_to_the_rejects_file_and_counts_reconcile(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["t,a,b,label"]
    for i in range(1500):
        rows.append(f"{1_700_000_000 + i},{rng.normal():.4f},{rng.normal():.4f},0")
    rows[10] = "1700000009,1.0"  # wrong column count
    rows[20] = "1700000019,abc,1.0,0"  # non-numeric
    rows[30] = "1700000029,nan,1.0,0"  # NaN
    rows[40] = "1700000039,1.0,inf,0"  # inf
    rows[50] = "1700000049,,1.0,0"  # missing value
    rows[60] = "yesterday,1.0,1.0,0"  # bad timestamp
    p = tmp_path / "in.csv"
    p.write_text("\n".join(rows) + "\n")
    rej = tmp_path / "rejects.csv"
    r = run_cli("replay", str(p), "--timestamp", "t", "--rejects", str(rej), "--out", str(tmp_path / "d.jsonl"))
    assert r.returncode == 0, r.stderr
    assert summary_value(r.stdout, "records read") == "1,500"
    assert summary_value(r.stdout, "scored") == "1,494"
    assert summary_value(r.stdout, "rejected").startswith("6")
    got = rej.read_text().splitlines()
    assert got[0] == "stream,partition,offset,code,reason,field,raw"
    lines = sorted(int(l.split(",")[2]) for l in got[1:])
    assert lines == [11, 21, 31, 41, 51, 61]  # file line numbers (header is line 1)
    assert "non-numeric value 'abc' in field 'a'" in rej.read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["replay", "does-not-exist.csv"], "does-not-exist.csv: no such file"),
        (["replay", "{tmp}"], "is a directory"),
        (["replay", "{tmp}/empty.csv"], "is empty"),
        (["replay", "{tmp}/nox.mat"], "has no 'X' array"),
        (["replay", "{tmp}/ok.csv", "--window-size", "0"], "window.size"),
        (["replay", "{tmp}/ok.csv", "--detector", "nope"], "unknown detector 'nope'"),
        (["replay", "{tmp}/ok.csv", "--threshold", "magic"], "threshold.kind"),
        (["replay", "{tmp}/ok.csv", "--features", "a,zz"], "feature column(s) not found: zz"),
        (["replay", "{tmp}/ok.csv", "--param", "bogus=1"], "detector.params.bogus: unknown parameter"),
        (["replay", "{tmp}/ok.csv", "--no-such-option"], "No such option"),
        (["replay", "{tmp}/ok.csv", "--speed", "2"], "pacing needs event timestamps"),
    ],
)
def test_bad_paths_and_options_fail_fast_with_one_line(tmp_path, args, message):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "ok.csv").write_text("a,b\n1,2\n3,4\n")
    scipy.io.savemat(tmp_path / "nox.mat", {"data": np.zeros((2, 2))})
    r = run_cli(*[a.replace("{tmp}", str(tmp_path)) for a in args], "--out-dir", str(tmp_path / "o"))
    assert r.returncode == 2
    err = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("streamad: error: "), r.stderr
    assert message in err[0]
    assert "Traceback" not in r.stderr


def test_paced_replay_follows_timestamps(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("ts,a\n" + "".join(f"{1_700_000_000 + i},{i % 7}\n" for i in range(30)))
    r = run_cli("replay", str(p), "--timestamp", "ts", "--speed", "20", "--out-dir", str(tmp_path), "--summary-json", str(tmp_path / "s.json"))
    assert r.returncode == 0, r.stderr
    # 29 seconds of event time at 20x: at least 1.45 s of wall time.
    assert json.loads((tmp_path / "s.json").read_text())["seconds"] >= 1.4


def test_demo_writes_summary_detections_and_plot(tmp_path):
    r = run_cli("demo", "--out-dir", str(tmp_path), "--records", "6000")
    assert r.returncode == 0, r.stderr
    for name in ("records read", "scored", "rejected", "alarms", "ROC-AUC", "average precision", "alarm F1", "throughput"):
        summary_value(r.stdout, name)
    png = tmp_path / "demo.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert (tmp_path / "demo.detections.jsonl").exists()
    assert summary_value(r.stdout, "rejected").startswith("3")  # the planted sensor dropouts


def test_help_and_detectors():
    r = run_cli()
    assert r.returncode == 0 and "replay" in r.stdout
    r = run_cli("detectors")
    assert r.returncode == 0
    default = [line for line in r.stdout.splitlines() if "(default: " in line]
    assert len(default) == 2
    assert default[0].startswith("loe-ae  (default: tables)") and "v3: An autoencoder trained with LOE" in default[0]
    assert default[1].startswith("per-key  (default: sensor streams)") and "v1: One detector per key" in default[1]
    assert "a gaussian (trim=0.95, early=True) and a threshold per record key" in r.stdout
