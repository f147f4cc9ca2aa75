"""One record at a time, as a river user drives a detector: records/s of score-then-learn.

    python -m benchmarks.one_at_a_time [--file shuttle.mat] [--records 50000] [--repeats 3]

Each record is scored by the model as it was before it, then learned, one Python call
each, on the same records in the ODDS protocol's order (seed 0):

- streamad's ``Model()`` (online scaler → default detector → threshold), with
  ``score_one`` then ``learn_one`` on a NumPy row and on a dict; ``learn_one`` buffers
  records and learns them as mini-batches;
- river's ``HalfSpaceTrees`` behind ``MinMaxScaler`` (river's own recommendation),
  ``score_one`` then ``learn_one`` on a dict;
- pysad's LODA, ``fit_score_partial`` on a NumPy row (its docs' test-then-train call).

Then the same over a sensor stream (the demo's six sensors, as many records): streamad's
``Model(temporal=True)`` (the sensor default, a trimmed Gaussian per key, as a replay of
a timestamped file runs it; ``loe-ae`` with the stage before 2026-12-02's fifteenth
round), each record scored with its temporal context (the records ``learn_one`` holds
count in it), beside the two peers on the values alone.

Throughput counts the records after the warm-up (the first ``--warmup`` records, where
a young streamad model learns small batches often), median over the repeats, one thread.
Results go to benchmarks/results/one_at_a_time.md (and .json).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.odds import RESULTS, _commit, _default_data_dir, _machine, _versions, single_thread

Loop = Callable[[np.ndarray, int], float]
SENSOR_SEED = 1


def _timed(step: Callable[[Any], None], records: Sequence[Any], warmup: int) -> float:
    """Records/s of ``step`` over the records after the first ``warmup``."""
    for x in records[:warmup]:
        step(x)
    t0 = time.perf_counter()
    for x in records[warmup:]:
        step(x)
    return (len(records) - warmup) / (time.perf_counter() - t0)


def streamad_rows(X: np.ndarray, warmup: int) -> float:
    from streamad import Model

    model = Model()

    def step(x: np.ndarray) -> None:
        model.score_one(x)
        model.learn_one(x)

    return _timed(step, list(X), warmup)


def streamad_dicts(X: np.ndarray, warmup: int) -> float:
    from streamad import Model

    model = Model()
    names = [f"x{j}" for j in range(X.shape[1])]

    def step(x: dict[str, float]) -> None:
        model.score_one(x)
        model.learn_one(x)

    return _timed(step, [dict(zip(names, r)) for r in X.tolist()], warmup)


def river_hst(X: np.ndarray, warmup: int) -> float:
    from river import anomaly, compose, preprocessing

    model = compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=0))

    def step(x: dict[int, float]) -> None:
        model.score_one(x)
        model.learn_one(x)

    return _timed(step, [dict(enumerate(r)) for r in X.tolist()], warmup)


def pysad_loda(X: np.ndarray, warmup: int) -> float:
    from pysad.models import LODA

    model = LODA()
    return _timed(model.fit_score_partial, list(np.ascontiguousarray(X, dtype=np.float64)), warmup)


def streamad_temporal(X: np.ndarray, warmup: int) -> float:
    from streamad import Model

    model = Model(temporal=True)

    def step(x: np.ndarray) -> None:
        model.score_one(x)
        model.learn_one(x)

    return _timed(step, list(X), warmup)


LOOPS: list[tuple[str, str, Loop]] = [
    ("streamad_rows", "streamad Model (default detector), NumPy rows", streamad_rows),
    ("streamad_dicts", "streamad Model (default detector), dicts", streamad_dicts),
    ("river_hst", "river HalfSpaceTrees + MinMaxScaler, dicts", river_hst),
    ("pysad_loda", "pysad LODA, NumPy rows", pysad_loda),
]


#: the same loops over a sensor stream: the demo's six sensors, the temporal stage on
#: for streamad (its context from each record's past), the values alone for the peers
SENSOR_LOOPS: list[tuple[str, str, Loop]] = [
    ("sensor_streamad_temporal", "streamad Model(temporal=True): the sensor default, NumPy rows", streamad_temporal),
    ("sensor_river_hst", "river HalfSpaceTrees + MinMaxScaler, dicts (values only)", river_hst),
    ("sensor_pysad_loda", "pysad LODA, NumPy rows (values only)", pysad_loda),
]


def _table(med: Mapping[str, float], loops: Sequence[tuple[str, str, Loop]], ours: str) -> list[str]:
    lines = ["| loop | records/s | streamad ÷ it |", "|---|---:|---:|"]
    for key, title, _ in loops:
        lines.append(f"| {title} | {med[key]:,.0f} | {med[ours] / med[key]:.2f}× |")
    return lines


def render(runs: list[dict[str, float]], meta: dict[str, Any]) -> str:
    med = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    lines = [
        "# One record at a time: score, then learn",
        "",
        f"{meta['records']:,} records of {meta['file']} in the ODDS protocol's order (seed 0); records/s counted after the "
        f"first {meta['warmup']:,}; median of {len(runs)} alternating runs; one thread.",
        "",
        f"- Machine: {meta['machine']}, {meta['cores']} cores. Versions: "
        + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
        + ".",
        f"- Date: {meta['date']}; git commit {meta['commit']}.",
        f"- Command: `{meta['command']}`",
        "",
        *_table(med, LOOPS, "streamad_rows"),
        "",
        f"## A sensor stream: {meta['sensor_records']:,} records of the demo (seed {meta['sensor_seed']}, six sensors, rows with a"
        f" missing value left out), the first {meta['warmup']:,} as warm-up",
        "",
        "streamad with its temporal stage: each record's context (jumps, drift, a stuck value, ...) from the records before it,"
        " those `learn_one` holds included. The peers see the values alone.",
        "",
        *_table(med, SENSOR_LOOPS, "sensor_streamad_temporal"),
        "",
        "Runs: " + "; ".join(", ".join(f"{k} {v:,.0f}" for k, v in r.items()) for r in runs),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.one_at_a_time", description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", type=Path, default=_default_data_dir() / "shuttle.mat")
    ap.add_argument("--records", type=int, default=40_000)
    ap.add_argument("--warmup", type=int, default=4_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS / "one_at_a_time.md")
    args = ap.parse_args(argv)
    single_thread()
    from streamad.connectors.odds import load_mat

    X, _ = load_mat(args.file)
    X = X[np.random.default_rng(0).permutation(len(X))][: args.records]
    from streamad.app.demo import generate

    S = generate(n=args.records, seed=SENSOR_SEED, drift=False).X
    S = S[np.isfinite(S).all(axis=1)]
    runs = []
    for i in range(args.repeats):
        run = {key: loop(X, args.warmup) for key, _, loop in LOOPS}
        run |= {key: loop(S, args.warmup) for key, _, loop in SENSOR_LOOPS}
        runs.append(run)
        print(f"run {i + 1}: " + ", ".join(f"{key} {v:,.0f} rec/s" for key, v in run.items()), flush=True)
    meta = {
        "file": args.file.name,
        "records": len(X),
        "sensor_records": len(S),
        "sensor_seed": SENSOR_SEED,
        "warmup": args.warmup,
        "machine": _machine(),
        "cores": os.cpu_count(),
        "versions": _versions(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "command": "python -m benchmarks.one_at_a_time " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(runs, meta))
    args.out.with_suffix(".json").write_text(json.dumps({**meta, "runs": runs}, indent=1))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
