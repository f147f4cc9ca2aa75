"""Ablation of the learning core: the default detector against each component switched
off or swapped, on the 20 ODDS streams as they are and with extra contamination.

Reproduce benchmarks/results/ablation.md (and .json) from the repository root::

    python -m benchmarks.ablation

Every run goes through the real replay pipeline exactly as ``benchmarks.odds`` drives
it (prequential protocol v1: seeds 0, 1, 2; the seed's permutation; at most 60 000
records; score each window, then learn it; ROC-AUC and AP over all streamed
records). Labels build the "contaminated" streams and meet the scores at the end;
the detector never sees them.

Contaminated streams (``+10%``): noisy copies of the file's own anomalies, the LOE
paper's recipe (a random anomaly plus Gaussian noise with the anomalies' per-feature
standard deviation), make up 10% of the stream, shuffled in. Dense, repeated
anomalies are what a model trained on its stream learns as normal; that is the
situation LOE is for.

Windows are the pipeline's own (``window.size``, growing from ``window.initial_size``
as in the default settings); ``--window`` and ``--grow`` override the two.

The variants live in benchmarks/variants.py: public parameters go through settings,
changed components through a detector class registered for the variant.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.odds import DATASETS, RESULTS, SEEDS, _commit, _default_data_dir, _machine, metrics, protocol_records, run_pool, single_thread
from benchmarks.variants import VARIANTS

#: the committed table: every component of the default switched off or swapped once;
#: the other variants stay runnable with --variants
DEFAULT_VARIANTS = (
    "default", "soft", "refine", "blind", "running", "loe-warmup", "weights", "lamp-scale", "lamp-power",
    "lamp-exp", "no-head", "no-gauss", "gauss-only", "gauss-all", "no-boost", "replay", "train-quarter", "plain",
)  # fmt: skip
CONDITIONS = {"as is": 0.0, "+10% contamination": 0.10}


def contaminate(X: np.ndarray, y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy copies of the anomalies of ``X`` making up ``share`` of the returned stream.

    >>> X = np.r_[np.zeros((9, 2)), np.ones((1, 2))]; y = np.r_[np.zeros(9), 1].astype(np.int8)
    >>> Xc, yc = contaminate(X, y, 0.5, seed=0)
    >>> len(Xc), int(yc.sum())
    (20, 11)
    """
    if share <= 0:
        return X, y
    rng = np.random.default_rng([seed, 7])
    anomalies = X[y == 1]
    n_add = int(round(share / (1.0 - share) * len(X)))
    picked = anomalies[rng.integers(0, len(anomalies), n_add)]
    noisy = picked + rng.normal(size=picked.shape) * anomalies.std(axis=0, keepdims=True)
    Xc = np.concatenate([X, noisy])
    yc = np.concatenate([y, np.ones(n_add, dtype=y.dtype)])
    order = rng.permutation(len(Xc))
    return Xc[order], yc[order]


def run_one(job: Mapping[str, Any]) -> dict[str, Any]:
    """One (variant, condition, file, seed): the pipeline over the stream, then metrics."""
    single_thread()
    from streamad.connectors.odds import load_mat

    X, y = load_mat(Path(job["data_dir"]) / f"{job['dataset']}.mat")
    assert y is not None
    X, y = protocol_records(X, y, job["seed"])
    X, y = contaminate(X, y, job["share"], job["seed"])
    variant = VARIANTS[job["variant"]]
    overrides: dict[str, Any] = {
        "window": {"size": job["window"], "initial_size": job["grow"]},
        "detector": {"name": variant.detector(job["variant"], job["detector"]), "params": dict(variant.params), "seed": job["seed"]},
    }
    scores, seconds = _run(X, overrides)
    auc, ap = metrics(y, scores)
    return {**{k: job[k] for k in ("variant", "condition", "dataset", "seed")}, "auc": auc, "ap": ap, "seconds": seconds, "n": len(X)}


def _run(X: np.ndarray, overrides: Mapping[str, Any]) -> tuple[np.ndarray, float]:
    from streamad.config import load_settings
    from streamad.connectors.odds import ArraySource
    from streamad.connectors.sinks import NullSink
    from streamad.pipeline import Observer, Pipeline, WindowResult

    settings = load_settings(None, overrides, env={})

    class Collect(Observer):
        def __init__(self) -> None:
            self.scores: list[np.ndarray] = []

        def on_window(self, result: WindowResult) -> None:
            self.scores.append(result.scores)

    seen = Collect()
    pipeline = Pipeline(settings, NullSink(), observers=[seen])
    source = ArraySource(X, stream="odds")
    t0 = time.perf_counter()
    pipeline.run(source)
    seconds = time.perf_counter() - t0
    scores = np.concatenate(seen.scores)
    if len(scores) != len(X):
        raise RuntimeError("the pipeline did not score every record")
    return scores, seconds


def summarize(rows: Sequence[Mapping[str, Any]], datasets: Sequence[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean over files (of the mean over seeds) of AUC and AP, per variant and condition."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for v in VARIANTS:
        if not any(r["variant"] == v for r in rows):
            continue
        out[v] = {}
        for c in CONDITIONS:
            per_file = []
            for d in datasets:
                sel = [r for r in rows if r["variant"] == v and r["condition"] == c and r["dataset"] == d]
                if sel:
                    per_file.append((np.mean([r["auc"] for r in sel]), np.mean([r["ap"] for r in sel])))
            if per_file:
                a = np.array(per_file)
                out[v][c] = {"auc": float(a[:, 0].mean()), "ap": float(a[:, 1].mean()), "files": len(per_file)}
    return out


def wins(rows: Sequence[Mapping[str, Any]], variant: str, condition: str, datasets: Sequence[str]) -> tuple[int, int]:
    """Files where the variant's mean AUC beats / trails the default's by more than 0.005."""
    better = worse = 0
    for d in datasets:
        a = [r["auc"] for r in rows if r["variant"] == variant and r["condition"] == condition and r["dataset"] == d]
        b = [r["auc"] for r in rows if r["variant"] == "default" and r["condition"] == condition and r["dataset"] == d]
        if a and b:
            diff = np.mean(a) - np.mean(b)
            better += diff > 0.005
            worse += diff < -0.005
    return better, worse


def render(rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any], datasets: Sequence[str]) -> str:
    s = summarize(rows, datasets)
    base = s["default"]
    lines = [
        "# Ablation of the learning core (ODDS, prequential protocol v1)",
        "",
        f"Detector `{meta['detector']}` through the replay pipeline, windows of {meta['window_desc']}; "
        f"{len(datasets)} ODDS files, seeds {', '.join(map(str, meta['seeds']))}; mean over files of the mean over seeds. "
        "Each row changes the default in one respect (last row: all at once). "
        "Δ is the row minus the default under the same condition; "
        "files +/− count files where the row's ROC-AUC beats / trails the default's by more than 0.005.",
        "",
        "`+10% contamination`: noisy copies of each file's anomalies (the LOE paper's recipe) are shuffled in until they make up 10% of the stream.",
        "",
        f"Machine: {meta['machine']}, {meta['cores']} cores, one thread per run; commit {meta['commit']}; {meta['date']}.",
        "",
        "| variant | AUC | AP | ΔAUC | ΔAP | files +/− | AUC +10% | AP +10% | ΔAUC | ΔAP | files +/− |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v, variant in VARIANTS.items():
        if v not in s:
            continue
        cells = [variant.title + (f" `{variant.shows}`" if variant.shows else "")]
        for c in CONDITIONS:
            r = s[v].get(c)
            if r is None:
                cells += ["–"] * 5
                continue
            b = base.get(c, r)
            pos, neg = wins(rows, v, c, datasets)
            d_auc, d_ap = r["auc"] - b["auc"], r["ap"] - b["ap"]
            cells += [
                f"{r['auc']:.3f}",
                f"{r['ap']:.3f}",
                "" if v == "default" else f"{d_auc:+.3f}",
                "" if v == "default" else f"{d_ap:+.3f}",
                "" if v == "default" else f"{pos}/{neg}",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Per file, ROC-AUC (mean over seeds)", ""]
    shown = [v for v in ("default", "no-gauss", "no-head", "blind", "plain") if v in s]
    for c in CONDITIONS:
        lines += [f"### {c}", "", "| file | " + " | ".join(VARIANTS[v].title for v in shown) + " |", "|---|" + "---|" * len(shown)]
        for d in datasets:
            vals = []
            for v in shown:
                a = [r["auc"] for r in rows if r["variant"] == v and r["condition"] == c and r["dataset"] == d]
                vals.append(f"{np.mean(a):.3f}" if a else "–")
            lines.append(f"| {d} | " + " | ".join(vals) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detector", default="default")
    ap.add_argument("--window", type=int, default=None, help="window size (default: the settings' default)")
    ap.add_argument("--grow", type=int, default=None, help="first window size (default: the settings' window.initial_size)")
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)} (default: the committed table's)")
    ap.add_argument("--conditions", default=",".join(CONDITIONS))
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--data-dir", type=Path, default=_default_data_dir())
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--name", default="ablation", help="file stem of the results (default: ablation)")
    args = ap.parse_args(argv)

    from streamad.config import load_settings
    from streamad.factory import detector_name

    settings = load_settings(None, {"detector": {"name": args.detector}}, env={})
    detector = detector_name(settings)
    window = args.window or settings.window.size
    grow = args.grow or settings.window.initial_size
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    datasets = args.datasets.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [
        {
            "variant": v,
            "condition": c,
            "share": CONDITIONS[c],
            "dataset": d,
            "seed": seed,
            "detector": detector,
            "window": window,
            "grow": grow,
            "data_dir": str(args.data_dir),
        }
        for v in variants
        for c in args.conditions.split(",")
        for d in datasets
        for seed in seeds
    ]
    # The biggest files first, so the pool does not end on one long job.
    jobs.sort(key=lambda j: -(args.data_dir / f"{j['dataset']}.mat").stat().st_size)
    rows: list[dict[str, Any]] = run_pool(run_one, jobs, args.jobs, every=50)
    meta = {
        "detector": detector,
        "window": window,
        "grow": grow,
        "window_desc": f"{grow} doubling up to {window}" if grow and grow < window else f"{window}",
        "seeds": seeds,
        "machine": _machine(),
        "cores": os.cpu_count(),
        "commit": _commit(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "median_job_seconds": statistics.median(r["seconds"] for r in rows),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.name
    (args.out / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    (args.out / f"{stem}.md").write_text(render(rows, meta, datasets))
    print(render(rows, meta, datasets).split("## Per file")[0])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
