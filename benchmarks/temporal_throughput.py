"""What the temporal stage costs (issue #11): replay records/s with ``features.temporal``
on beside off, the same records in the same run, as a ratio.

Reproduce benchmarks/results/temporal_throughput.md (and .json) from the repository root::

    python -m benchmarks.temporal_throughput

Two streams, each written to a CSV file in a temporary directory first, then replayed
as ``streamad replay FILE`` replays it (CsvSource → Pipeline → JSONL detections, default
settings but ``features.temporal``), loading and parsing inside the clock:

- ``demo``: the embedded demo's pump (six sensors, one record a second, drift, spikes,
  level shifts, a stuck sensor), ``--records`` long (default 200,000), one key;
- ``skab``: SKAB's 35 runs (34 experiments and the anomaly-free one) interleaved by
  their order in the file, the file as the key: 35 devices on one stream (8 sensors).

With the stage on, ``detector.name: default`` is the sensor default (a trimmed
Gaussian per key, ``examples/sensor-streams.yaml``, no scaler, windows of 32); off, it is
``loe-ae``. So ``on ÷ off`` is what a user gets with and without event times. A third
run per repeat replays the same file with ``loe-ae`` named and the stage on (the default
there until 2026-12-02): ``loe-ae on ÷ off`` is the stage's own cost under one detector.

Imports (torch, its optimiser, the stage's compiled pass) happen before the clock.
Each pair runs off then on (on then off every other repeat), ``--repeats`` times (default 3), in fresh processes with
one thread (torch and BLAS); the table gives each run and the median ratio. Also per
run: the seconds the temporal stage itself took (``TemporalFeatures.transform``,
``reweigh`` and ``explain``), from a separate profiled run, so the rest of the gap is
the detector working on more columns.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import multiprocessing as mp  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.odds import _commit, _machine, _versions, publish, single_thread  # noqa: E402
from benchmarks.sensor_streams import SKAB_DIRS, _skab_dir  # noqa: E402


def write_demo(path: Path, records: int) -> int:
    from streamad.app.demo import FEATURES, generate

    s = generate(n=records, seed=7, drift=True)
    import pandas as pd

    keep = np.isfinite(s.X).all(axis=1)  # the demo's dropouts are rejected records: leave them out of both runs
    stamps = pd.to_datetime(s.timestamps[keep], unit="s").strftime("%Y-%m-%dT%H:%M:%S")
    with path.open("w") as f:
        f.write("timestamp," + ",".join(FEATURES) + "\n")
        for t, row in zip(stamps.tolist(), s.X[keep].tolist()):
            f.write(t + "," + ",".join(f"{v:.6g}" for v in row) + "\n")
    return int(keep.sum())


def write_skab(path: Path, skab_dir: Path) -> int:
    import pandas as pd

    files = [p for d in (*SKAB_DIRS, "anomaly-free") for p in sorted((skab_dir / d).glob("*.csv"))]
    if not files:
        raise FileNotFoundError(f"no SKAB files under {skab_dir} (--skab-dir)")
    frames = []
    for p in files:
        df = pd.read_csv(p, sep=";")
        df = df.drop(columns=[c for c in ("anomaly", "changepoint") if c in df.columns])
        df.insert(0, "device", f"{p.parent.name}/{p.stem}")
        df["_i"] = np.arange(len(df))
        frames.append(df)
    out = pd.concat(frames).sort_values(["_i", "device"], kind="stable").drop(columns="_i")
    out.to_csv(path, index=False)
    return len(out)


def _replay(job: dict[str, Any]) -> dict[str, Any]:
    single_thread()
    from streamad.app.cli import open_source
    from streamad.app.heap import SettleHeap
    from streamad.config import load_settings
    from streamad.connectors.sinks import JsonlSink
    from streamad.pipeline import Pipeline

    overrides: dict[str, Any] = {"features": {"temporal": job["temporal"]}, "output": {"detections": job["out"]}}
    if job["key"]:
        overrides["record"] = {"key": job["key"], "timestamp": "datetime"}
    if job.get("detector"):
        overrides["detector"] = {"name": job["detector"]}
    settings = load_settings(None, overrides, env={})
    # The stage's compiled pass loads from numba's cache before the clock: start-up is
    # not throughput.
    from streamad.temporal import compile_kernels

    compile_kernels()
    t0, c0 = time.perf_counter(), time.process_time()
    source, _ = open_source(Path(job["file"]), settings, None, None, None)
    sink = JsonlSink(settings.output.detections)
    pipeline = Pipeline(settings, sink, feature_names=list(source.schema.features or ()), observers=[SettleHeap()])  # as the command
    stage = 0.0
    if job["profile"]:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        counts = prof.runcall(pipeline.run, source)
        stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
        stage = sum(v[3] for k, v in stats.items() if k[0].endswith("streamad/temporal.py") and k[2] in ("transform", "reweigh", "explain"))
    else:
        counts = pipeline.run(source)
    sink.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"records": counts.scored, "rejected": counts.rejected, "alarms": counts.alarms, "seconds": wall, "cpu_seconds": cpu, "records_per_s": counts.scored / wall, "stage_seconds": stage}


def run(job: dict[str, Any]) -> dict[str, Any]:
    """One replay in a fresh process: no state, import or cache shared between runs."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_replay, (job,))


def render(results: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> str:
    lines = [
        "# What the temporal stage costs: replay with `features.temporal` on beside off",
        "",
        f"Generated by `{meta['command']}` on {meta['date']}, commit {meta['commit']}, {meta['machine']}.",
        f"Versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}.",
        "",
        "Each run replays a CSV file the way `streamad replay FILE` does (parsing inside the clock, imports before it), default settings "
        "but the temporal stage, one thread, each in a fresh process; off, then on, repeated. "
        "**stage**: seconds inside the temporal stage (transform, reweigh, explain) in a separate profiled run with it on, "
        "as a share of that run (profiling inflates small calls alike). "
        "With the stage on the default detector is the sensor default (a trimmed Gaussian per key: `examples/sensor-streams.yaml`, no scaler, windows of 32), "
        "off it is loe-ae: **on ÷ off** is what a replay gets with and without event times. "
        "**loe-ae on**: the same file with loe-ae named and the stage on (the default there until 2026-12-02): its ratio to off is the stage's own cost under one detector.",
        "",
        "On a shared machine one run can take up to twice as long as the same run minutes later (CPU seconds track the wall clock, so the "
        "process is not waiting: the machine under it is slower). Each pair runs back to back, in alternating order; the summary gives the "
        "median of the pairs' ratios and, beside it, the ratio of the fastest runs of each kind (the least disturbed, which is why "
        "Python's `timeit` reports a minimum).",
        "",
        "| stream | records | run | off rec/s | on rec/s | on ÷ off | loe-ae on rec/s | loe-ae on ÷ off | alarms off / on / loe-ae on |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, runs in results.items():
        pairs = [r for r in runs if "off" in r]
        for i, r in enumerate(pairs, 1):
            lines.append(
                f"| {name} | {r['off']['records']:,} | {i} | {r['off']['records_per_s']:,.0f} | {r['on']['records_per_s']:,.0f} | "
                f"{r['on']['records_per_s'] / r['off']['records_per_s']:.2f}× | {r['loe_on']['records_per_s']:,.0f} | "
                f"{r['loe_on']['records_per_s'] / r['off']['records_per_s']:.2f}× | {r['off']['alarms']} / {r['on']['alarms']} / {r['loe_on']['alarms']} |"
            )
    lines += [
        "",
        "| stream | median off rec/s | median on rec/s | median on ÷ off | fastest on ÷ fastest off | stage share of the on run (profiled) | median loe-ae on rec/s | median loe-ae on ÷ off |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        pairs = [r for r in runs if "off" in r]
        prof = next(r["profiled"] for r in runs if "profiled" in r)
        ratio = statistics.median(r["on"]["records_per_s"] / r["off"]["records_per_s"] for r in pairs)
        fastest = max(r["on"]["records_per_s"] for r in pairs) / max(r["off"]["records_per_s"] for r in pairs)
        lines.append(
            f"| {name} | {statistics.median(r['off']['records_per_s'] for r in pairs):,.0f} | {statistics.median(r['on']['records_per_s'] for r in pairs):,.0f} | "
            f"**{ratio:.2f}×** | {fastest:.2f}× | {prof['stage_seconds'] / prof['seconds']:.0%} | {statistics.median(r['loe_on']['records_per_s'] for r in pairs):,.0f} | "
            f"{statistics.median(r['loe_on']['records_per_s'] / r['off']['records_per_s'] for r in pairs):.2f}× |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=200_000, help="demo records (default 200,000)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--streams", default="demo,skab")
    ap.add_argument("--skab-dir", type=Path, default=_skab_dir())
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for name in args.streams.split(","):
            path = d / f"{name}.csv"
            if name == "demo":
                write_demo(path, args.records)
                key = None
            elif name == "skab":
                try:
                    write_skab(path, args.skab_dir)
                except FileNotFoundError as e:
                    print(f"streamad: error: {e}", file=sys.stderr)
                    return 2
                key = "device"
            else:
                print(f"streamad: error: unknown stream {name!r} (demo, skab)", file=sys.stderr)
                return 2
            job = {"file": str(path), "key": key, "out": str(d / "detections.jsonl"), "profile": False}
            runs: list[dict[str, Any]] = []
            for i in range(args.repeats):
                # Alternate which runs first: a machine that slows down or speeds up over
                # a pair does not favour one side.
                order = ("off", "on") if i % 2 == 0 else ("on", "off")
                pair = {t: run({**job, "temporal": t}) for t in order}
                pair["loe_on"] = run({**job, "temporal": "on", "detector": "loe-ae"})
                print(
                    f"{name} run {i + 1}: off {pair['off']['records_per_s']:,.0f} rec/s, on {pair['on']['records_per_s']:,.0f}, loe-ae on {pair['loe_on']['records_per_s']:,.0f}",
                    file=sys.stderr,
                )
                runs.append(pair)
            runs.append({"profiled": run({**job, "temporal": "on", "profile": True})})
            results[name] = runs
    meta = {
        "command": "python -m benchmarks.temporal_throughput " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "machine": _machine(),
        "versions": _versions(),
    }
    text = render(results, meta)
    print(text)
    if not args.no_write:
        publish("temporal_throughput", text, {"meta": meta, "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
