"""What reading Kafka messages costs: streamad's decoder beside a bare orjson loop.

    python -m benchmarks.decode_throughput [--records 200000] [--batch 2000] [--repeats 5]

The messages are the demo's pump readings as JSON objects (six numbers, keyed by
device, as `benchmarks/kafka_throughput.py` produces them), with the event time
carried four ways: not at all (the Kafka timestamp is the event time), as epoch
seconds, as ISO 8601 text in UTC (``2026-01-01T00:00:07Z``, one layout for all), and
as Python's ``datetime.isoformat()`` with an offset (``+00:00``; the microseconds are
dropped when zero, so the texts' lengths vary). They are decoded in polls of
``--batch`` messages (``kafka.max_poll_records``' default), in one process, one thread.

- **streamad**: ``JsonDecoder.decode``, what a worker runs on every poll: JSON, the
  schema (features inferred from the first poll), every check of the record contract
  (dead-letter reasons), keys and event times.
- **bare loop**: ``orjson.loads`` of each message, its numbers into a float array
  and, when there is one, its event time read with ``datetime.fromisoformat`` (or
  ``float``): what a consumer that checks nothing does at least.

No broker: ``benchmarks/kafka_throughput.py`` measures the whole worker through one.
Results go to benchmarks/results/decode_throughput.md (and .json).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import orjson  # noqa: E402

from benchmarks.odds import _versions, publish, run_meta  # noqa: E402
from streamad.connectors.kafka.decoder import JsonDecoder  # noqa: E402

#: how each kind of message carries its event time
KINDS = ("kafka timestamp", "epoch seconds", "ISO 8601, Z", "isoformat(), +00:00")
START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def messages(n: int, kind: str, seed: int = 7) -> list[Any]:
    """The demo's first ``n`` records as Kafka messages (offset, key, value, timestamp)."""
    from streamad.app.demo import generate

    s = generate(n=max(n, 20_000), seed=seed)  # the demo plants its events in 20,000 or more
    X = np.nan_to_num(s.X[:n], nan=0.0)
    out = []
    for i, row in enumerate(X.tolist()):
        # One record a second, with a varying sub-second part (a real clock's).
        when = START + dt.timedelta(seconds=i, microseconds=(i * 7919) % 1_000_000 if i % 3 else 0)
        rec: dict[str, Any] = {"device": f"pump-{i % 8}", **dict(zip(s.feature_names, row))}
        if kind == "epoch seconds":
            rec["timestamp"] = when.timestamp()
        elif kind == "ISO 8601, Z":
            rec["timestamp"] = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        elif kind == "isoformat(), +00:00":
            rec["timestamp"] = when.isoformat()
        out.append(SimpleNamespace(offset=i, key=rec["device"].encode(), value=orjson.dumps(rec), timestamp=int(when.timestamp() * 1000)))
    return out


def streamad_decode(polls: list[list[Any]]) -> tuple[float, int]:
    from streamad.config import RecordSettings
    from streamad.records import Lane

    decoder = JsonDecoder(RecordSettings(key="device"), max_message_bytes=1_000_000)
    lane = Lane("sensors", 0)
    rows = 0
    t0 = time.perf_counter()
    for poll in polls:
        rows += len(decoder.decode(lane, poll))
    return time.perf_counter() - t0, rows


def bare_decode(polls: list[list[Any]], features: Sequence[str]) -> tuple[float, int]:
    rows = 0
    t0 = time.perf_counter()
    for poll in polls:
        X = np.empty((len(poll), len(features)))
        times = np.empty(len(poll))
        for i, m in enumerate(poll):
            rec = orjson.loads(m.value)
            X[i] = [rec[f] for f in features]
            t = rec.get("timestamp")
            times[i] = m.timestamp / 1000 if t is None else dt.datetime.fromisoformat(t).timestamp() if isinstance(t, str) else float(t)
        rows += len(X)
    return time.perf_counter() - t0, rows


def run(records: int, batch: int, repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in KINDS:
        msgs = messages(records, kind)
        features = [k for k in orjson.loads(msgs[0].value) if k not in ("device", "timestamp")]
        polls = [msgs[i : i + batch] for i in range(0, len(msgs), batch)]
        runs = []
        for r in range(repeats):
            # Alternate which goes first: a machine that drifts favours neither.
            order = ("streamad", "bare") if r % 2 == 0 else ("bare", "streamad")
            pair = {}
            for who in order:
                seconds, rows = streamad_decode(polls) if who == "streamad" else bare_decode(polls, features)
                assert rows == records, (who, rows)
                pair[who] = records / seconds
            runs.append(pair)
            print(f"{kind} run {r + 1}: streamad {pair['streamad']:,.0f} records/s, bare loop {pair['bare']:,.0f}", file=sys.stderr)
        out[kind] = {
            "runs": runs,
            "streamad": statistics.median(p["streamad"] for p in runs),
            "bare": statistics.median(p["bare"] for p in runs),
            "ratio": statistics.median(p["streamad"] / p["bare"] for p in runs),
            "example": orjson.loads(msgs[1].value).get("timestamp"),
        }
    return out


def render(results: dict[str, Any], meta: dict[str, Any]) -> str:
    v = ", ".join(f"{k} {x}" for k, x in meta["versions"].items())
    lines = [
        "# Reading Kafka messages: streamad's decoder beside a bare orjson loop",
        "",
        f"Generated by `{meta['command']}` on {meta['date']}, commit {meta['commit']}, {meta['machine']}.",
        f"Versions: {v}.",
        "",
        f"{meta['records']:,} demo records as JSON messages, decoded in polls of {meta['batch']:,}, one process, one thread; "
        f"median of {meta['repeats']} runs, the two alternating (the ratio is the median of the runs' ratios). **streamad**: "
        "`JsonDecoder.decode`, what a worker runs on each poll (the record contract's checks, keys, event times). "
        "**bare loop**: `orjson.loads`, the numbers into an array, the event time by `datetime.fromisoformat` or `float`. "
        "No broker (`kafka_throughput.md` measures the worker through one).",
        "",
        "| event time carried as | example | streamad records/s | bare loop records/s | streamad ÷ bare |",
        "|---|---|---:|---:|---:|",
    ]
    for kind, r in results.items():
        example = "–" if r["example"] is None else f"`{r['example']}`"
        lines.append(f"| {kind} | {example} | {r['streamad']:,.0f} | {r['bare']:,.0f} | {r['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=2_000, help="messages a poll (kafka.max_poll_records' default)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if args.records < 2 or args.batch < 1 or args.repeats < 1:
        print("streamad: error: --records must be at least 2, --batch and --repeats at least 1", file=sys.stderr)
        return 2
    results = run(args.records, args.batch, args.repeats)
    meta = run_meta("benchmarks.decode_throughput", argv, versions=_versions(), records=args.records, batch=args.batch, repeats=args.repeats)
    text = render(results, meta)
    print(text)
    if not args.no_write:
        publish("decode_throughput", text, {"meta": meta, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
