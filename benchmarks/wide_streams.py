"""Streams of many sensors: what the sensor default costs and catches as a device's
sensors go from 10 to 100, beside river's HalfSpaceTrees in the same run.

    python -m benchmarks.wide_streams [--sensors 10,20,50,100] [--records 20000] [--seeds 3]

A plant's device reports many tags. Each stream here is one device, a record a second:
its sensors follow three hidden drivers (a slow cycle, a random walk and noise),
each sensor with its own mix of them and its own noise, as the sensors of one machine
do. Three kinds of event are planted, labelled for the final metrics only:

- a stuck sensor: one sensor holds its value for 200 records (from 40% of the stream);
- a level shift: one sensor moves by six of its standard deviations for 100 records
  (from 60%);
- spikes: ten single records, each with one sensor off by eight standard deviations
  (after 25%, at least 500 records apart).

**streamad**: `streamad replay` of the CSV (a timestamp column: the temporal stage and
the sensor default, a Gaussian over the values and five derived columns a sensor),
timed from reading the file to the last detection written, one thread. **river**:
`MinMaxScaler() | HalfSpaceTrees()` at river's defaults over the same values,
`score_one` then `learn_one`. An event is caught when one of its records alarms
(river has no threshold: its ROC-AUC is given). Results go to
benchmarks/results/wide_streams.md (and .json).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import multiprocessing as mp  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.odds import _versions, metrics, publish, run_meta, single_thread  # noqa: E402

START = 1_767_225_600  # 2026-01-01T00:00:00Z


def make_stream(sensors: int, records: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int, int]]]:
    """(values n x sensors, labels, events as (kind, first row, last row))."""
    rng = np.random.default_rng(seed)
    t = np.arange(records, dtype=np.float64)
    drivers = np.c_[np.sin(2 * np.pi * t / 1800), np.cumsum(rng.normal(scale=0.02, size=records)), rng.normal(size=records)]
    mix = rng.normal(size=(3, sensors))
    X = drivers @ mix + rng.uniform(0.1, 0.4, size=sensors) * rng.normal(size=(records, sensors)) + rng.uniform(-50, 50, size=sensors)
    spread = X[: records // 4].std(axis=0)
    y = np.zeros(records, dtype=np.int8)
    events: list[tuple[str, int, int]] = []
    a = int(records * 0.40)
    j = int(rng.integers(sensors))
    X[a : a + 200, j] = X[a, j]
    y[a : a + 200] = 1
    events.append(("stuck", a, a + 199))
    b = int(records * 0.60)
    j = int(rng.integers(sensors))
    X[b : b + 100, j] += 6 * spread[j]
    y[b : b + 100] = 1
    events.append(("shift", b, b + 99))
    free = np.r_[records // 4 : a - 100, a + 300 : b - 100, b + 200 : records - 10]
    spots: list[int] = []
    for s in rng.permutation(free):
        if all(abs(int(s) - o) >= 500 for o in spots):
            spots.append(int(s))
        if len(spots) == 10:
            break
    for s in sorted(spots):
        j = int(rng.integers(sensors))
        X[s, j] += rng.choice([-8.0, 8.0]) * spread[j]
        y[s] = 1
        events.append(("spike", s, s))
    return X, y, events


def write_csv(path: Path, X: np.ndarray, y: np.ndarray) -> None:
    stamps = (np.datetime64(START, "s") + np.arange(len(X))).astype(str)
    with path.open("w") as f:
        f.write("timestamp," + ",".join(f"s{j}" for j in range(X.shape[1])) + ",anomaly\n")
        for ts, row, label in zip(stamps.tolist(), X.tolist(), y.tolist()):
            f.write(ts + "," + ",".join(f"{v:.5f}" for v in row) + f",{label}\n")


def _ours(job: dict[str, Any]) -> dict[str, Any]:
    single_thread()
    from benchmarks.peers import Clock
    from streamad.app.cli import open_source
    from streamad.app.heap import SettleHeap
    from streamad.app.replay import Recorder
    from streamad.config import load_settings
    from streamad.connectors.sinks import JsonlSink
    from streamad.pipeline import Pipeline, warm_kernels
    from streamad.temporal import compile_kernels

    settings = load_settings(None, {"output": {"detections": job["out"]}}, env={})
    compile_kernels()  # numba's cache (or a compile): start-up, not throughput
    warm_kernels(settings)
    recorder = Recorder(Recorder.QUALITY)
    with Clock() as clock:
        source, _ = open_source(Path(job["file"]), settings, None, None, None)
        sink = JsonlSink(settings.output.detections)
        pipeline = Pipeline(settings, sink, feature_names=list(source.schema.features or ()), observers=[recorder, SettleHeap()])
        counts = pipeline.run(source)
        sink.close()
    return {
        "records": counts.scored,
        "seconds": clock.wall,
        "records_per_s": counts.scored / clock.wall,
        "scores": recorder.array("scores").astype(np.float64),
        "alarms": recorder.array("alarms").astype(bool),
    }


def _river(job: dict[str, Any]) -> dict[str, Any]:
    single_thread()
    from benchmarks.peers import river_hst

    X = np.load(job["values"])
    scores, seconds, _ = river_hst(X, seed=0)
    return {"records": len(X), "seconds": seconds, "records_per_s": len(X) / seconds, "scores": scores}


def in_fresh_process(fn: Any, job: dict[str, Any]) -> dict[str, Any]:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, (job,))


def caught(alarms: np.ndarray, events: list[tuple[str, int, int]], kind: str) -> tuple[int, int]:
    mine = [(a, b) for k, a, b in events if k == kind]
    return sum(bool(alarms[a : b + 1].any()) for a, b in mine), len(mine)


def run(sensors: Sequence[int], records: int, seeds: int) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for width in sensors:
            for seed in range(seeds):
                X, y, events = make_stream(width, records, seed)
                csv, values = d / f"wide{width}_{seed}.csv", d / f"wide{width}_{seed}.npy"
                write_csv(csv, X, y)
                np.save(values, X)
                ours = in_fresh_process(_ours, {"file": str(csv), "out": str(d / "detections.jsonl")})
                river = in_fresh_process(_river, {"values": str(values)})
                assert ours["records"] == records == river["records"]
                alarms = ours["alarms"]
                normal = y == 0
                row = {
                    "sensors": width,
                    "seed": seed,
                    "ours_records_per_s": ours["records_per_s"],
                    "river_records_per_s": river["records_per_s"],
                    "ours_auc": metrics(y, ours["scores"])[0],
                    "river_auc": metrics(y, river["scores"])[0],
                    "alarms": int(alarms.sum()),
                    "false_alarm_rate": float(alarms[normal].mean()),
                    **{kind: caught(alarms, events, kind) for kind in ("stuck", "shift", "spike")},
                }
                print(
                    f"{width} sensors, seed {seed}: streamad {row['ours_records_per_s']:,.0f} records/s, river {row['river_records_per_s']:,.0f}; "
                    f"AUC {row['ours_auc']:.3f} / {row['river_auc']:.3f}; stuck {row['stuck']}, shift {row['shift']}, spikes {row['spike']}",
                    file=sys.stderr,
                )
                rows.append(row)
    return rows


def render(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    v = ", ".join(f"{k} {x}" for k, x in meta["versions"].items())
    lines = [
        "# Streams of many sensors: the sensor default beside river's HalfSpaceTrees",
        "",
        f"Generated by `{meta['command']}` on {meta['date']}, commit {meta['commit']}, {meta['machine']}. Versions: {v}.",
        "",
        f"One device a stream, {meta['records']:,} records a second apart, seeds 0-{meta['seeds'] - 1}; planted: a sensor stuck for 200 records, "
        "a sensor shifted by six standard deviations for 100, ten one-record spikes of eight (`benchmarks/wide_streams.py`). "
        "**streamad**: `streamad replay` of the CSV with the defaults (the temporal stage and the sensor default: a Gaussian over "
        "the values and five derived columns a sensor), timed from reading the file. **river**: `MinMaxScaler() | HalfSpaceTrees()` "
        "over the values, `score_one` then `learn_one`. Each in a fresh process, one thread. Records/s: median over seeds; "
        "events: caught (an alarm among their records) over all seeds; ROC-AUC: mean over seeds.",
        "",
        "| sensors | model columns | streamad records/s | river HST records/s | streamad ÷ river | streamad ROC-AUC | river ROC-AUC | stuck | shift | spikes | false-alarm rate |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|",
    ]
    for width in sorted({r["sensors"] for r in rows}):
        rs = [r for r in rows if r["sensors"] == width]
        ours = statistics.median(r["ours_records_per_s"] for r in rs)
        river = statistics.median(r["river_records_per_s"] for r in rs)

        def tally(kind: str, rs: list[dict[str, Any]] = rs) -> str:
            return f"{sum(r[kind][0] for r in rs)}/{sum(r[kind][1] for r in rs)}"

        lines.append(
            f"| {width} | {5 * width + 1} | {ours:,.0f} | {river:,.0f} | {ours / river:.2f} | {np.mean([r['ours_auc'] for r in rs]):.3f} | "
            f"{np.mean([r['river_auc'] for r in rs]):.3f} | {tally('stuck')} | {tally('shift')} | {tally('spike')} | {np.mean([r['false_alarm_rate'] for r in rs]):.3%} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sensors", default="10,20,50,100")
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    try:
        sensors = [int(s) for s in args.sensors.split(",")]
    except ValueError:
        sensors = []
    if not sensors or min(sensors) < 1 or args.records < 4000 or args.seeds < 1:
        print("streamad: error: --sensors takes positive counts (10,20,...), --records at least 4000, --seeds at least 1", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    rows = run(sensors, args.records, args.seeds)
    meta = run_meta("benchmarks.wide_streams", argv, versions=_versions(), records=args.records, seeds=args.seeds, minutes=(time.perf_counter() - t0) / 60)
    text = render(rows, meta)
    print(text)
    if not args.no_write:
        publish("wide_streams", text, {"meta": meta, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
