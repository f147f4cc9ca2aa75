"""Many devices in one stream: SKAB's 35 runs as one multi-device stream, key = the file.

Reproduce benchmarks/results/hgad_devices.md (and .json: SKAB's table, then the demo's)
from the repository root::

    python -m benchmarks.hgad_devices

Quick loops (printed, nothing written)::

    python -m benchmarks.hgad_devices --stream skab --detectors hgad,hst --temporal off --no-write
    python -m benchmarks.hgad_devices --stream demo --detectors hgad --param hgad:mi_weight=10 --no-write

Importance weights and LAMP on streams with a minority normal pattern (issue part 4;
benchmarks/results/hgad_devices.minority.md)::

    python -m benchmarks.hgad_devices --study minority

The stream: every experiment file of SKAB (valve1, valve2, other: 34 files) and the
anomaly-free run, each a device; features are the 8 sensor columns, the key is the
file. ``--order round-robin`` (default) interleaves them as devices running side by
side: the i-th record of every file, in file order, then the (i+1)-th (all are 1 Hz
recordings, so this is the order of time since each run started; the anomaly-free run
is eight times longer and streams alone at the end). ``--order timestamp`` merges them
by their own timestamps: the runs were recorded one after another, so that stream is
mostly one device at a time.

Each row runs the pipeline's lane model (``streamad.model.Model``: online scaler →
detector → SPOT threshold, the detector's preferred scaler, default settings) window by
window, as a pipeline lane does: windows of 256 records; the window judged by the
model as it was before it (its alarms are the model's own), then learned. Every row
gets the records' keys and event times; a detector that ignores keys never sees them.
``--temporal off|on|both`` (default both) runs every row without, and with, the
temporal stage (``features.temporal``: per-key jumps, drift, volatility, run lengths,
gaps; what ``auto`` gives a replay of these timestamped CSVs). Rows:

- ``streamad default``: what a replay of these files runs with default settings
  (``Model.from_settings``): with the temporal stage the sensor default (a Gaussian per
  key, ``per-key``, in windows of 32), without it ``loe-ae`` (windows of 256);
- ``one trimmed gaussian for all keys``: the sensor default before it kept one per key
  (2026-12-02), in this table's windows;
- ``hgad``: one model, keys as classes (streamad/detectors/hgad.py);
- ``loe-ae per key``: one model (scaler, default detector, threshold) per key, each
  fed its key's records of every window;
- ``loe-ae``: one model ignoring keys (the default on streams with event times until 2026-12-02);
- ``flow, one Gaussian``: hgad with one class and one centre (keys ignored): the
  single-Gaussian flow that falls into HGAD's "homogeneous mapping";
- ``flow, one class``: the same flow with one class of ``centres_per_class`` centres
  (keys ignored): what the mixture alone buys, without keys;
- ``hgad, model learns every record`` and ``loe-ae per key, model learns every
  record`` (temporal stage off only): the same with the lane model learning every record
  (``streamad.model.FLAGGED_EVERY = 1`` in that row's process), as it did before it
  learned one in ten of the records it alarmed on;
- ``river HST``: river's HalfSpaceTrees behind the online min-max scaler;
- ``gaussian`` (and, on request, ``gaussian per key``: a lane model per key): the online
  Mahalanobis detector, for context;
- ``per-key``: the ``per-key`` detector (streamad/detectors/per_key.py) in one lane
  model: a Gaussian per key at its defaults (trimmed at the 95% quantile, scoring from
  its first windows), one threshold for all keys, no online scaler (its preferred).

``--stream demo`` runs the same rows on the demo's sensors (streamad/app/demo.py) as
four pumps in different operating regimes, one of them rare (one record for every ten of
the others'), interleaved by event time; its table adds the alarms raised on the rare
pump's normal records.

Metrics, for every detector alike: ROC-AUC and AP (scikit-learn) over every record
after the first 512 of its key (a young model's warm-up output says nothing); the
model's alarms, precision / recall / F1 over the same records; records/s and
µs/record of the whole loop (temporal stage, scaling, scoring, learning, threshold);
peak resident memory of the process running it, and its growth over the process
after the data and the libraries were loaded. Each row runs in a fresh process, one
thread. Labels meet the scores only here; nothing is tuned per file.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import multiprocessing as mp
import resource
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.odds import RESULTS, _commit, _machine, single_thread

SKAB_DIRS = ("valve1", "valve2", "other")
FEATURES = (
    "Accelerometer1RMS", "Accelerometer2RMS", "Current", "Pressure", "Temperature", "Thermocouple", "Voltage", "Volume Flow RateRMS",
)  # fmt: skip
WINDOW = 256
BURN_IN = 512  # records of each key left out of the metrics


def skab_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    for cand in (here.parent / "shared" / "datasets" / "skab", here.parent.parent / "shared" / "datasets" / "skab"):
        if cand.is_dir():
            return cand
    return here.parent / "shared" / "datasets" / "skab"


@dataclass
class Stream:
    X: np.ndarray  # n × features, raw
    y: np.ndarray  # 0/1
    keys: list[str]
    index: np.ndarray  # position of each record within its key
    t: np.ndarray  # event time, seconds
    files: list[str] = field(default_factory=list)
    rare: str | None = None  # the rare device of the demo


def load_stream(root: Path, order: str = "round-robin") -> Stream:
    """The SKAB runs as one stream of devices (see the module docstring)."""
    import pandas as pd

    paths = [p for d in SKAB_DIRS for p in sorted((root / d).glob("*.csv"), key=lambda p: int(p.stem))]
    paths.append(root / "anomaly-free" / "anomaly-free.csv")
    parts = []
    for f, path in enumerate(paths):
        df = pd.read_csv(path, sep=";")
        n = len(df)
        y = df["anomaly"].to_numpy(dtype=np.int8) if "anomaly" in df else np.zeros(n, dtype=np.int8)
        t = pd.to_datetime(df["datetime"]).astype("int64").to_numpy() // 10**9
        parts.append((f, f"{path.parent.name}/{path.name}", df[list(FEATURES)].to_numpy(dtype=np.float64), y, t))
    return interleave(parts, order)


def interleave(parts: Sequence[tuple[int, str, np.ndarray, np.ndarray, np.ndarray]], order: str) -> Stream:
    """One stream of the devices ``parts`` (index, key, X, y, event times), in
    ``order``: ``round-robin`` (the i-th record of every device, then the next) or
    ``timestamp`` (by event time); ties by device order."""
    rows = []
    for f, _, X, _, t in parts:
        pos = np.arange(len(X))
        when = pos if order == "round-robin" else t
        rows.append(np.c_[when, np.full(len(X), f), pos])
    allrows = np.concatenate(rows)
    order_idx = np.lexsort((allrows[:, 1], allrows[:, 0]))  # by time, ties by device order
    fi, pi = allrows[order_idx, 1].astype(int), allrows[order_idx, 2].astype(int)
    X = np.empty((len(fi), parts[0][2].shape[1]))
    y = np.empty(len(fi), dtype=np.int8)
    t = np.empty(len(fi), dtype=np.float64)
    for f, _, Xf, yf, tf in parts:
        m = fi == f
        X[m], y[m], t[m] = Xf[pi[m]], yf[pi[m]], tf[pi[m]]
    names = [p[1] for p in parts]
    return Stream(X, y, [names[f] for f in fi], pi, t, names)


#: The demo's pumps: each one's operating regime, as an offset of every feature in units
#: of the feature's spread, and its share of records (the rare pump: one for ten).
DEMO_REGIMES = {
    "pump-1": ((0.0, 0.0, 0.0, 0.0, 0.0, 0.0), 1.0),
    "pump-2": ((4.0, 4.0, 4.0, 0.0, 4.0, -3.0), 1.0),
    "pump-3": ((-4.0, -4.0, 0.0, 4.0, -4.0, 3.0), 1.0),
    "pump-rare": ((4.0, -4.0, 4.0, -4.0, 0.0, 0.0), 0.1),
}
DEMO_RECORDS = 12_000  # per pump of share 1


def demo_stream(order: str = "timestamp") -> Stream:
    """The demo's sensors as four pumps in different regimes, one rare (see the module
    docstring): each pump its own run of ``streamad.app.demo.generate`` (its own seed,
    drift and planted anomalies), shifted to its regime; the rare pump reports every
    ten seconds, the others every second."""
    from streamad.app.demo import generate

    parts = []
    for f, (name, (offset, share)) in enumerate(DEMO_REGIMES.items()):
        n = int(DEMO_RECORDS * share)
        d = generate(n=n, seed=11 + f)
        X = np.asarray(d.X, dtype=np.float64)
        X = X + np.asarray(offset) * np.nanstd(X[: n // 4], axis=0)
        t = np.arange(n, dtype=np.float64) / share
        ok = np.isfinite(X).all(axis=1)  # the demo's sensor dropouts: a pipeline rejects them
        parts.append((f, name, X[ok], np.asarray(d.y, dtype=np.int8)[ok], t[ok]))
    s = interleave(parts, order)
    s.rare = "pump-rare"
    return s


def get_stream(kind: str, root: Path, order: str) -> Stream:
    return demo_stream() if kind == "demo" else load_stream(root, order)


# -- the rows: the lane model, window by window -----------------------------------------


class Runner:
    """One row of the table: judges a window (state before it), then learns it."""

    def windows(self, keys: np.ndarray) -> list[slice]:
        """The windows the stream is cut into: ``WINDOW`` records each."""
        n = len(keys)
        return [slice(i, min(i + WINDOW, n)) for i in range(0, n, WINDOW)]

    def step(self, X: np.ndarray, keys: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class Single(Runner):
    """One lane model for the whole stream (keys go where the model sends them: the
    temporal stage, and a detector that uses them)."""

    def __init__(self, name: str, params: Mapping[str, Any], temporal: bool, scaler: str = "auto") -> None:
        from streamad.detectors import make_detector
        from streamad.model import Model

        self.model = Model(make_detector(name, **params), scaler=scaler, temporal=temporal)

    def step(self, X: np.ndarray, keys: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        verdict, _ = self.model.process(X, keys, t)
        return verdict.scores, verdict.alarms


class Default(Single):
    """What a replay of these timestamped records runs with default settings: the lane
    model ``Model.from_settings`` makes (with the temporal stage the sensor default, a
    Gaussian per key in windows of up to 32 records of a key and 256 in all; without it
    ``loe-ae`` in windows of 256), in the windows a replay cuts (``WindowBuffer``)."""

    def __init__(self, params: Mapping[str, Any], temporal: bool) -> None:
        from streamad.config import load_settings
        from streamad.factory import for_stream
        from streamad.model import Model

        over = {"detector": {"seed": params["seed"]}} if "seed" in params else {}
        settings = for_stream(load_settings(overrides=over, env={}), temporal)
        self.model = Model.from_settings(settings, temporal=temporal)
        self.window = settings.window

    def windows(self, keys: np.ndarray) -> list[slice]:
        from streamad.records import Batch, Lane
        from streamad.window import WindowBuffer

        w = self.window
        buf = WindowBuffer(w.size, initial_size=w.initial_size, max_records=w.max_records)
        cut = buf.add(Batch(Lane("devices"), np.zeros((len(keys), 0)), np.arange(len(keys)), keys=keys))
        if len(buf):
            cut.append(buf.flush())
        return [slice(int(b.offsets[0]), int(b.offsets[-1]) + 1) for b in cut]


class PerKey(Runner):
    """One lane model per key, each fed its key's records of the window."""

    def __init__(self, name: str, params: Mapping[str, Any], temporal: bool) -> None:
        self.make = lambda: Single(name, params, temporal)
        self.models: dict[str, Single] = {}

    def step(self, X: np.ndarray, keys: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s, a = np.empty(len(X)), np.zeros(len(X), dtype=bool)
        for k in dict.fromkeys(keys.tolist()):
            m = keys == k
            model = self.models.get(k) or self.models.setdefault(k, self.make())
            s[m], a[m] = model.step(X[m], keys[m], t[m])
        return s, a


@dataclass(frozen=True)
class Spec:
    label: str
    kind: str  # single | per-key
    detector: str
    params: dict[str, Any] = field(default_factory=dict)
    #: the lane model learns every record, alarmed or not (as before the model learned
    #: one in ten alarmed records); rows with it run with the temporal stage off only
    learn_all: bool = False
    scaler: str = "auto"  # the lane model's online scaler (auto: the detector's preferred)

    def runner(self, temporal: bool) -> Runner:
        if self.kind == "default":
            return Default(self.params, temporal)
        if self.kind == "per-key":
            return PerKey(self.detector, self.params, temporal)
        return Single(self.detector, self.params, temporal, self.scaler)


SPECS: dict[str, Spec] = {
    "default": Spec("streamad default (as a replay runs it)", "default", "default"),
    "hgad": Spec("hgad", "single", "hgad"),
    "loe-ae-per-key": Spec("loe-ae per key", "per-key", "loe-ae"),
    "loe-ae": Spec("loe-ae (keys ignored: the tables' default)", "single", "loe-ae"),
    "flow-1g": Spec("flow, one Gaussian (keys ignored)", "single", "hgad", {"max_classes": 1, "centres_per_class": 1}),
    "flow-1c": Spec("flow, one class (keys ignored)", "single", "hgad", {"max_classes": 1}),
    "hgad-learn-all": Spec("hgad, model learns every record", "single", "hgad", learn_all=True),
    "loe-ae-per-key-learn-all": Spec("loe-ae per key, model learns every record", "per-key", "loe-ae", learn_all=True),
    "hst": Spec("river HST", "single", "river-hst"),
    "gaussian": Spec("gaussian (keys ignored)", "single", "gaussian"),
    "sensor-gaussian": Spec(
        "one trimmed gaussian for all keys (the sensor default of 2026-12-02, in windows of 256)", "single", "gaussian", {"trim": 0.95, "early": True}, scaler="none"
    ),
    "gaussian-per-key": Spec("gaussian per key", "per-key", "gaussian"),
    "per-key": Spec("per-key (a trimmed gaussian per key, one lane model)", "single", "per-key"),
}
DEFAULT = ("default", "per-key", "sensor-gaussian", "hgad", "loe-ae-per-key", "loe-ae", "flow-1g", "flow-1c", "hst", "gaussian", "hgad-learn-all", "loe-ae-per-key-learn-all")


def _rss_mb() -> float:
    # Linux: ru_maxrss in KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return float("nan")


def run_one(spec: Spec, stream_kind: str, order: str, root: str, temporal: bool) -> dict[str, Any]:
    """One row over the whole stream, in this process."""
    single_thread()
    from streamad.learning.runtime import import_torch

    import_torch()  # every row pays for torch alike: memory is measured above it
    if spec.learn_all:
        import streamad.model

        streamad.model.FLAGGED_EVERY = 1  # this process only
    stream = get_stream(stream_kind, Path(root), order)
    keys = np.asarray(stream.keys, dtype=object)
    runner = spec.runner(temporal)
    base_rss = _current_rss_mb()
    n = len(stream.X)
    scores = np.empty(n)
    alarms = np.zeros(n, dtype=bool)
    cut = runner.windows(keys)
    t0, c0 = time.perf_counter(), time.process_time()
    for sl in cut:
        scores[sl], alarms[sl] = runner.step(stream.X[sl], keys[sl], stream.t[sl])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "scores": scores.tolist(),
        "alarms": alarms.tolist(),
        "seconds": wall,
        "cpu_seconds": cpu,
        "records_per_s": n / wall,
        "us_per_record": 1e6 * cpu / n,
        "peak_rss_mb": _rss_mb(),
        "rss_growth_mb": _rss_mb() - base_rss,
    }


def _job(conn: Any, *args: Any) -> None:
    try:
        conn.send(run_one(*args))
    except BaseException as e:  # reported by the parent
        import traceback

        conn.send({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
    finally:
        conn.close()


def run_isolated(spec: Spec, stream_kind: str, order: str, root: Path, temporal: bool) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_job, args=(child, spec, stream_kind, order, str(root), temporal))
    p.start()
    child.close()
    out = parent.recv()
    p.join()
    return out


def evaluate(stream: Stream, scores: np.ndarray, alarms: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    m = stream.index >= BURN_IN
    y, s, a = stream.y[m], scores[m], alarms[m]
    tp = int((a & (y == 1)).sum())
    prec = tp / a.sum() if a.sum() else float("nan")
    rec = tp / (y == 1).sum()
    f1 = 2 * prec * rec / (prec + rec) if a.sum() and (prec + rec) > 0 else 0.0
    out = {
        "roc_auc": float(roc_auc_score(y, s)),
        "ap": float(average_precision_score(y, s)),
        "alarms": int(a.sum()),
        "false_alarms": int((a & (y == 0)).sum()),
        "precision": float(prec),
        "recall": float(rec),
        "f1": float(f1),
        "records": int(m.sum()),
        "anomalous": int(y.sum()),
    }
    if stream.rare is not None:
        r = m & (np.asarray(stream.keys, dtype=object) == stream.rare)
        normal = r & (stream.y == 0)
        out["rare_false_alarms"] = int((alarms & normal).sum())
        out["rare_normal"] = int(normal.sum())
        out["rare_auc"] = float(roc_auc_score(stream.y[r], scores[r])) if 0 < stream.y[r].sum() < r.sum() else float("nan")
    return out


def per_key_auc(stream: Stream, scores: np.ndarray) -> float:
    """Mean ROC-AUC within each key (keys whose scored records hold both classes)."""
    from sklearn.metrics import roc_auc_score

    keys = np.asarray(stream.keys, dtype=object)
    out = []
    for k in stream.files:
        m = (keys == k) & (stream.index >= BURN_IN)
        if 0 < stream.y[m].sum() < m.sum():
            out.append(roc_auc_score(stream.y[m], scores[m]))
    return float(np.mean(out))


def render(rows: Sequence[dict[str, Any]], meta: Mapping[str, Any]) -> str:
    demo = meta["stream"] == "demo"
    if demo:
        what = (
            f"## The demo's pumps in {meta['n_keys']} operating regimes, one rare\n\n"
            f"{meta['n_records']:,} records: four runs of the demo generator (streamad/app/demo.py, seeds 11-14: drift, "
            "a stuck sensor, level shifts, spikes), each shifted to its pump's regime (offsets of 3-4 spreads per feature, "
            "`DEMO_REGIMES`); pump-rare reports every 10 s, the others every second (pump-rare: "
            f"{meta['n_rare']:,} records), interleaved by event time."
        )
    else:
        what = (
            "# Many devices in one stream: SKAB, key = the file\n\n"
            f"{meta['n_keys']} devices (SKAB's 34 experiment runs and the anomaly-free run), {meta['n_records']:,} records, "
            f"interleaved {meta['order']}."
        )
    lines = [
        what,
        "",
        f"Generated by `{meta['command']}` on {meta['date']}, commit {meta['commit']}, {meta['machine']}.",
        "",
        f"Each row: the pipeline's lane model (scaler → detector → SPOT threshold, default settings) over windows of {WINDOW} "
        "(the first row: of the replay's size, 32 with the temporal stage), "
        "judge then learn; the alarms are the model's own. **temporal**: the temporal stage (`features.temporal`) off, or on "
        "(what `auto` gives a replay of timestamped records). Metrics over the "
        f"{meta['n_scored']:,} records after the first {BURN_IN} of each key ({meta['n_anomalous']:,} labelled anomalous). "
        f"Seeds {', '.join(map(str, meta['seeds']))} for every row but the (deterministic) Gaussian's: each figure is the mean "
        "over seeds, ROC-AUC with its range. records/s: wall clock of the whole loop; µs/record: its CPU time per record, one thread; memory: peak resident set "
        "of the process running the row, and its growth over the process with the data and torch loaded.",
        "",
    ]
    head = "| detector | temporal | ROC-AUC | AP | per-key AUC (mean) | alarms | precision | recall | F1 |"
    if demo:
        head += " rare pump: AUC | rare pump: false alarms |"
    head += " records/s | µs/record | peak RSS MB | growth MB |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | {r['temporal']} | error: {r['error']} |")
            continue
        p = "–" if r["precision"] != r["precision"] else f"{r['precision']:.3f}"
        by = r.get("roc_auc_by_seed") or [r["roc_auc"]]
        auc = f"{r['roc_auc']:.3f}" + (f" ({min(by):.3f}–{max(by):.3f})" if len(by) > 1 else "")
        line = f"| {r['label']} | {r['temporal']} | {auc} | {r['ap']:.3f} | {r['per_key_auc']:.3f} | {r['alarms']:.0f} | {p} | {r['recall']:.3f} | {r['f1']:.3f} |"
        if demo:
            line += f" {r['rare_auc']:.3f} | {r['rare_false_alarms']:.1f} of {r['rare_normal']:,.0f} |"
        line += f" {r['records_per_s']:,.0f} | {r['us_per_record']:.0f} | {r['peak_rss_mb']:.0f} | {r['rss_growth_mb']:.0f} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def run_stream(kind: str, specs: Mapping[str, Spec], args: argparse.Namespace, command: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every row of ``specs`` over stream ``kind``, with the temporal stage as asked."""
    stream = get_stream(kind, args.data_dir, args.order)
    m = stream.index >= BURN_IN
    temporals = {"off": (False,), "on": (True,), "both": (False, True)}[args.temporal]
    rows = []
    for temporal in temporals:
        for name, spec in specs.items():
            if spec.learn_all and temporal:
                continue
            row: dict[str, Any] = {
                "name": name, "label": spec.label, "detector": spec.detector, "kind": spec.kind, "params": spec.params,
                "temporal": "on" if temporal else "off",
            }  # fmt: skip
            # The Gaussian is deterministic: one run; the others once per seed, averaged.
            seeds = [None] if spec.detector == "gaussian" else (args.seeds if kind == "skab" else args.demo_seeds)
            runs = []
            for seed in seeds:
                seeded = spec if seed is None else dataclasses.replace(spec, params={**spec.params, "seed": seed})
                out = run_isolated(seeded, kind, args.order, args.data_dir, temporal)
                if "error" in out:
                    print(out["traceback"], file=sys.stderr)
                    row["error"] = out["error"]
                    break
                scores, alarms = np.asarray(out.pop("scores")), np.asarray(out.pop("alarms"), dtype=bool)
                runs.append({**evaluate(stream, scores, alarms), "per_key_auc": per_key_auc(stream, scores), **out})
            if "error" not in row:
                row.update({k: float(np.mean([r[k] for r in runs])) for k in runs[0]})
                row["seeds"] = [s for s in seeds if s is not None]
                row["roc_auc_by_seed"] = [r["roc_auc"] for r in runs]
                print(
                    f"{spec.label} (temporal {row['temporal']}): AUC {row['roc_auc']:.3f} AP {row['ap']:.3f} per-key AUC {row['per_key_auc']:.3f} "
                    f"F1 {row['f1']:.3f} ({row['alarms']:.0f} alarms) {row['records_per_s']:,.0f} rec/s {row['us_per_record']:.0f} µs/rec "
                    f"peak {row['peak_rss_mb']:.0f} MB" + (f" rare FA {row['rare_false_alarms']}" if "rare_false_alarms" in row else ""),
                    file=sys.stderr,
                    flush=True,
                )
            rows.append(row)
    meta = {
        "command": command,
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _commit(),
        "machine": _machine(),
        "stream": kind,
        "order": args.order if kind == "skab" else "timestamp",
        "n_keys": len(stream.files),
        "n_records": len(stream.X),
        "n_scored": int(m.sum()),
        "n_anomalous": int(stream.y[m].sum()),
        "n_rare": int(sum(k == stream.rare for k in stream.keys)) if stream.rare else 0,
        "window": WINDOW,
        "burn_in": BURN_IN,
        "seeds": args.seeds if kind == "skab" else args.demo_seeds,
    }
    return rows, meta


# -- importance weights and LAMP where they are meant to help (issue part 4) -------------

#: The study's rows: detector, parameters.
MINORITY_ROWS: dict[str, tuple[str, dict[str, Any]]] = {
    "loe-ae": ("loe-ae", {}),
    "loe-ae, weights": ("loe-ae", {"weights": True}),
    "loe-ae, LAMP power": ("loe-ae", {"lamp": "power"}),
    "loe-ae, LAMP exp": ("loe-ae", {"lamp": "exp"}),
    "loe-ae, weights + LAMP power": ("loe-ae", {"weights": True, "lamp": "power"}),
    "hgad": ("hgad", {}),
    "hgad, weights": ("hgad", {"weights": True}),
}
MINORITY_OFFSET = (4.0, -4.0, 4.0, -4.0, 0.0, 0.0)  # the minority regime, in spreads of each feature


def two_regimes(n: int = 24_000, block: int = 60, every: int = 1200, seed: int = 21) -> tuple[Stream, np.ndarray]:
    """One pump with two normal operating regimes at 20:1: a run of the demo generator
    whose records ``block`` out of every ``every`` are shifted to the minority regime.
    Returns the stream and the mask of its minority records."""
    from streamad.app.demo import generate

    d = generate(n=n, seed=seed)
    X, y = np.asarray(d.X, dtype=np.float64), np.asarray(d.y, dtype=np.int8)
    minority = (np.arange(n) % every) >= every - block
    X = X + np.outer(minority, np.asarray(MINORITY_OFFSET) * np.nanstd(X[: n // 4], axis=0))
    ok = np.isfinite(X).all(axis=1)
    X, y, minority = X[ok], y[ok], minority[ok]
    return Stream(X, y, ["pump"] * len(X), np.arange(len(X)), np.arange(len(X), dtype=np.float64), ["pump"]), minority


def minority_workload(kind: str) -> tuple[Stream, np.ndarray]:
    if kind == "rare-pump":
        s = demo_stream()
        return s, np.asarray(s.keys, dtype=object) == s.rare
    return two_regimes()


def run_minority(kind: str, detector: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the study, in this process: the lane model, temporal stage off."""
    single_thread()
    stream, _ = minority_workload(kind)
    runner = Single(detector, params, temporal=False)
    keys = np.asarray(stream.keys, dtype=object)
    n = len(stream.X)
    scores, alarms = np.empty(n), np.zeros(n, dtype=bool)
    c0 = time.process_time()
    for i in range(0, n, WINDOW):
        sl = slice(i, min(i + WINDOW, n))
        scores[sl], alarms[sl] = runner.step(stream.X[sl], keys[sl], stream.t[sl])
    return {"scores": scores.tolist(), "alarms": alarms.tolist(), "us_per_record": 1e6 * (time.process_time() - c0) / n}


def _minority_job(conn: Any, *args: Any) -> None:
    try:
        conn.send(run_minority(*args))
    except BaseException as e:
        import traceback

        conn.send({"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
    finally:
        conn.close()


def minority_metrics(stream: Stream, minority: np.ndarray, scores: np.ndarray, alarms: np.ndarray) -> dict[str, float]:
    """ROC-AUC and AP after the burn-in; false alarms on the minority's normal records:
    the model's own, and the share above the 99th percentile of every normal record's
    score (an oracle threshold: 1% overall), beside the majority's share."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    m = stream.index >= BURN_IN
    y = stream.y
    normal = m & (y == 0)
    cut = np.quantile(scores[normal], 0.99)
    mino, majo = normal & minority, normal & ~minority
    return {
        "roc_auc": float(roc_auc_score(y[m], scores[m])),
        "ap": float(average_precision_score(y[m], scores[m])),
        "minority_fpr_at_1pct": float((scores[mino] > cut).mean()),
        # 0.5: the minority's normal records score like the majority's; 1: all above them
        "minority_bias_auc": float(roc_auc_score(minority[normal], scores[normal])),
        "majority_fpr_at_1pct": float((scores[majo] > cut).mean()),
        "minority_alarms": int(alarms[mino].sum()),
        "minority_normal": int(mino.sum()),
        "false_alarms": int(alarms[normal].sum()),
        "recall": float(alarms[m & (y == 1)].mean()),
    }


def minority_study(args: argparse.Namespace, command: str) -> str:
    ctx = mp.get_context("spawn")
    results, lines = [], []
    lines += [
        "# Importance weights and LAMP where they are meant to help: normal data with a minority pattern",
        "",
        f"Generated by `{command}` on {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}, commit {_commit()}, {_machine()}.",
        "",
        "Two workloads whose normal data have a majority and a minority pattern: **rare pump**, the demo's four pumps of "
        "`--stream demo` (pump-rare, in a regime of its own, sends one record for every ten of each other pump's; keys "
        "passed); **two regimes 20:1**, one pump (one key) of the demo generator whose records 60 out of every 1,200 run "
        f"in a second regime (offsets {MINORITY_OFFSET} spreads). Each row: the lane model (default scaler and SPOT "
        f"threshold), temporal stage off, windows of {WINDOW}. minority FPR @1%: the share of the minority's normal "
        "records above the 99th percentile of all normal records' scores (1% would be fair; higher: the minority pattern "
        "is where the false alarms go); majority FPR @1% the same for the majority. minority bias: the ROC-AUC of the "
        "normal records' scores for telling the minority's from the majority's (0.5: no bias; 1: every minority record "
        "scores above every majority one). alarms on minority: the model's own "
        "alarms on the minority's normal records. Metrics after the first 512 records of each key.",
        "",
    ]
    for kind, title in (("rare-pump", "rare pump"), ("two-regimes", "two regimes 20:1")):
        stream, minority = minority_workload(kind)
        lines += [
            f"## {title}",
            "",
            "| row | ROC-AUC | AP | minority bias (AUC) | minority FPR @1% | majority FPR @1% | alarms on minority (normal records) | false alarms (all) | recall | µs/record |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for label, (det, params) in MINORITY_ROWS.items():
            parent, child = ctx.Pipe(duplex=False)
            p = ctx.Process(target=_minority_job, args=(child, kind, det, params))
            p.start()
            child.close()
            out = parent.recv()
            p.join()
            row: dict[str, Any] = {"workload": kind, "row": label, "detector": det, "params": params}
            if "error" in out:
                print(out["traceback"], file=sys.stderr)
                row["error"] = out["error"]
                lines.append(f"| {label} | error: {out['error']} |")
            else:
                r = minority_metrics(stream, minority, np.asarray(out["scores"]), np.asarray(out["alarms"], dtype=bool))
                row.update(r, us_per_record=out["us_per_record"])
                lines.append(
                    f"| {label} | {r['roc_auc']:.3f} | {r['ap']:.3f} | {r['minority_bias_auc']:.3f} | {r['minority_fpr_at_1pct']:.3f} | {r['majority_fpr_at_1pct']:.3f} | "
                    f"{r['minority_alarms']} of {r['minority_normal']:,} | {r['false_alarms']} | {r['recall']:.3f} | {out['us_per_record']:.0f} |"
                )
                print(lines[-1], file=sys.stderr, flush=True)
            results.append(row)
        lines.append("")
    text = "\n".join(lines)
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "hgad_devices.minority.md").write_text(text)
        (args.out / "hgad_devices.minority.json").write_text(json.dumps({"command": command, "commit": _commit(), "rows": results}, indent=1, default=str))
    return text


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hgad_devices", description=__doc__.split("\n\n")[0])
    ap.add_argument("--detectors", default=",".join(DEFAULT), help=f"comma-separated, from {', '.join(SPECS)}")
    ap.add_argument("--param", action="append", default=[], metavar="NAME:KEY=VALUE", help="a detector parameter for one row (repeatable)")
    ap.add_argument("--stream", default="skab,demo", help="skab, demo, or both (skab,demo: one table each, in one file)")
    ap.add_argument("--order", choices=("round-robin", "timestamp"), default="round-robin", help="SKAB: how the devices interleave")
    ap.add_argument("--temporal", choices=("off", "on", "both"), default="both")
    ap.add_argument("--seeds", default="0,1,2", help="SKAB: seeds each row runs with (the gaussian rows, deterministic, run once); metrics are their means")
    ap.add_argument("--demo-seeds", default="0", help="the demo: seeds each row runs with")
    ap.add_argument("--data-dir", type=Path, default=skab_dir())
    ap.add_argument("--study", choices=("devices", "minority"), default="devices", help="minority: importance weights and LAMP on streams with a minority normal pattern")
    ap.add_argument("--no-write", action="store_true", help="print the table, write nothing")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    args.seeds = [int(x) for x in str(args.seeds).split(",") if x.strip()]
    args.demo_seeds = [int(x) for x in str(args.demo_seeds).split(",") if x.strip()]

    names = [d for d in args.detectors.split(",") if d]
    unknown = sorted(set(names) - set(SPECS))
    if unknown:
        raise SystemExit(f"unknown detectors {unknown}; known: {', '.join(SPECS)}")
    specs = {n: SPECS[n] for n in names}
    for item in args.param:
        who, _, kv = item.partition(":")
        key, _, value = kv.partition("=")
        if who not in specs or not key:
            raise SystemExit(f"--param {item!r}: expected NAME:KEY=VALUE with NAME one of {', '.join(specs)}")
        v: Any = json.loads(value) if value[:1] in "-0123456789[{tfn" else value
        s = specs[who]
        specs[who] = dataclasses.replace(s, label=s.label + f" [{key}={value}]", params={**s.params, key: v})

    command = "python -m benchmarks.hgad_devices " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.study == "minority":
        print(minority_study(args, command))
        return 0
    tables, results = [], []
    for kind in args.stream.split(","):
        rows, meta = run_stream(kind, specs, args, command)
        tables.append(render(rows, meta))
        results.append({**meta, "rows": rows})
    text = "\n".join(tables)
    print(text)
    if not args.no_write:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "hgad_devices.md").write_text(text)
        (args.out / "hgad_devices.json").write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
