"""Where a replay's time goes (issue #13): the default pipeline on http.mat under
cProfile, its time split into the stages of a window.

Reproduce benchmarks/results/profile_replay.md (and .json) from the repository root::

    python -m benchmarks.profile_replay                 # the first 200,000 records
    python -m benchmarks.profile_replay --records 0     # every record

The replay is what ``benchmarks.replay_throughput`` times (MatSource → Pipeline →
JSONL detections), with one thread. cProfile adds a cost per Python call, so the
profiled run is slower than the timed one and stages made of many small calls look
heavier than they are; the shares are what to read, and the throughput benchmark
stays the measure of speed. Each stage is the cumulative time of the functions that
make it (a function counted once, where it is first met in the tree below); "other"
is the rest of the window loop (windowing, records, bookkeeping).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import cProfile  # noqa: E402
import datetime as dt  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks.odds import _commit, _default_data_dir, _machine, _versions, publish, single_thread  # noqa: E402

#: (stage, parent stage, [(file suffix, function name)]): a stage's time is the
#: cumulative time of its functions, less its child stages'.
STAGES: list[tuple[str, str | None, list[tuple[str, str]]]] = [
    ("window", None, [("streamad/pipeline.py", "_process_window")]),
    ("judge: scaling", "window", [("streamad/model.py", "_scale")]),
    ("judge: score (forward, Gaussian, combiner)", "window", [("streamad/detectors/neural.py", "score")]),
    ("learn", "window", [("streamad/model.py", "learn")]),
    ("learn: scaler and statistics", "learn", [("streamad/scaling.py", "moments"), ("streamad/scaling.py", "learn_moments")]),
    ("learn: network steps", "learn", [("streamad/learning/trainer.py", "_step")]),
    ("step: forward", "learn: network steps", [("streamad/learning/backbones.py", "forward_train")]),
    ("step: LOE labels", "learn: network steps", [("streamad/learning/trainer.py", "_labels")]),
    ("step: density head", "learn: network steps", [("streamad/learning/trainer.py", "_update_head")]),
    ("step: backward", "learn: network steps", [("streamad/learning/backbones.py", "gradients")]),
    ("step: optimiser", "learn: network steps", [("streamad/learning/adam.py", "step")]),
    ("step: histograms, Gaussian, replay memory", "learn: network steps", [("streamad/learning/trainer.py", "_absorb")]),
    ("learn: threshold", "learn", [("streamad/threshold.py", "update")]),
    ("attribution", "window", [("streamad/model.py", "explain")]),
    ("drift monitor", "window", [("streamad/drift/monitor.py", "update")]),
    ("detections: build and sink", "window", [("streamad/detection.py", "messages"), ("streamad/connectors/sinks.py", "write")]),
]


def _cumulative(stats: pstats.Stats, suffix: str, name: str) -> tuple[float, int]:
    total, calls = 0.0, 0
    for (filename, _line, func), (_cc, nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func == name and filename.replace(os.sep, "/").endswith(suffix):
            total += ct
            calls += nc
    return total, calls


def breakdown(stats: pstats.Stats, total_seconds: float, records: int) -> list[dict[str, Any]]:
    cum = {}
    for stage, _parent, funcs in STAGES:
        cum[stage] = sum(_cumulative(stats, s, n)[0] for s, n in funcs)
    rows = []
    for stage, parent, _funcs in STAGES:
        children = sum(cum[c] for c, p, _ in STAGES if p == stage)
        own = max(0.0, cum[stage] - children)
        rows.append({"stage": stage, "parent": parent, "seconds": cum[stage], "own_seconds": own, "share": cum[stage] / total_seconds, "us_per_record": 1e6 * cum[stage] / records})
    outside = total_seconds - cum["window"]
    rows.append(
        {"stage": "reading and windowing (outside the window)", "parent": None, "seconds": outside, "own_seconds": outside, "share": outside / total_seconds, "us_per_record": 1e6 * outside / records}
    )
    return rows


def run(path: Path, records: int, workdir: Path) -> tuple[pstats.Stats, float, int]:

    from streamad.config import load_settings
    from streamad.connectors.odds import MatSource
    from streamad.connectors.sinks import JsonlSink, NullSink
    from streamad.pipeline import Pipeline

    settings = load_settings(None, {"output": {"detections": str(workdir / "detections.jsonl")}}, env={})
    source = MatSource(path, limit=records or None)  # loaded before the profile
    sink = JsonlSink(settings.output.detections)
    pipeline = Pipeline(settings, sink, feature_names=source.feature_names)

    # A short replay first, unprofiled: the modules a pipeline imports as it goes (torch's
    # among them) load there, not in the stage that happens to import them.
    Pipeline(settings, NullSink(), feature_names=source.feature_names).run(MatSource(path, limit=2_000))
    prof = cProfile.Profile()

    t0 = time.perf_counter()
    prof.enable()
    counts = pipeline.run(source)
    sink.close()
    prof.disable()
    seconds = time.perf_counter() - t0
    return pstats.Stats(prof), seconds, int(counts.scored)


def render(rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    depth = {}
    for r in rows:
        depth[r["stage"]] = 0 if r["parent"] is None else depth[r["parent"]] + 1
    lines = [
        "# Where a replay's time goes (issue #13)",
        "",
        f"http.mat, the first {meta['records']:,} records in file order, default settings, one thread, under cProfile "
        f"({meta['seconds']:.1f} s profiled, {meta['records'] / meta['seconds']:,.0f} records/s under the profiler).",
        "",
        f"- Machine: {meta['machine']}. Versions: {meta['versions']}.",
        f"- Date: {meta['date']}; git commit {meta['commit']}.",
        f"- Command: `{meta['command']}`",
        "",
        "cProfile charges every Python call, so stages made of many small calls look heavier than they are; "
        "read the shares, and `benchmarks/results/replay_throughput.md` for the speed. A stage's time includes "
        "the stages indented under it; `own` is what is left after them.",
        "",
        "| stage | seconds | own seconds | share of the run | µs per record |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        pad = "&nbsp;&nbsp;&nbsp;&nbsp;" * depth[r["stage"]]
        lines.append(f"| {pad}{r['stage']} | {r['seconds']:.2f} | {r['own_seconds']:.2f} | {r['share']:.1%} | {r['us_per_record']:.2f} |")
    lines += ["", "Top functions by own time:", "", "| function | own seconds | calls |", "|---|---:|---:|"]
    for f in meta["top"]:
        lines.append(f"| `{f['function']}` | {f['own_seconds']:.2f} | {f['calls']:,} |")
    return "\n".join(lines) + "\n"


def top_functions(stats: pstats.Stats, n: int = 15) -> list[dict[str, Any]]:
    items = []
    for (filename, line, func), (_cc, nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = "/".join(Path(filename).parts[-2:]) if filename.startswith(("/", ".")) else filename
        items.append({"function": f"{short}:{line}({func})", "own_seconds": tt, "calls": nc})
    items.sort(key=lambda r: -r["own_seconds"])
    return items[:n]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=_default_data_dir() / "http.mat")
    ap.add_argument("--records", type=int, default=200_000, help="records from the start of the file (0: all)")
    ap.add_argument("--out", default="profile_replay", help="results name under benchmarks/results/")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    single_thread()
    with tempfile.TemporaryDirectory() as tmp:
        stats, seconds, records = run(args.data, args.records, Path(tmp))
    rows = breakdown(stats, seconds, records)
    meta = {
        "records": records,
        "seconds": seconds,
        "machine": _machine(),
        "versions": _versions(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "command": "python -m benchmarks.profile_replay " + " ".join(argv if argv is not None else sys.argv[1:]),
        "top": top_functions(stats),
    }
    text = render(rows, meta)
    print(text)
    if not args.no_write:
        publish(args.out, text, {"meta": meta, "stages": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
