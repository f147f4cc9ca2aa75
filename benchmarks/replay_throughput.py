"""Replay throughput (issues #2 and #3): records/s of the whole replay pipeline with
the default detector, beside river's HalfSpaceTrees behind MinMaxScaler and pysad's
LODA, each run one record at a time over the same records in the same run.

Reproduce benchmarks/results/replay_throughput.md from the repository root::

    python -m benchmarks.replay_throughput

Ours is what ``streamad replay FILE`` runs: MatSource → Pipeline (online scaler,
windows, default detector scoring then learning each window, SPOT threshold,
attribution of the alarms) → JSONL detections in a temporary file, flushed at the
end, with default settings. The peers are ``MinMaxScaler() | HalfSpaceTrees()`` at
river's defaults, ``score_one`` then ``learn_one`` per record, its input turned into
dicts before the clock starts, and pysad's ``LODA()`` at its defaults (seed 0),
``fit_partial`` then ``score_partial`` per record (as in the ODDS harness). Both stream every record of http.mat (567 498, in
file order; no 60 000 cap: this is a "full" run). Loading is excluded from both
clocks; one thread each (torch and BLAS), one after the other on an otherwise
unchanged machine. ``--repeats`` alternates the two that many times and reports
each run and the medians. Like the command, ours freezes the heap after its first
window (``gc.freeze``: the collector stops walking the imports' objects); the peers
run after it in the same process, so they run on the frozen heap too.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.odds import RESULTS, _commit, _default_data_dir, _machine, _versions, metrics, single_thread  # noqa: E402
from benchmarks.peers import Clock  # noqa: E402

#: the second streamad row: the default detector training on a quarter of the records
#: after its warm-up (every record is still scored)
FAST_PARAMS = {"train_share": 0.25}


def run_ours(path: Path, workdir: Path, params: dict[str, Any] | None = None) -> dict[str, Any]:
    from streamad.app.heap import SettleHeap
    from streamad.app.replay import Recorder, window_description
    from streamad.config import load_settings
    from streamad.connectors.odds import MatSource
    from streamad.connectors.sinks import JsonlSink
    from streamad.factory import detector_name
    from streamad.pipeline import Pipeline

    overrides: dict[str, Any] = {"output": {"detections": str(workdir / "detections.jsonl")}}
    if params:
        overrides["detector"] = {"params": params}
    settings = load_settings(None, overrides, env={})

    source = MatSource(path)  # loads the file: before the clock
    recorder = Recorder(Recorder.QUALITY)  # what replay keeps for its closing summary
    sink = JsonlSink(settings.output.detections)
    # SettleHeap: what the command adds (streamad/app/heap.py). It freezes the process's
    # heap after our first window, so the peers' loops that follow run without
    # collecting the imports' objects too.
    pipeline = Pipeline(settings, sink, feature_names=source.feature_names, observers=[recorder, SettleHeap()])
    with Clock() as clock:
        counts = pipeline.run(source)
        sink.close()
    seconds = clock.wall
    y = recorder.array("labels")
    scores = recorder.array("scores")
    auc, ap = metrics(y, scores)
    return {
        "records": counts.scored,
        "rejected": counts.rejected,
        "seconds": seconds,
        "records_per_s": counts.scored / seconds,
        "cpu_seconds": clock.cpu,
        "alarms": counts.alarms,
        "detections_written": sink.written,
        "detector": detector_name(settings),
        "window": window_description(settings),
        "threshold": f"{settings.threshold.kind} (risk {settings.threshold.risk})",
        "roc_auc": auc,
        "ap": ap,
    }


def run_river(X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from benchmarks.peers import river_hst

    scores, seconds, info = river_hst(X, seed=0)
    auc, ap = metrics(y, scores)
    return {"records": len(X), "seconds": seconds, "records_per_s": len(X) / seconds, "cpu_seconds": info["cpu_seconds"], "roc_auc": auc, "ap": ap}


def run_loda(X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from benchmarks.peers import pysad_loda

    scores, seconds, info = pysad_loda(X, seed=0)
    auc, ap = metrics(y, scores)
    return {"records": len(X), "seconds": seconds, "records_per_s": len(X) / seconds, "cpu_seconds": info["cpu_seconds"], "roc_auc": auc, "ap": ap}


PEERS = (("river", "river HST", run_river), ("loda", "pysad LODA", run_loda))


def render(rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    ours = [r["ours"] for r in rows]
    med = {k: statistics.median(r[k]["records_per_s"] for r in rows) for k in ("ours", "fast", *(p[0] for p in PEERS))}
    o = ours[0]
    lines = [
        "# Replay throughput (issues #2 and #3)",
        "",
        f"{meta['file']}: all {o['records']:,} records, file order (a full run, not the protocol's 60 000 cap). Loading excluded from both clocks.",
        "",
        f"- Machine: {meta['machine']}, {meta['cores']} cores; one thread (torch and BLAS), the two runs one after the other.",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}.",
        f"- Date: {meta['date']}; git commit {meta['commit']}.",
        f"- Command: `{meta['command']}`",
        "",
        f"- **streamad replay**: MatSource → Pipeline → JSONL file; detector `{o['detector']}` (the default), windows of {o['window']}, online scaler, "
        f"{o['threshold']} threshold, attribution of alarms, default settings.",
        "- **river**: `MinMaxScaler() | HalfSpaceTrees()` at river's defaults (seed 0), `score_one` then `learn_one`, one record at a time.",
        "- **pysad LODA**: `LODA()` at pysad's defaults, `fit_partial` then `score_partial`, one record at a time.",
        f"- **streamad, train_share {FAST_PARAMS['train_share']}**: the same, with the detector parameter `train_share: {FAST_PARAMS['train_share']}` "
        "(after the warm-up the network trains on that share of the records; every record is scored). Not the default.",
        "",
        "| run | streamad replay rec/s | river HST rec/s | pysad LODA rec/s | streamad ÷ river | streamad ÷ LODA "
        "| wall ÷ CPU seconds (streamad, river, LODA) | streamad, train_share rec/s | ÷ river | ÷ LODA |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for i, r in enumerate(rows, 1):
        o_, r_, l_, f_ = r["ours"], r["river"], r["loda"], r["fast"]
        lines.append(
            f"| {i} | {o_['records_per_s']:,.0f} | {r_['records_per_s']:,.0f} | {l_['records_per_s']:,.0f} | "
            f"{o_['records_per_s'] / r_['records_per_s']:.2f}× | {o_['records_per_s'] / l_['records_per_s']:.2f}× | "
            f"{o_['seconds'] / o_['cpu_seconds']:.2f}, {r_['seconds'] / r_['cpu_seconds']:.2f}, {l_['seconds'] / l_['cpu_seconds']:.2f} | "
            f"{f_['records_per_s']:,.0f} | {f_['records_per_s'] / r_['records_per_s']:.2f}× | {f_['records_per_s'] / l_['records_per_s']:.2f}× |"
        )
    if len(rows) > 1:
        lines.append(
            f"| **median** | **{med['ours']:,.0f}** | **{med['river']:,.0f}** | **{med['loda']:,.0f}** | "
            f"**{med['ours'] / med['river']:.2f}×** | **{med['ours'] / med['loda']:.2f}×** | | "
            f"**{med['fast']:,.0f}** | **{med['fast'] / med['river']:.2f}×** | **{med['fast'] / med['loda']:.2f}×** |"
        )
    lines += ["", "Wall ÷ CPU seconds near 1 means the run had its core to itself on this shared machine; above 1, it waited for one."]
    first = rows[0]
    lines += [
        "",
        f"streamad: {o['seconds']:.1f} s for {o['records']:,} records, {o['alarms']:,} alarms written as {o['detections_written']:,} JSON lines, {o['rejected']} rejected. "
        f"river: {first['river']['seconds']:.1f} s; LODA: {first['loda']['seconds']:.1f} s.",
        "",
        "For the record (file order, one pass, not protocol v1): ROC-AUC / AP "
        + ", ".join(
            f"{name} {first[k]['roc_auc']:.3f} / {first[k]['ap']:.3f}"
            for k, name in (("ours", "streamad"), ("fast", "streamad train_share"), ("river", "river"), ("loda", "LODA"))
        )
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.replay_throughput", description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", type=Path, default=_default_data_dir() / "http.mat")
    ap.add_argument("--repeats", type=int, default=3, help="alternate the runs this many times (default 3)")
    ap.add_argument("--out", type=Path, default=None, help="markdown result (default benchmarks/results/replay_throughput.md for http.mat)")
    args = ap.parse_args(argv)
    single_thread()
    from streamad.connectors.odds import load_mat

    X, y = load_mat(args.file)
    if y is None:
        raise SystemExit(f"{args.file} has no labels")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            row = {"ours": run_ours(args.file, Path(tmp)), "fast": run_ours(args.file, Path(tmp), FAST_PARAMS)}
            for key, _, run in PEERS:
                row[key] = run(X, y)
            rows.append(row)
            ours = row["ours"]
            print(
                f"run {i + 1}: streamad replay {ours['records_per_s']:,.0f} rec/s ({ours['records']:,} records, {ours['seconds']:.1f} s) | "
                + " | ".join(
                    f"{name} {row[key]['records_per_s']:,.0f} rec/s, ours ÷ it {ours['records_per_s'] / row[key]['records_per_s']:.2f}×" for key, name, _ in PEERS
                ),
                flush=True,
            )
    meta = {
        "file": args.file.name,
        "machine": _machine(),
        "cores": os.cpu_count(),
        "versions": _versions(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "command": "python -m benchmarks.replay_throughput " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out = args.out or (RESULTS / "replay_throughput.md" if args.file.name == "http.mat" else None)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(rows, meta))
        out.with_suffix(".json").write_text(json.dumps({**meta, "runs": rows}, indent=1))
        print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
