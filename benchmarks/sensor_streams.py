"""Sensor streams: the embedded demo over several seeds and the SKAB water-pump
experiments, through the real replay pipeline (scaler, windows, detector, SPOT
threshold, drift monitor), for a few detector configurations side by side.

Reproduce benchmarks/results/sensor_streams.md (and .json) from the repository root::

    python -m benchmarks.sensor_streams

Quick loops (printed, nothing written)::

    python -m benchmarks.sensor_streams --detectors default,gaussian --demo-seeds 1,2 --no-skab --no-write
    python -m benchmarks.sensor_streams --detectors x=loe-ae --set detector.params.score_nu=0 --no-write

A detector is a registry name (``default``, ``gaussian``, ``loe-ae``, ...) or a settings
file, optionally labelled ``label=spec``; ``--set key=value`` overrides settings for
all of them, ``--param label:key=value`` for one.

Streams:

- demo: ``streamad.app.demo.generate(n=20000, seed=s, drift=d)`` for each seed and both
  drift settings; NaN rows are rejected by the source and not scored. Per-kind AUC is
  the ROC-AUC of the records of one planted kind (spikes, level shifts, stuck sensor)
  against the normal records.
- SKAB (``--skab-protocol``): ``alone`` (default) replays each experiment file by
  itself through a fresh pipeline (as SKAB's own leaderboard learns from the start of
  each file); ``warm`` replays anomaly-free/anomaly-free.csv first and then one
  experiment file, in one lane of a fresh pipeline, and measures the experiment's
  records only (the anomaly-free run was recorded on another day, at other operating
  points, so every experiment starts as a shift).

Labels are read for the metrics at the end only. Alarms are what the pipeline's own
threshold (SPOT, default settings) raised; precision is the share of alarms on
labelled records, the false-alarm rate the share of normal records alarmed on. Every
run is deterministic under its seeds.

Temporal stage (``features.temporal``, streamad/temporal.py): the rows measured before
it existed keep it off (pinned, so they stay comparable: ``default`` is then
``loe-ae``); ``... + temporal`` rows turn it on, with the records' event times (the
demo's, SKAB's ``datetime``). With the stage on, the default detector is the sensor
default (``default + temporal``: the trimmed Gaussian of examples/sensor-streams.yaml,
no scaler, windows of 32); ``loe-ae + temporal`` was the default there until
2026-12-02. ``--ablation``
adds the default detector with each group of temporal columns left out, with each
alone, and with the groups that are off by default added (a table of its own).

    python -m benchmarks.sensor_streams --ablation
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.odds import _deep_merge, parse_sets, publish, run_meta, single_thread

DEMO_KINDS = ("spike", "level shift", "stuck sensor")
SKAB_DIRS = ("valve1", "valve2", "other")
#: labels hold no commas: ``--detectors`` is a comma-separated list
DEFAULT_DETECTORS = (
    "default", "default (train_share 0.25)=default", "gaussian", "loe-ae v2 (old default)=loe-ae",
    "default + temporal=default", "loe-ae + temporal=loe-ae", "gaussian + temporal=gaussian",
)  # fmt: skip
#: parameters pinned per row: the previous default's, so the row stays comparable after the
#: default changes, and the faster training schedule's
PINNED: dict[str, dict[str, Any]] = {
    "loe-ae v2 (old default)": {"gauss": False, "score_warmup": 256},
    "default (train_share 0.25)": {"train_share": 0.25},
}
#: settings pinned per row: the rows from before the temporal stage keep it off
OFF = {"features": {"temporal": "off"}}
ON = {"features": {"temporal": "on"}}
PINNED_SETTINGS: dict[str, dict[str, Any]] = {
    "default": OFF,
    "default (train_share 0.25)": OFF,
    "gaussian": OFF,
    "loe-ae v2 (old default)": OFF,
    # the sensor default (streamad.factory.SENSOR_DEFAULT, examples/sensor-streams.yaml)
    "default + temporal": ON,
    # the default on streams with event times until 2026-12-02
    "loe-ae + temporal": ON,
    "gaussian + temporal": ON,
}


def ablation_rows() -> list[str]:
    """The default detector with each temporal group left out, alone, and added."""
    from streamad.temporal import DEFAULT_GROUPS, GROUPS

    rows = []
    for g in DEFAULT_GROUPS:
        label = f"temporal − {g}"
        PINNED_SETTINGS[label] = {"features": {"temporal": "on", "groups": [x for x in DEFAULT_GROUPS if x != g]}}
        rows.append(f"{label}=default")
    for g in DEFAULT_GROUPS:
        label = f"temporal: {g} only"
        PINNED_SETTINGS[label] = {"features": {"temporal": "on", "groups": [g]}}
        rows.append(f"{label}=default")
    for g in GROUPS:
        if g not in DEFAULT_GROUPS:
            label = f"temporal + {g}"
            PINNED_SETTINGS[label] = {"features": {"temporal": "on", "groups": [*DEFAULT_GROUPS, g]}}
            rows.append(f"{label}=default")
    return rows


#: records at the start of every stream left out of AUC/AP, for every detector alike: a
#: detector's warm-up output would otherwise rank those records, normal in both the demo
#: and SKAB, as the most normal ones and buy AUC without detecting anything. The
#: gaussian detector scores 0 until it has learned 256 records, which with windows of
#: 8 doubling to 256 covers the records up to 504; counting them lifted its SKAB AUC
#: from about 0.6 (warm-up off) to 0.86-0.91.
BURN_IN = 512


def _skab_dir() -> Path:
    here = Path(__file__).resolve().parent.parent
    for cand in (here.parent / "shared" / "datasets" / "skab", here.parent.parent / "shared" / "datasets" / "skab"):
        if cand.is_dir():
            return cand
    return here.parent / "shared" / "datasets" / "skab"


def _auc_ap(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    if y.min() == y.max():
        return float("nan"), float("nan")
    return float(roc_auc_score(y, s)), float(average_precision_score(y, s))


def replay_arrays(X: np.ndarray, overrides: Mapping[str, Any], timestamps: np.ndarray | None = None, keys: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Scores and alarms of every scored row of ``X`` (row index = offset - 1), with the
    records' event times and keys when given."""
    from streamad.config import load_settings
    from streamad.connectors.odds import ArraySource
    from streamad.connectors.sinks import NullSink
    from streamad.pipeline import Observer, Pipeline, WindowResult

    settings = load_settings(None, dict(overrides), env={})

    class Collect(Observer):
        def __init__(self) -> None:
            self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

        def on_window(self, r: WindowResult) -> None:
            self.parts.append((r.window.offsets.copy(), r.scores.copy(), r.alarms.copy(), np.full(len(r.scores), r.threshold)))

    seen = Collect()
    # As a replay of a file would: records with event times get the sensor default.
    pipeline = Pipeline(settings, NullSink(), observers=[seen], temporal=timestamps is not None)
    pipeline.run(ArraySource(X, stream="sensor", timestamps=timestamps, keys=keys))
    idx = np.concatenate([p[0] for p in seen.parts]).astype(np.int64) - 1
    return {
        "index": idx,
        "scores": np.concatenate([p[1] for p in seen.parts]),
        "alarms": np.concatenate([p[2] for p in seen.parts]).astype(bool),
        "threshold": np.concatenate([p[3] for p in seen.parts]),
    }


def run_demo(job: Mapping[str, Any]) -> dict[str, Any]:
    single_thread()
    from streamad.app.demo import generate

    stream = generate(n=job["n"], seed=job["seed"], drift=job["drift"])
    out = replay_arrays(stream.X, job["overrides"], stream.timestamps)
    idx, s, alarms = out["index"], out["scores"], out["alarms"]
    if not np.isfinite(s).all():
        raise RuntimeError(f"non-finite scores on demo seed {job['seed']}")
    keep = idx >= BURN_IN
    idx, s, alarms = idx[keep], s[keep], alarms[keep]
    y = stream.y[idx].astype(int)
    auc, ap = _auc_ap(y, s)
    kind = np.full(len(stream.y), "", dtype=object)
    for e in stream.events:
        if e["kind"] in DEMO_KINDS:
            kind[e["start"] : e["stop"]] = e["kind"]
    kind = kind[idx]
    per_kind = {}
    for k in DEMO_KINDS:
        m = (kind == k) | (y == 0)
        per_kind[k] = _auc_ap(y[m], s[m])[0] if (kind == k).any() else float("nan")
    # Events with at least one alarm while they last (a level shift or stuck sensor counts once).
    pos = {int(i): j for j, i in enumerate(idx)}
    hit = {k: [0, 0] for k in DEMO_KINDS}
    for e in stream.events:
        if e["kind"] in DEMO_KINDS:
            rows = [pos[i] for i in range(e["start"], e["stop"]) if i in pos]
            hit[e["kind"]][1] += 1
            hit[e["kind"]][0] += int(bool(rows) and alarms[rows].any())
    return {
        "stream": f"demo seed {job['seed']}" + (" drift" if job["drift"] else ""),
        "group": "demo+drift" if job["drift"] else "demo",
        "label": job["label"],
        "auc": auc,
        "ap": ap,
        "per_kind": per_kind,
        "events": hit,
        "alarms": int(alarms.sum()),
        "true_alarms": int((alarms & (y == 1)).sum()),
        "normal": int((y == 0).sum()),
        "n": int(len(idx)),
    }


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    from streamad.connectors.csv_source import CsvSource

    src = CsvSource(path)
    batches = list(src)
    X = np.concatenate([b.X for b in batches])
    y = np.concatenate([np.zeros(len(b.X)) if b.labels is None else b.labels for b in batches]).astype(int)
    ts = None if any(b.timestamps is None for b in batches) else np.concatenate([b.timestamps for b in batches])
    return X, y, ts


#: SKAB's leaderboard scores the rows after the first 400 of each file (its train part)
SKAB_TRAIN_ROWS = 400


def run_skab(job: Mapping[str, Any]) -> dict[str, Any]:
    single_thread()
    root = Path(job["skab_dir"])
    X, y, ts = _read_csv(root / job["file"])
    start = 0
    if job["protocol"] == "warm":
        Xf, _, tf = _read_csv(root / "anomaly-free" / "anomaly-free.csv")
        start = len(Xf)
        X = np.concatenate([Xf, X])
        ts = None if ts is None or tf is None else np.concatenate([tf, ts])
    out = replay_arrays(X, job["overrides"], ts)
    idx, s, alarms = out["index"], out["scores"], out["alarms"]
    # Point F1 of the alarms as SKAB's leaderboard counts it: every row after the train part.
    lead = idx >= start + SKAB_TRAIN_ROWS
    yl, al = y[idx[lead] - start], alarms[lead]
    tp = int((al & (yl == 1)).sum())
    f1 = 2 * tp / max(1, int(al.sum()) + int((yl == 1).sum()))
    keep = idx >= max(start, BURN_IN)
    idx, s, alarms = idx[keep] - start, s[keep], alarms[keep]
    yy = y[idx]
    auc, ap = _auc_ap(yy, s)
    return {
        "stream": job["file"],
        "group": "skab " + job["file"].split("/")[0],
        "label": job["label"],
        "auc": auc,
        "ap": ap,
        "alarms": int(alarms.sum()),
        "true_alarms": int((alarms & (yy == 1)).sum()),
        "normal": int((yy == 0).sum()),
        "n": int(len(idx)),
        "prevalence": float(yy.mean()),
        "f1": f1,
        "f1_tp": tp,
        "f1_alarms": int(al.sum()),
        "f1_positives": int((yl == 1).sum()),
    }


def _run(job: Mapping[str, Any]) -> dict[str, Any]:
    return run_demo(job) if job["kind"] == "demo" else run_skab(job)


def specs(items: Sequence[str], overrides: Mapping[str, Any], per: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for item in items:
        label, sep, spec = item.partition("=")
        if not sep:
            spec = label
        o = _deep_merge(_deep_merge({"detector": {"name": spec}}, PINNED_SETTINGS.get(label, {})), overrides)
        params = {**PINNED.get(label, {}), **per.get(label, {})}
        if params:
            o = _deep_merge(o, {"detector": {"params": params}})
        out.append((label, o))
    return out


def summarize(results: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    groups = sorted({r["group"] for r in results}, key=lambda g: (not g.startswith("demo"), g))
    for g in groups:
        for lab in labels:
            rs = [r for r in results if r["group"] == g and r["label"] == lab]
            if not rs:
                continue
            al = sum(r["alarms"] for r in rs)
            tr = sum(r["true_alarms"] for r in rs)
            normal = sum(r.get("normal", 0) for r in rs)
            row = {
                "group": g,
                "label": lab,
                "streams": len(rs),
                "auc": float(np.nanmean([r["auc"] for r in rs])),
                "ap": float(np.nanmean([r["ap"] for r in rs])),
                "alarms": al,
                "precision": tr / al if al else float("nan"),
                "false_alarm_rate": (al - tr) / normal if normal else float("nan"),
            }
            if not g.startswith("demo"):
                tp = sum(r["f1_tp"] for r in rs)
                row["f1"] = 2 * tp / max(1, sum(r["f1_alarms"] for r in rs) + sum(r["f1_positives"] for r in rs))
            if g.startswith("demo"):
                for k in DEMO_KINDS:
                    row[k] = float(np.nanmean([r["per_kind"][k] for r in rs]))
                    row[k + " hit"] = f"{sum(r['events'][k][0] for r in rs)}/{sum(r['events'][k][1] for r in rs)}"
            rows.append(row)
    return rows


def ablation(results: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[dict[str, Any]]:
    """One row per variant: every demo stream (with and without drift) and every SKAB file."""
    out = []
    for lab in labels:
        demo = [r for r in results if r["label"] == lab and r["group"].startswith("demo")]
        skab = [r for r in results if r["label"] == lab and r["group"].startswith("skab")]
        row: dict[str, Any] = {"label": lab}
        if demo:
            al = sum(r["alarms"] for r in demo)
            tr = sum(r["true_alarms"] for r in demo)
            row.update(
                demo_auc=float(np.nanmean([r["auc"] for r in demo])),
                demo_ap=float(np.nanmean([r["ap"] for r in demo])),
                precision=tr / al if al else float("nan"),
                false_alarm_rate=(al - tr) / max(1, sum(r["normal"] for r in demo)),
            )
            for k in DEMO_KINDS:
                row[k] = float(np.nanmean([r["per_kind"][k] for r in demo]))
                row[k + " hit"] = f"{sum(r['events'][k][0] for r in demo)}/{sum(r['events'][k][1] for r in demo)}"
        if skab:
            row.update(skab_auc=float(np.nanmean([r["auc"] for r in skab])), skab_ap=float(np.nanmean([r["ap"] for r in skab])))
        out.append(row)
    return out


def render(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], ablated: Sequence[Mapping[str, Any]] = ()) -> str:
    f = lambda v: "–" if v != v else f"{v:.3f}"  # noqa: E731
    lines = [
        "# Sensor streams: demo and SKAB",
        "",
        f"Generated by `{meta['command']}` on {meta['date']}, commit {meta['commit']}, {meta['machine']}.",
        "",
        "Every stream goes through the replay pipeline with default settings (online scaler, windows of 8 doubling to 256, "
        "SPOT threshold at risk 1e-3: provisional from the detector's warm-up scores, no alarm before 100 scores; drift monitor); labels meet the scores only here. "
        f"Metrics leave out the first {BURN_IN} records of every stream, for every detector alike (a warm-up's constant scores would otherwise count as a perfect ranking of those normal records). "
        f"Demo: `streamad.app.demo.generate(n={meta['n']}, seed=s)` for s in {meta['demo_seeds']}, with and without the unlabelled temperature drift; "
        "per-kind AUC = records of that planted kind against the normal records; `hit` = planted events with at least one alarm while they last. "
        f"SKAB: protocol `{meta['skab_protocol']}` "
        + (
            "(anomaly-free.csv replayed first, then the experiment file in the same lane of a fresh pipeline; measured on the experiment's records)"
            if meta["skab_protocol"] == "warm"
            else "(each experiment file alone, fresh pipeline)"
        )
        + "; AUC/AP are means over files, alarms summed, precision = alarms on labelled records / alarms.",
        "",
        "## Demo",
        "",
        "| stream | detector | AUC | AP | AUC spikes | AUC level shifts | AUC stuck sensor | alarms | precision | false-alarm rate | spikes hit | shifts hit | stuck hit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    fa = lambda v: "–" if v != v else f"{v:.2%}"  # noqa: E731
    for r in rows:
        if r["group"].startswith("demo"):
            lines.append(
                f"| {r['group']} (×{r['streams']}) | {r['label']} | {f(r['auc'])} | {f(r['ap'])} | {f(r['spike'])} | {f(r['level shift'])} | {f(r['stuck sensor'])} "
                f"| {r['alarms']} | {f(r['precision'])} | {fa(r['false_alarm_rate'])} | {r['spike hit']} | {r['level shift hit']} | {r['stuck sensor hit']} |"
            )
    if any(not r["group"].startswith("demo") for r in rows):
        lines += [
            "",
            "## SKAB",
            "",
            f"F1: point F1 of the alarms over the rows after the first {SKAB_TRAIN_ROWS} of each file (the leaderboard's scoring), summed over the files.",
            "",
            "| files | detector | AUC | AP | alarms | precision | false-alarm rate | F1 |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if not r["group"].startswith("demo"):
                lines.append(
                    f"| {r['group']} (×{r['streams']}) | {r['label']} | {f(r['auc'])} | {f(r['ap'])} | {r['alarms']} | {f(r['precision'])} "
                    f"| {fa(r['false_alarm_rate'])} | {f(r['f1'])} |"
                )
    if ablated:
        lines += [
            "",
            "## Ablation of the temporal columns",
            "",
            "The default detector with the temporal stage: all 20 demo streams (with and without drift) and all 34 SKAB files together. "
            "Groups: jump (value minus the median of the previous 5), drift (median of the last 5 minus the long mean), "
            "vol (log ratio of the recent to the usual step size), run (log of the records since the value last changed), "
            "gap (time since the key's previous record over its usual), diff (the step from the previous value), calendar (time of day and weekday).",
            "",
            "| variant | demo AUC | demo AP | AUC spikes | AUC shifts | AUC stuck | spikes hit | shifts hit | stuck hit | precision | false-alarm rate | SKAB AUC | SKAB AP |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in ablated:
            lines.append(
                f"| {r['label']} | {f(r.get('demo_auc', float('nan')))} | {f(r.get('demo_ap', float('nan')))} | {f(r.get('spike', float('nan')))} "
                f"| {f(r.get('level shift', float('nan')))} | {f(r.get('stuck sensor', float('nan')))} | {r.get('spike hit', '–')} | {r.get('level shift hit', '–')} "
                f"| {r.get('stuck sensor hit', '–')} | {f(r.get('precision', float('nan')))} | {fa(r.get('false_alarm_rate', float('nan')))} "
                f"| {f(r.get('skab_auc', float('nan')))} | {f(r.get('skab_ap', float('nan')))} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detectors", default=",".join(DEFAULT_DETECTORS), help="comma-separated label=spec items")
    ap.add_argument("--set", action="append", default=[], help="settings override for every detector, key.path=value")
    ap.add_argument("--param", action="append", default=[], help="detector parameter for one detector, label:key=value")
    ap.add_argument("--demo-seeds", default="1,2,3,4,5,6,7,8,9,10")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--no-drift-variant", action="store_true", help="only the demo with drift")
    ap.add_argument("--no-skab", action="store_true")
    ap.add_argument("--no-demo", action="store_true")
    ap.add_argument("--skab-protocol", choices=("warm", "alone"), default="alone")
    ap.add_argument("--skab-dir", type=Path, default=_skab_dir())
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print the table, write nothing")
    ap.add_argument("--out", default="sensor_streams", help="results/NAME.md and .json (default: %(default)s)")
    ap.add_argument("--ablation", action="store_true", help="also the default detector with temporal groups left out, alone and added")
    args = ap.parse_args(argv)

    overrides = parse_sets(args.set)
    per: dict[str, dict[str, Any]] = {}
    for item in args.param:
        label, _, kv = item.partition(":")
        per.setdefault(label, {}).update(parse_sets([kv]))
    items = [d for d in args.detectors.split(",") if d]
    extra = ablation_rows() if args.ablation else []
    dets = specs(items + extra, overrides, per)
    jobs: list[dict[str, Any]] = []
    seeds = [int(s) for s in args.demo_seeds.split(",") if s]
    for label, o in dets:
        if not args.no_demo:
            for drift in (True,) if args.no_drift_variant else (False, True):
                for s in seeds:
                    jobs.append({"kind": "demo", "label": label, "overrides": o, "seed": s, "drift": drift, "n": args.n})
        if not args.no_skab:
            for d in SKAB_DIRS:
                for p in sorted((args.skab_dir / d).glob("*.csv"), key=lambda p: int(p.stem) if p.stem.isdigit() else p.stem):
                    jobs.append({"kind": "skab", "label": label, "overrides": o, "file": f"{d}/{p.name}", "skab_dir": str(args.skab_dir), "protocol": args.skab_protocol})
    with mp.get_context("spawn").Pool(args.workers) as pool:
        results = pool.map(_run, jobs, chunksize=1)
    rows = summarize(results, [lab for lab, _ in dets if f"{lab}=default" not in extra])
    ablated = ablation(results, ["default + temporal"] + [e.partition("=")[0] for e in extra]) if extra else []
    meta = run_meta(
        "benchmarks.sensor_streams", argv, n=args.n, demo_seeds=seeds, skab_protocol=args.skab_protocol, detectors={lab: o for lab, o in dets}
    )
    text = render(rows, meta, ablated)
    print(text)
    if not args.no_write:
        publish(args.out, text, {"meta": meta, "rows": rows, "ablation": ablated, "runs": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
