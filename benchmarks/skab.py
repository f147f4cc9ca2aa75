"""SKAB with the leaderboard's scoring, streamad beside its peers in the same run.

Every one of the 34 experiment files (valve1, valve2, other) is replayed by itself from
its first record, prequentially (each record scored by the model as it was before it,
then learned), with one set of settings for all files; labels meet the alarms only in
the final metric. The leaderboard's scoring (SKAB's README: the first 400 rows of each
file are its train part): point-wise F1, false-alarm rate (FAR = FP / (FP + TN)) and
missed-alarm rate (MAR = FN / (FN + TP)) of the alarms over the rows after the first
400 of every file, all files' rows together.

- ours: the replay pipeline with default settings. The files have a ``datetime``
  column, so ``features.temporal: auto`` is on and the default detector is the sensor
  one (``streamad.factory.SENSOR_DEFAULT``, the same as ``examples/sensor-streams.yaml``:
  a trimmed online Gaussian per key, here one per file, no scaler, windows of 8 doubling
  to 32; SPOT at risk 1e-3
  with its provisional threshold during the detector's warm-up).
- ours with ``loe-ae`` named: the default for tables, and for sensor streams until
  2026-12-02 (windows of 8 doubling to 256).
- peers: river HalfSpaceTrees, pysad RS-Hash and pysad LODA (benchmarks/peers.py,
  driven as in the ODDS tables), over the SAME columns: the records' values and the
  temporal stage's derived columns (streamad.temporal.TemporalFeatures, default
  groups, computed from each record's past only), one record at a time.
  A peer has no threshold of its own, so every peer gets the same label-free one:
  ``SpotThreshold`` with streamad's defaults (risk 1e-3, no alarm before 100 scores,
  alarmed scores kept out of its tail), fed the peer's scores in the pipeline's
  windows (8 doubling to 256), each window judged by the threshold as it was before
  it. A peer has no warm-up flag: all its scores count as grown-up ones.
- published: the leaderboard's F1 for Conv-AE, MSET, PCA T²+Q and LSTM-AE, from
  SKAB's README (outlier-detection table); not rerun here. Those detectors train on
  each file's first 400 rows and set their threshold there.
- alarm on every record: what F1 rewards on files whose test rows are half anomalous.

Reproduce benchmarks/results/skab.md (and .json)::

    python -m benchmarks.skab
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.odds import publish, run_meta, single_thread
from benchmarks.sensor_streams import SKAB_DIRS, SKAB_TRAIN_ROWS, _read_csv, _skab_dir, replay_arrays
from streamad.factory import SENSOR_DEFAULT

#: rows after the end of a labelled anomaly counted apart among the false alarms
RECOVERY = 60
PEERS = {"river HST": "river_hst", "pysad RS-Hash": "pysad_rshash", "pysad LODA": "pysad_loda"}
#: SKAB's README (github.com/waico/SKAB), outlier-detection leaderboard: (F1, FAR %, MAR %).
#: Those detectors fit each file's first 400 rows offline and set their threshold there.
PUBLISHED = {
    "Conv-AE (published)": (0.78, 13.55, 28.02),
    "MSET (published)": (0.78, 39.73, 14.13),
    "PCA T²+Q (published)": (0.76, 26.62, 24.92),
    "LSTM-AE (published)": (0.74, 29.96, 25.92),
    "T² (published)": (0.66, 19.21, 42.60),
    "Vanilla AE (published)": (0.39, 2.59, 75.15),
    "Isolation forest (published)": (0.29, 2.56, 82.89),
}
#: examples/sensor-streams.yaml, the settings file for sensor streams: an online Gaussian per
#: key (one per file here) trimmed by LOE's hard E-step at 0.95 (detectors/gaussian.py), in the
#: records' own units (no online scaler), windows of 32 records, scoring during its warm-up
#: (``early``)
SENSOR_PRESET: dict[str, Any] = {
    "detector": {"name": SENSOR_DEFAULT["detector"], "params": SENSOR_DEFAULT["params"]},
    "window": {"size": SENSOR_DEFAULT["window"]},
    "scaler": {"kind": SENSOR_DEFAULT["scaler"]},
}
#: the table default, named: the default for sensor streams too until 2026-12-02
LOE_AE: dict[str, Any] = {"detector": {"name": "loe-ae"}}
LOE_LABEL = "streamad, loe-ae"
#: ``--risks``: our rows at these target false-alarm rates besides the default (one
#: setting for every file, no labels: the trade-off between FAR and MAR, not a choice)
RISKS = (0.005, 0.019)


def windows(n: int, first: int = 8, size: int = 256) -> list[slice]:
    """The pipeline's windows: ``first`` records, doubling up to ``size``."""
    out, start, w = [], 0, first
    while start < n:
        out.append(slice(start, min(n, start + w)))
        start += w
        w = min(size, 2 * w)
    return out


def threshold_alarms(scores: np.ndarray) -> np.ndarray:
    """Alarms of ``scores`` under streamad's default label-free threshold, fed in the
    pipeline's windows, each judged before the threshold learns it."""
    from streamad.config import ThresholdSettings
    from streamad.factory import build_threshold

    thr = build_threshold(ThresholdSettings())
    alarms = np.zeros(len(scores), dtype=bool)
    for w in windows(len(scores)):
        alarms[w] = scores[w] > thr.value
        thr.update(scores[w])
    return alarms


def temporal_columns(X: np.ndarray, ts: np.ndarray | None) -> np.ndarray:
    """The values and the temporal stage's derived columns (default groups), each row
    from the records before it, window by window as the pipeline computes them."""
    from streamad.temporal import TemporalFeatures

    tf = TemporalFeatures()
    parts = []
    for w in windows(len(X)):
        ctx = tf.transform(X[w], None, None if ts is None else ts[w], tuple(f"x{i}" for i in range(X.shape[1])))
        tf.commit(ctx)
        parts.append(ctx.features)
    return np.concatenate(parts)


def in_order(X: np.ndarray, overrides: Mapping[str, Any], ts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Scores and alarms of ``X`` through the replay pipeline with ``overrides``, in record order."""
    out = replay_arrays(X, overrides, ts)
    order = np.argsort(out["index"])
    return out["scores"][order], out["alarms"][order]


def run_file(job: Mapping[str, Any]) -> dict[str, Any]:
    single_thread()
    import benchmarks.peers as peers

    X, y, ts = _read_csv(Path(job["skab_dir"]) / job["file"])
    out: dict[str, Any] = {"file": job["file"], "n": len(X)}
    runs = {"streamad default": in_order(X, {}, ts), LOE_LABEL: in_order(X, LOE_AE, ts)}
    for risk in job.get("risks", ()):
        runs[risk_label(risk)] = in_order(X, {"threshold": {"risk": risk}}, ts)
        runs[risk_label(risk, LOE_LABEL)] = in_order(X, {**LOE_AE, "threshold": {"risk": risk}}, ts)
    F = temporal_columns(X, ts)
    for label, fn in PEERS.items():
        s = np.asarray(getattr(peers, fn)(F, job["seed"])[0], dtype=np.float64)
        s = np.nan_to_num(s, nan=0.0, posinf=np.finfo(np.float64).max)
        runs[label] = (s, threshold_alarms(s))
    for label, (s, a) in runs.items():
        out[label] = counts(y, s, a)
    return out


def counts(y: np.ndarray, scores: np.ndarray, alarms: np.ndarray) -> dict[str, Any]:
    """One file's run as the leaderboard scores it (the rows after the first
    ``SKAB_TRAIN_ROWS``): what ``totals`` sums over the files."""
    test = np.arange(len(y)) >= SKAB_TRAIN_ROWS
    yt, at = y[test] == 1, alarms[test]
    return {
        "tp": int((at & yt).sum()),
        "fp": int((at & ~yt).sum()),
        "fn": int((~at & yt).sum()),
        "tn": int((~at & ~yt).sum()),
        "fp_recovery": int((at & ~yt & recovery_rows(y)[test]).sum()),
        "auc": _auc(yt, scores[test]),
        "first_alarm": int(np.flatnonzero(alarms)[0]) if alarms.any() else None,
    }


def recovery_rows(y: np.ndarray, rows: int = RECOVERY) -> np.ndarray:
    """The ``rows`` rows after each labelled segment ends: the process settling back (on
    SKAB the pump returning to its operating point), labelled normal.

    >>> recovery_rows(np.array([0, 1, 1, 0, 0, 0] + [0] * 60)).nonzero()[0][[0, -1]].tolist()
    [3, 62]
    >>> recovery_rows(np.array([0, 1, 0, 0, 0, 1, 0]), rows=2).nonzero()[0].tolist()
    [2, 3, 6]
    """
    y = np.asarray(y)
    after = np.zeros(len(y), dtype=bool)
    for e in np.flatnonzero((y[:-1] == 1) & (y[1:] == 0)) + 1:
        after[e : e + rows] = True
    return after


def risk_label(risk: float, base: str = "streamad") -> str:
    return f"{base}, risk {risk:g}"


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else float("nan")


def totals(results: Sequence[Mapping[str, Any]], label: str) -> dict[str, float]:
    tp = sum(r[label]["tp"] for r in results)
    fp = sum(r[label]["fp"] for r in results)
    fn = sum(r[label]["fn"] for r in results)
    tn = sum(r[label]["tn"] for r in results)
    rec = sum(r[label]["fp_recovery"] for r in results)
    return {
        "far_outside_recovery": (fp - rec) / max(1, fp + tn),
        "f1": 2 * tp / max(1, 2 * tp + fp + fn),
        "far": fp / max(1, fp + tn),
        "mar": fn / max(1, fn + tp),
        "alarms": tp + fp,
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "auc": float(np.nanmean([r[label]["auc"] for r in results])),
        "files_alarmed": sum(r[label]["first_alarm"] is not None for r in results),
    }


def render(rows: Mapping[str, Mapping[str, float]], meta: Mapping[str, Any]) -> str:
    f = lambda v: "–" if v != v else f"{v:.3f}"  # noqa: E731
    lines = [
        "# SKAB, the leaderboard's scoring",
        "",
        f"Generated by `{meta['command']}` on {meta['date']}, commit {meta['commit']}, {meta['machine']}.",
        "",
        f"All {meta['files']} experiment files (valve1, valve2, other), each replayed alone from its first record, prequentially, "
        f"one set of settings for all; F1, FAR (false alarms / normal rows) and MAR (missed / anomalous rows) over the rows after the first {SKAB_TRAIN_ROWS} "
        "of each file, all files together (the leaderboard's train part is not used for training here: every record is scored before it is learned). "
        "Peers see the same columns as ours (values + temporal context from streamad.temporal) and get the same label-free threshold "
        "(SPOT, risk 1e-3, no alarm before 100 scores, windows of 8 doubling to 256). AUC: mean over files of the test rows' ROC-AUC (for reference). "
        "Published rows are quoted from SKAB's leaderboard (its README), not rerun: those detectors fit each file's first 400 rows offline "
        "and set their threshold there; note the false-alarm rates their F1 comes with. "
        "streamad default: on these timestamped files, the sensor default (a trimmed online Gaussian per key, one per file here: `examples/sensor-streams.yaml`, windows of 8 doubling to 32); "
        "`streamad, loe-ae`: the default for tables, named (the default here until 2026-12-02). "
        "`…, risk r` rows: the same settings but `threshold.risk` (the target false-alarm rate; default 0.001), "
        "the same for every file: the trade between false and missed alarms that the published rows make at their own rates.",
        "",
        "| detector | F1 | FAR | MAR | alarms | precision | files with an alarm | FAR, not counting the first 60 rows after an anomaly | AUC |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in rows.items():
        if "published" in label:
            lines.append(f"| {label} | {r['f1']:.2f} | {r['far']:.2f}% | {r['mar']:.2f}% | – | – | – | – | – |")
        else:
            lines.append(
                f"| {label} | {f(r['f1'])} | {r['far']:.2%} | {r['mar']:.2%} | {int(r['alarms'])} | {f(r['precision'])} "
                f"| {int(r['files_alarmed'])}/{meta['files']} | {'–' if r['far_outside_recovery'] != r['far_outside_recovery'] else format(r['far_outside_recovery'], '.2%')} | {f(r['auc'])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skab-dir", type=Path, default=_skab_dir())
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="the peers' seed")
    ap.add_argument("--no-write", action="store_true", help="print the table, write nothing")
    ap.add_argument("--risks", default=",".join(map(str, RISKS)), help="extra rows of ours at these threshold risks (default: %(default)s; '' for none)")
    args = ap.parse_args(argv)
    files = [f"{d}/{p.name}" for d in SKAB_DIRS for p in sorted((args.skab_dir / d).glob("*.csv"), key=lambda p: int(p.stem) if p.stem.isdigit() else p.stem)]
    if not files:
        print(f"streamad: error: no SKAB files under {args.skab_dir}", file=sys.stderr)
        return 2
    risks = [float(r) for r in args.risks.split(",") if r.strip()]
    jobs = [{"file": f, "skab_dir": str(args.skab_dir), "seed": args.seed, "risks": risks} for f in files]
    with mp.get_context("spawn").Pool(args.workers) as pool:
        results = pool.map(run_file, jobs, chunksize=1)
    rows: dict[str, dict[str, float]] = {
        label: totals(results, label)
        for label in ("streamad default", LOE_LABEL, *map(risk_label, risks), *(risk_label(r, LOE_LABEL) for r in risks), *PEERS)
    }
    n_pos = sum(r["streamad default"]["tp"] + r["streamad default"]["fn"] for r in results)
    n_neg = sum(r["streamad default"]["fp"] + r["streamad default"]["tn"] for r in results)
    every = {"f1": 2 * n_pos / (2 * n_pos + n_neg), "far": 1.0, "mar": 0.0, "alarms": n_pos + n_neg, "precision": n_pos / (n_pos + n_neg)}
    rows["alarm on every record"] = {**every, "auc": float("nan"), "files_alarmed": len(files), "far_outside_recovery": float("nan")}
    for label, (f1, far, mar) in PUBLISHED.items():
        rows[label] = {"f1": f1, "far": far, "mar": mar}
    meta = run_meta("benchmarks.skab", argv, files=len(files))
    text = render(rows, meta)
    print(text)
    if not args.no_write:
        publish("skab", text, {"meta": meta, "rows": rows, "files": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
