"""SKAB: where a detector's ranking stands, against Hotelling T² references.

A diagnostic beside ``benchmarks.skab``, not a leaderboard: it separates what the
ranking of the scores allows from what a label-free threshold makes of it.

- **oracle F1 at q**: each file's threshold is set *from its labels* at the ``q``
  quantile of its normal test rows (false-alarm rate about 1 - q), alarms counted as the
  leaderboard counts them (rows after the first 400, all files together). No detector
  can have this threshold; it says how much of SKAB the ranking alone could catch at
  that false-alarm rate.
- **SPOT**: the same scores under streamad's default label-free threshold
  (``benchmarks.skab.threshold_alarms``: SPOT, risk 1e-3, the pipeline's windows).

Rows: Hotelling T² (squared Mahalanobis distance, ridge 1e-3 on standardised columns)

- ``frozen``: fitted on each file's first 400 rows, as the leaderboard's T² is;
- ``every record``: refitted on every earlier record, prequentially;
- ``trimmed``: refitted on the earlier records whose score was under the 70% quantile of
  all earlier scores (LOE's hard E-step with a running bar: ``Gaussian(trim=0.7)``);

over the values alone or the values and the temporal stage's derived columns, refitted
every ``refit`` records (or in the pipeline's windows, 8 doubling to 256); and
streamad's default and ``examples/sensor-streams.yaml`` from the pipeline.

    python -m benchmarks.skab_reference
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.odds import RESULTS, _commit, _machine
from benchmarks.sensor_streams import SKAB_DIRS, SKAB_TRAIN_ROWS, _read_csv, _skab_dir
from benchmarks.skab import SENSOR_PRESET, in_order, temporal_columns, threshold_alarms, windows

ORACLE_Q = (0.999, 0.99, 0.95)


def refits(n: int, refit: int | None) -> list[slice]:
    """Blocks scored by one fit: ``refit`` records each, or the pipeline's windows."""
    if refit is None:
        return windows(n)
    return [slice(i, min(n, i + refit)) for i in range(0, n, refit)]


def t2(X: np.ndarray, mode: str, refit: int | None, trim: float = 0.7, ridge: float = 1e-3) -> np.ndarray:
    """Prequential T² scores of ``X``: each block scored by a fit on the records before it."""
    n, d = X.shape
    s = np.zeros(n)
    learned = np.ones(n, dtype=bool)
    for block in refits(n, refit):
        t0 = block.start
        past = np.arange(min(t0, SKAB_TRAIN_ROWS)) if mode == "frozen" else np.flatnonzero(learned[:t0])
        if len(past) < 20:
            continue  # scores 0 until a fit has 20 records
        A = X[past]
        mu, sd = A.mean(axis=0), A.std(axis=0) + 1e-6
        P = np.linalg.pinv(np.cov(((A - mu) / sd).T) + ridge * np.eye(d))
        D = (X[block] - mu) / sd
        s[block] = np.einsum("ij,jk,ik->i", D, P, D)
        if mode == "trimmed" and t0 > 100:
            bar = np.quantile(s[:t0], trim)
            learned[block] = s[block] <= bar
    return s


def f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / max(1, 2 * tp + fp + fn)


def evaluate(runs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[str, float]:
    """``runs``: (scores, SPOT alarms, labels) per file."""
    from sklearn.metrics import roc_auc_score

    out: dict[str, float] = {}
    test = slice(SKAB_TRAIN_ROWS, None)
    out["auc"] = float(np.mean([roc_auc_score(y[test], s[test]) for s, _, y in runs]))
    for q in ORACLE_Q:
        tp = fp = fn = 0
        for s, _, y in runs:
            st, yt = s[test], y[test] == 1
            al = st > np.quantile(st[~yt], q)
            tp, fp, fn = tp + int((al & yt).sum()), fp + int((al & ~yt).sum()), fn + int((~al & yt).sum())
        out[f"oracle {q}"] = f1(tp, fp, fn)
    tp = fp = fn = tn = 0
    for _, a, y in runs:
        at, yt = a[test], y[test] == 1
        tp, fp, fn, tn = tp + int((at & yt).sum()), fp + int((at & ~yt).sum()), fn + int((~at & yt).sum()), tn + int((~at & ~yt).sum())
    out["spot f1"], out["spot far"] = f1(tp, fp, fn), fp / max(1, fp + tn)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skab-dir", type=Path, default=_skab_dir())
    ap.add_argument("--no-write", action="store_true", help="print the table, write nothing")
    args = ap.parse_args(argv)
    files = [p for d in SKAB_DIRS for p in sorted((args.skab_dir / d).glob("*.csv"))]
    if not files:
        print(f"streamad: error: no SKAB files under {args.skab_dir}", file=sys.stderr)
        return 2
    data = []
    for p in files:
        X, y, ts = _read_csv(p)
        data.append((X, temporal_columns(X, ts), y, ts))
    rows: dict[str, tuple[bool, str, int | None]] = {}  # label: (temporal columns, mode, refit)
    for temporal in (False, True):
        for mode, refit in (("frozen", 8), ("every record", 8), ("trimmed", 8), ("trimmed", 32), ("trimmed", None)):
            every = "pipeline windows" if refit is None else f"every {refit}"
            rows[f"T² {mode}, {'values + temporal' if temporal else 'values'}, refit {every}"] = (temporal, mode, refit)
    results = {}
    for label, (temporal, mode, refit) in rows.items():
        runs = []
        for X, F, y, _ in data:
            s = t2(F if temporal else X, mode, refit)
            runs.append((s, threshold_alarms(s), y))
        results[label] = evaluate(runs)
    for label, overrides in (("streamad default", {}), ("streamad, examples/sensor-streams.yaml", SENSOR_PRESET)):
        results[label] = evaluate([(*in_order(X, overrides, ts), y) for X, _, y, ts in data])
    head = "| scores | AUC | " + " | ".join(f"oracle F1, FAR {1 - q:.1%}" for q in ORACLE_Q) + " | SPOT F1 | SPOT FAR |"
    lines = [
        "# SKAB: the ranking against Hotelling T² references",
        "",
        f"Generated by `python -m benchmarks.skab_reference` on {dt.date.today().isoformat()}, commit {_commit()}, {_machine()}.",
        "",
        (__doc__ or "").split("\n\n", 1)[1].rsplit("\n\n", 1)[0],
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for label, r in results.items():
        cells = [f"{r['auc']:.3f}", *(f"{r[f'oracle {q}']:.3f}" for q in ORACLE_Q), f"{r['spot f1']:.3f}", f"{r['spot far']:.2%}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        (RESULTS / "skab_reference.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
