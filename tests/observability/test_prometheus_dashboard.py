"""The dashboard against a real Prometheus scraping real ``streamad replay`` processes.

Two replays of the demo sensor stream run as subprocesses of the real command line,
paced so that they are scraped while they work, then linger so the final values are
scraped too: one file has the demo's slow temperature drift planted and runs the
default detector (for a stream with event times, the sensor default: a Gaussian), the
other is the same stream without it and runs ``loe-ae`` (the tables' default, whose
network reports the learning panels' loss and importance weights). One Prometheus (the Debian ``prometheus`` binary, temporary config and storage,
1 s scrape interval) scrapes both. Then: every metric the dashboard names is exported,
every panel, variable and annotation query of the dashboard returns data, the drift
metrics show the planted drift and nothing in the drift-free file, and the exposition
passes ``promtool check metrics``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docker" / "grafana" / "dashboards" / "streamad.json"
RECORDS = 20_000
SPEED = 2_000.0  # records per second of replay: 10 s each, scraped about ten times (fewer flaked under load)

pytestmark = [pytest.mark.prometheus, pytest.mark.slow]


def _binary(name: str) -> str | None:
    return shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_demo_csv(path: Path, drift: bool, seed: int = 11) -> None:
    from streamad.app.demo import generate

    s = generate(n=RECORDS, seed=seed, drift=drift, anomalies=True)
    with open(path, "w") as f:
        f.write(",".join(["timestamp", *s.feature_names, "label"]) + "\n")
        for t, row, y in zip(s.timestamps, s.X, s.y):
            f.write(",".join([f"{t:.0f}", *("" if math.isnan(v) else f"{v:.6f}" for v in row), str(int(y))]) + "\n")


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


class Prom:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = json.loads(http_get(f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})))
        assert body["status"] == "success", body
        return body["data"]["result"]

    def values(self, expr: str) -> dict[str, float]:
        """Instant vector as {label-string: value}."""
        out = {}
        for r in self.query(expr):
            out[json.dumps(r["metric"], sort_keys=True)] = float(r["value"][1])
        return out

    def label_values(self, label: str, match: str) -> list[str]:
        body = json.loads(http_get(f"{self.base}/api/v1/label/{label}/values?" + urllib.parse.urlencode({"match[]": match})))
        return body["data"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    prometheus = _binary("prometheus")
    if prometheus is None:
        pytest.skip("the prometheus binary is not installed (Debian package `prometheus`; scripts/test installs it)")
    tmp = tmp_path_factory.mktemp("prom")
    files = {"drift": tmp / "drift.csv", "nodrift": tmp / "nodrift.csv"}
    write_demo_csv(files["drift"], drift=True)
    write_demo_csv(files["nodrift"], drift=False)
    ports = {k: free_port() for k in files}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    prom_port = free_port()
    cfg = tmp / "prometheus.yml"
    cfg.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: streamad\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{ports['drift']}', '127.0.0.1:{ports['nodrift']}']\n"
    )
    prom = subprocess.Popen(
        [prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / "prometheus.log", "w"),
    )  # fmt: skip
    api = Prom(prom_port)
    # Prometheus first, ready before the replays start: its first scrapes must see the
    # counters before the drift moves them, or increase() has nothing to compare with.
    deadline = time.monotonic() + 60
    while True:
        try:
            http_get(f"http://127.0.0.1:{prom_port}/-/ready")
            break
        except OSError:
            if prom.poll() is not None or time.monotonic() > deadline:
                prom.kill()
                pytest.fail(f"Prometheus did not start; its log:\n{(tmp / 'prometheus.log').read_text()[-3000:]}")
            time.sleep(0.2)
    procs: dict[str, subprocess.Popen[str]] = {}
    logs = {k: open(tmp / f"{k}.log", "w+") for k in files}
    detector = {"drift": [], "nodrift": ["--detector", "loe-ae"]}
    for k, f in files.items():
        procs[k] = subprocess.Popen(
            [sys.executable, "-m", "streamad", "replay", str(f), *detector[k], "--out-dir", str(tmp / "out"),
             "--speed", str(SPEED), "--no-progress", "--metrics-host", "127.0.0.1", "--metrics-port", str(ports[k]), "--metrics-linger", "300"],
            stdout=logs[k], stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp,
        )  # fmt: skip
    try:
        # Done when both replays have checkpointed at their end and that has been scraped.
        deadline = time.monotonic() + 90
        while True:
            for k, p in procs.items():
                if p.poll() is not None:
                    logs[k].seek(0)
                    pytest.fail(f"replay {k} exited with {p.returncode}:\n{logs[k].read()[-3000:]}")
            # Done when every record of both files has been scored or rejected and that
            # has been scraped (a checkpoint alone may be a periodic one, mid-replay).
            try:
                done = api.values(
                    "sum by (stream) (streamad_records_scored_total) + on (stream) sum by (stream) (streamad_records_rejected_total)"
                    " and on (stream) sum by (stream) (streamad_last_checkpoint_timestamp_seconds)"
                )
            except OSError:
                done = {}
            if len(done) == 2 and all(v == RECORDS for v in done.values()):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"Prometheus did not scrape the end of both replays; its log:\n{(tmp / 'prometheus.log').read_text()[-3000:]}")
            time.sleep(0.5)
        time.sleep(2.5)  # two more scrapes of the final values
        expositions = {k: http_get(f"http://127.0.0.1:{ports[k]}/metrics").decode() for k in files}
        yield {"api": api, "files": files, "expositions": expositions, "tmp": tmp, "out": tmp / "out"}
    finally:
        for p in [*procs.values(), prom]:
            if p.poll() is None:
                p.send_signal(signal.SIGINT if p is not prom else signal.SIGTERM)
        for p in [*procs.values(), prom]:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs.values():
            f.close()


# -- the dashboard's queries --------------------------------------------------------------------

SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "5s",
    "$__range": "1h",
    "$stream": ".*",
    "$partition": ".*",
}


def substitute(expr: str) -> str:
    for k, v in SUBSTITUTIONS.items():
        expr = expr.replace(k, v)
    assert "$" not in expr, f"unknown dashboard variable in {expr!r}"
    return expr


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panel_queries() -> list[tuple[str, str]]:
    out = []
    for p in dashboard()["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    return out


def dashboard_metric_names() -> set[str]:
    d = dashboard()
    exprs = [e for _, e in panel_queries()]
    exprs += [a["expr"] for a in d["annotations"]["list"] if "expr" in a]
    exprs += [v["definition"] for v in d["templating"]["list"]]
    names: set[str] = set()
    for e in exprs:
        names |= set(re.findall(r"\b((?:streamad|process)_[a-zA-Z0-9_]+)\b", e))
    return names


def exposition_names(text: str) -> set[str]:
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


#: what only a detector with a network reports (the drift file's Gaussian does not)
NEURAL_ONLY = {"streamad_importance_weight_ess_ratio", "streamad_training_loss"}


def test_every_dashboard_metric_is_exported(stack: dict[str, Any]) -> None:
    names = dashboard_metric_names()
    assert len(names) >= 20 and NEURAL_ONLY <= names
    for k, text in stack["expositions"].items():
        missing = names - exposition_names(text) - (NEURAL_ONLY if k == "drift" else set())
        assert not missing, f"the dashboard uses metrics the {k} replay does not export: {sorted(missing)}"


@pytest.mark.parametrize("title,expr", panel_queries())
def test_every_panel_query_returns_data(stack: dict[str, Any], title: str, expr: str) -> None:
    result = stack["api"].query(substitute(expr))
    assert result, f"panel {title!r}: {substitute(expr)} returned nothing"
    values = [float(r["value"][1]) for r in result]
    # Quantiles, rates and gauges alike must be real numbers, not NaN from empty rates.
    assert any(math.isfinite(v) for v in values), f"panel {title!r}: only non-finite values {values}"


def test_variables_and_drift_annotation_return_data(stack: dict[str, Any]) -> None:
    api = stack["api"]
    d = dashboard()
    streams = api.label_values("stream", "streamad_records_consumed_total")
    assert sorted(Path(s).name for s in streams) == ["drift.csv", "nodrift.csv"]
    parts = api.label_values("partition", 'streamad_records_consumed_total{stream=~".*"}')
    assert parts == ["0"]
    (ann,) = [a for a in d["annotations"]["list"] if "expr" in a]
    # The annotation marks drift: present for the drifting file, absent for the other.
    hits = api.query(f"max_over_time(({substitute(ann['expr'])})[5m:1s])")
    assert {Path(r["metric"]["stream"]).name for r in hits} == {"drift.csv"}


def _by_file(values: dict[str, float], label: str = "stream") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in values.items():
        m = json.loads(k)
        key = Path(m[label]).name + "".join(f"/{m[x]}" for x in ("kind", "feature") if x in m)
        out[key] = v
    return out


def test_drift_metrics_record_the_planted_drift_only(stack: dict[str, Any]) -> None:
    api = stack["api"]
    events = _by_file(api.values("streamad_drift_events_total"))
    assert events["drift.csv/feature"] >= 1
    assert events["drift.csv/score"] >= 1
    assert events["nodrift.csv/feature"] == 0
    assert events["nodrift.csv/score"] == 0
    (level,) = set(api.values("streamad_feature_drift_threshold").values())  # one per process, all alike
    peak = _by_file(api.values("max_over_time(streamad_feature_drift_statistic[10m])"))
    assert peak["drift.csv/temperature"] > level
    assert max(v for k, v in peak.items() if k.startswith("nodrift.csv/")) < level
    # Only the drifting feature crossed the level.
    assert [k for k, v in peak.items() if v > level] == ["drift.csv/temperature"]
    # The same alarms are in the drift events files, as JSON lines.
    from streamad.app.replay import default_drift_path  # outputs are named after the input's path

    drift_lines = [json.loads(x) for x in default_drift_path(stack["files"]["drift"], stack["out"]).read_text().splitlines()]
    assert {e["feature"] for e in drift_lines if e["kind"] == "feature"} == {"temperature"}
    assert len(drift_lines) == events["drift.csv/feature"] + events["drift.csv/score"]
    assert default_drift_path(stack["files"]["nodrift"], stack["out"]).read_text() == ""


def test_counts_reconcile_and_lag_drains(stack: dict[str, Any]) -> None:
    api = stack["api"]
    consumed = _by_file(api.values("streamad_records_consumed_total"))
    scored = _by_file(api.values("streamad_records_scored_total"))
    rejected = _by_file(api.values("sum by (stream) (streamad_records_rejected_total)"))
    for f in ("drift.csv", "nodrift.csv"):
        assert consumed[f] == RECORDS
        assert scored[f] + rejected[f] == RECORDS
        assert rejected[f] > 0  # the demo's sensor dropouts
    lag = _by_file(api.values("streamad_consumer_lag_records"))
    assert lag == {"drift.csv": 0.0, "nodrift.csv": 0.0}
    # While the replay ran, lag was seen above zero (the file was read as it was paced).
    peak = _by_file(api.values("max_over_time(streamad_consumer_lag_records[10m])"))
    assert all(v > 0 for v in peak.values())


def test_labels_are_low_cardinality(stack: dict[str, Any]) -> None:
    allowed = {"stream", "partition", "reason", "kind", "feature", "method", "le", "version", "detector", "python"}
    for text in stack["expositions"].values():
        for line in text.splitlines():
            if line.startswith("streamad_") and "{" in line:
                labels = set(re.findall(r'([a-zA-Z_]+)="', line.split("}")[0]))
                assert labels <= allowed, line


def test_exposition_passes_promtool(stack: dict[str, Any]) -> None:
    promtool = _binary("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (it comes with the Debian package `prometheus`)")
    for k, text in stack["expositions"].items():
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), f"{k}: {r.stdout}{r.stderr}"


def test_learning_state_is_exported(stack: dict[str, Any]) -> None:
    api = stack["api"]
    for name, n in (("streamad_loe_flag_ratio", 2), ("streamad_importance_weight_ess_ratio", 1)):
        values = list(api.values(f"max_over_time({name}[10m])").values())
        assert len(values) == n and all(0.0 <= v <= 1.0 for v in values), (name, values)
    assert len(api.values("streamad_training_loss")) == 1
    info = api.query("streamad_build_info")
    assert {r["metric"]["detector"] for r in info} == {"per-key", "loe-ae"}  # the sensor default, and loe-ae named
    assert np.isfinite([float(r["value"][1]) for r in info]).all()
