"""A new operating point that lasts: how long a device keeps alarming after it.

An operator changes a set point, a pump is re-valved, a sensor is recalibrated: one
sensor's level steps and stays. The step should be alarmed at once, and then, once it
has lasted, become the device's normal. How long that takes should not depend on how
much history the device has.

Streams: three sensors (a 500-record cycle of amplitudes 1, 0.5 and 0.2 plus noise of
sd 0.3, one record a second); at record ``at`` the second sensor steps by 3 or 10 noise
deviations and stays, for 20,000 more records. Steps at records 600, 2,000, 10,000 and
30,000; seeds 1-3.

- ours: the replay pipeline with default settings (the records have event times: the
  sensor default, with ``threshold.adopt_after`` 1,024);
- ours without adoption (``threshold.adopt_after: null``): what it did before;
- river HalfSpaceTrees (benchmarks/peers.py) over the same columns as ours (the values
  and the temporal stage's derived columns), under streamad's label-free threshold fed in
  the pipeline's windows, as in benchmarks/skab.py.

Per run: whether the step was alarmed (alarms among its first 100 records), the alarms
after it, the records until they settle (the first record after which 1,000 records
hold at most 5 alarms), and false alarms per 1,000 records before it (after record 1,000).

The horizon trades against faults that last: SKAB's 34 files (faults of 188-586 rows),
scored as benchmarks/skab.py scores them, at ``adopt_after`` 256, 512, 1,024 and null.

Reproduce benchmarks/results/set_points.md (and .json)::

    python -m benchmarks.set_points
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchmarks.odds import publish, run_meta, single_thread

STEPS_AT = (600, 2_000, 10_000, 30_000)
SIZES = (3.0, 10.0)
SEEDS = (1, 2, 3)
AFTER = 20_000
#: ``threshold.adopt_after`` values of the SKAB rows
HORIZONS: tuple[int | None, ...] = (256, 512, 1024, None)
CONTENDERS = {"streamad": {}, "streamad, no adoption": {"threshold": {"adopt_after": None}}, "river HST": None}
SETTLED = (1_000, 5)  # records, alarms at most


def stream(at: int, size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Records and event times: the step of ``size`` noise deviations at ``at``."""
    n = at + AFTER
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    X = np.sin(2 * np.pi * t / 500)[:, None] * [1.0, 0.5, 0.2] + rng.normal(scale=0.3, size=(n, 3))
    X[at:, 1] += size * 0.3
    return X, 1_767_225_600.0 + t


def settle(alarms: np.ndarray, at: int) -> int:
    """Records after ``at`` until the first stretch of ``SETTLED[0]`` with at most
    ``SETTLED[1]`` alarms begins (the stream's length after it: never)."""
    span, most = SETTLED
    post = alarms[at:].astype(np.int64)
    counts = np.convolve(post, np.ones(span, dtype=np.int64), mode="valid")
    quiet = np.flatnonzero(counts <= most)
    return int(quiet[0]) if len(quiet) else len(post)


def run_step(job: Mapping[str, Any]) -> dict[str, Any]:
    single_thread()
    from benchmarks.peers import river_hst
    from benchmarks.skab import in_order, temporal_columns, threshold_alarms

    at, size, seed = job["at"], job["size"], job["seed"]
    X, ts = stream(at, size, seed)
    out: dict[str, Any] = {"at": at, "size": size, "seed": seed}
    for label, overrides in CONTENDERS.items():
        if overrides is None:
            s = np.asarray(river_hst(temporal_columns(X, ts), seed)[0], dtype=np.float64)
            alarms = threshold_alarms(np.nan_to_num(s, nan=0.0))
        else:
            alarms = in_order(X, overrides, ts)[1]
        before = alarms[1_000:at]
        out[label] = {
            "caught": int(alarms[at : at + 100].sum()),
            "after": int(alarms[at:].sum()),
            "settle": settle(alarms, at),
            "false_per_1000": 1_000 * float(before.mean()) if len(before) else float("nan"),
        }
    return out


def run_skab(job: Mapping[str, Any]) -> dict[str, Any]:
    single_thread()
    from pathlib import Path

    from benchmarks.sensor_streams import _read_csv
    from benchmarks.skab import counts, in_order

    X, y, ts = _read_csv(Path(job["path"]))
    return {"file": job["path"], **{str(h): counts(y, *in_order(X, {"threshold": {"adopt_after": h}}, ts)) for h in HORIZONS}}


def summarize(steps: Sequence[Mapping[str, Any]], skab: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    rows = []
    for at in STEPS_AT:
        for size in SIZES:
            runs = [r for r in steps if r["at"] == at and r["size"] == size]
            row: dict[str, Any] = {"at": at, "size": size, "runs": len(runs)}
            for label in CONTENDERS:
                cells = [r[label] for r in runs]
                row[label] = {
                    "caught": sum(c["caught"] > 0 for c in cells),
                    "after": float(np.median([c["after"] for c in cells])),
                    "settle": float(np.median([c["settle"] for c in cells])),
                    "false_per_1000": float(np.mean([c["false_per_1000"] for c in cells])),
                }
            rows.append(row)
    from benchmarks.skab import totals

    return {"steps": rows, "skab": {str(h): totals(skab, str(h)) for h in HORIZONS}}


def render(table: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    ours, before, river = "streamad", "streamad, no adoption", "river HST"
    lines = [
        "# A new operating point that lasts",
        "",
        "Produced by `benchmarks/set_points.py` (its docstring says what is run and how it is scored).",
        "",
        f"- Date: {meta['date']}; git commit {meta['commit']}.",
        f"- Machine: {meta['machine']}.",
        f"- Command: `{meta['command']}`",
        "",
        "Caught: runs (of 3 seeds) with an alarm among the step's first 100 records. Alarms after the step and records until they "
        f"settle (the first {SETTLED[0]:,} records with at most {SETTLED[1]} alarms begin): medians over the seeds. False: alarms per "
        "1,000 records before the step (from record 1,000; the target rate is 1), mean over the seeds. Ratio: how many times longer "
        "streamad without adoption took to settle than with it. river HST never alarmed for long: it misses most steps.",
        "",
        "| step at | size (noise sd) | caught: streamad / river | alarms after: streamad / no adoption / river "
        "| settles after: streamad / no adoption | no adoption ÷ streamad | false: streamad / river |",
        "|---:|---:|---|---|---|---:|---|",
    ]

    def false(row: Mapping[str, Any], label: str) -> str:
        v = row[label]["false_per_1000"]
        return "–" if v != v else f"{v:.2f}"

    for row in table["steps"]:
        o, b, r = row[ours], row[before], row[river]
        lines.append(
            f"| {row['at']:,} | {row['size']:g} | {o['caught']}/{row['runs']} / {r['caught']}/{row['runs']} "
            f"| {o['after']:,.0f} / {b['after']:,.0f} / {r['after']:,.0f} | {o['settle']:,.0f} / {b['settle']:,.0f} "
            f"| {b['settle'] / max(1.0, o['settle']):.1f}× | {false(row, ours)} / {false(row, river)} |"
        )
    lines += [
        "",
        "## The horizon against faults that last (SKAB's 34 files, scored as `skab.md`)",
        "",
        "| `threshold.adopt_after` | F1 | FAR | MAR |",
        "|---|---:|---:|---:|",
    ]
    for h, c in table["skab"].items():
        name = "null (no adoption)" if h == "None" else f"{int(h):,}" + (" (the default)" if h == "1024" else "")
        lines.append(f"| {name} | {c['f1']:.3f} | {100 * c['far']:.2f}% | {100 * c['mar']:.2f}% |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks.sensor_streams import SKAB_DIRS, _skab_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print the table, write nothing")
    args = ap.parse_args(argv)
    jobs = [{"at": at, "size": size, "seed": seed} for at in STEPS_AT for size in SIZES for seed in SEEDS]
    files = [{"path": str(p)} for d in SKAB_DIRS for p in sorted((_skab_dir() / d).glob("*.csv"))]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        steps = pool.map(run_step, jobs, chunksize=1)
        skab = pool.map(run_skab, files, chunksize=1)
    table = summarize(steps, skab)
    meta = run_meta("benchmarks.set_points", argv)
    text = render(table, meta)
    print(text)
    if not args.no_write:
        publish("set_points", text, {"meta": meta, "table": table, "steps": steps, "skab": skab})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
