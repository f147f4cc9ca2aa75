"""ODDS tables, prequential protocol v1 (../shared/benchmarks/PROTOCOL.md): streamad
beside its peers, measured in the same run on the same records.

Reproduce the committed tables (benchmarks/results/odds.md, .json, .png) from the
repository root::

    python -m benchmarks.odds --fresh

That runs every one of the 20 ODDS files with seeds 0, 1 and 2 for streamad's
``default`` detector and every peer (river HalfSpaceTrees behind MinMaxScaler; pysad
LODA, RSHash, HalfSpaceTrees, xStream, and IForestASD on seed 0 only because it
streams about 200 records/s; an offline Isolation Forest as a reference), two jobs at
a time, one thread each, 300 s cap per detector, file and seed. It takes about an
hour on two cores. Without ``--fresh`` finished jobs are taken from the cache
(benchmarks/.cache/odds_jobs.json), so an interrupted run resumes.

Quick runs of our detectors alone (written to benchmarks/.cache/partial/, never over
the committed tables)::

    python -m benchmarks.odds --detectors default --datasets cardio,thyroid --seeds 0 --no-peers
    python -m benchmarks.odds --detectors default,river-hst --set window.size=128 --no-peers
    python -m benchmarks.odds --detectors loe=configs/loe.yaml --no-peers

A detector is a registry name (``default``, ``river-hst``, ...) or a settings file
(YAML), optionally labelled ``label=spec``; ``--set key=value`` overrides settings
for all of them (``--set detector.params.n_trees=25``). Ours run through the real
replay pipeline (ArraySource → Pipeline → NullSink, windows scored then learned,
SPOT threshold and all) built from those settings; a file replay's windows close by
count only, so a slow machine cannot change them.

Protocol, as implemented here: for each seed, ``numpy.random.default_rng(seed)``
permutes the file and files over 60 000 records keep the first 60 000 of that order,
the same records for every detector; the detector's own randomness is seeded with
the same seed. Runners receive the records and the seed, never the labels; labels
meet the scores only in ``metrics`` at the end (scikit-learn's ROC-AUC and average
precision). Throughput is records / wall-seconds of the score-and-learn loop,
loading excluded, median over seeds. A job still running after the cap is killed
and reported as a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CACHE_DIR = ROOT / "benchmarks" / ".cache"

DATASETS = (
    "annthyroid", "breastw", "cardio", "glass", "http", "ionosphere", "letter", "lympho", "mammography", "musk",
    "optdigits", "pendigits", "pima", "satellite", "shuttle", "thyroid", "vertebral", "vowels", "wbc", "wine",
)  # fmt: skip
SEEDS = (0, 1, 2)
MAX_RECORDS = 60_000
CAP_SECONDS = 300.0
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


# -- the protocol ------------------------------------------------------------------------------


def protocol_records(X: np.ndarray, y: np.ndarray, seed: int, limit: int | None = MAX_RECORDS) -> tuple[np.ndarray, np.ndarray]:
    """The records of one seed, in stream order: a ``default_rng(seed)`` permutation of
    the file, cut to its first ``limit`` records.

    >>> X = np.arange(10.0).reshape(5, 2); y = np.array([0, 0, 1, 0, 1])
    >>> Xs, ys = protocol_records(X, y, seed=0, limit=3)
    >>> Xs[:, 0].tolist(), ys.tolist()
    ([4.0, 8.0, 6.0], [1, 1, 0])
    """
    order = np.random.default_rng(seed).permutation(len(X))
    if limit is not None:
        order = order[:limit]
    return X[order], y[order]


def records_digest(X: np.ndarray, y: np.ndarray) -> str:
    """A fingerprint of exactly what was streamed, so a table can show that every
    detector saw the same records."""
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(X, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(y, dtype=np.int8).tobytes())
    return h.hexdigest()[:16]


def metrics(y: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """ROC-AUC and average precision, scikit-learn's, over all streamed records."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} non-finite scores")
    return float(roc_auc_score(y, scores)), float(average_precision_score(y, scores))


# -- detectors -------------------------------------------------------------------------------------


@dataclasses.dataclass
class DetectorSpec:
    """One row of the tables: what runs (``runner``, a ``module:function`` taking the
    records and the seed plus ``params``), and on which seeds."""

    label: str
    kind: str  # "ours", "peer" or "offline"
    runner: str
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    seeds: tuple[int, ...] | None = None  # None: every seed of the run
    note: str = ""

    def run_seeds(self, seeds: Sequence[int]) -> list[int]:
        return [s for s in seeds if self.seeds is None or s in self.seeds]


PEERS: dict[str, DetectorSpec] = {
    spec.label: spec
    for spec in (
        DetectorSpec("river HST", "peer", "benchmarks.peers:river_hst", note="river HalfSpaceTrees (defaults) behind river MinMaxScaler"),
        DetectorSpec("pysad LODA", "peer", "benchmarks.peers:pysad_loda", note="pysad LODA (defaults)"),
        DetectorSpec("pysad RSHash", "peer", "benchmarks.peers:pysad_rshash", note="pysad RSHash (defaults), range [0, 1] behind an online min-max scaler"),
        DetectorSpec("pysad HST", "peer", "benchmarks.peers:pysad_hst", note="pysad HalfSpaceTrees (defaults), range [0, 1] behind an online min-max scaler"),
        DetectorSpec("pysad xStream", "peer", "benchmarks.peers:pysad_xstream", note="pysad xStream (defaults)"),
        DetectorSpec(
            "pysad IForestASD", "peer", "benchmarks.peers:pysad_iforestasd", seeds=(0,), note="pysad IForestASD (defaults); it streams about 200 records/s, so it runs on seed 0 only"
        ),
        DetectorSpec("offline IF", "offline", "benchmarks.peers:offline_iforest", note="OFFLINE reference: scikit-learn IsolationForest (defaults) fit on all the records it scores"),
        # Not protocol v1 (rule 5): the range of every feature taken from the whole file, as
        # pysad's own examples do. Only on request, to show what that range is worth.
        DetectorSpec("pysad RSHash (file range)", "offline", "benchmarks.peers:pysad_rshash", {"bounds": "file"}, note="NOT PROTOCOL: pysad RSHash with the range of the whole file"),
        DetectorSpec("pysad HST (file range)", "offline", "benchmarks.peers:pysad_hst", {"bounds": "file"}, note="NOT PROTOCOL: pysad HalfSpaceTrees with the range of the whole file"),
    )
}
PEER_KEYS = {
    "river-hst": "river HST", "loda": "pysad LODA", "rshash": "pysad RSHash", "pysad-hst": "pysad HST", "xstream": "pysad xStream",
    "iforestasd": "pysad IForestASD", "offline-if": "offline IF", "rshash-file-range": "pysad RSHash (file range)", "pysad-hst-file-range": "pysad HST (file range)",
}  # fmt: skip
DEFAULT_PEERS = ("river-hst", "loda", "rshash", "pysad-hst", "xstream", "iforestasd", "offline-if")

def _deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def parse_sets(items: Iterable[str]) -> dict[str, Any]:
    """``["window.size=128", "detector.params.n_trees=25"]`` to nested overrides.

    >>> parse_sets(["window.size=128", "detector.params.lr=1e-3"])
    {'window': {'size': 128}, 'detector': {'params': {'lr': 0.001}}}
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {item!r}: expected key.path=value")
        value = yaml.safe_load(raw)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)  # YAML 1.1 reads "1e-3" as a string
        node = out
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def our_spec(item: str, overrides: Mapping[str, Any]) -> DetectorSpec:
    """A detector of ours from ``name``, ``path.yaml`` or ``label=either``; settings are
    validated now so a typo fails before any job starts."""
    from streamad.config import load_settings
    from streamad.factory import detector_name

    label, sep, spec = item.partition("=")
    if not sep:
        label, spec = item, item
    config = spec if spec.endswith((".yaml", ".yml")) else None
    merged = dict(overrides)
    if config is None:
        merged = _deep_merge({"detector": {"name": spec}}, merged)
    settings = load_settings(config, merged, env={})
    resolved = detector_name(settings)
    note = f"streamad pipeline, detector {resolved!r}" + (f" (registry name {spec!r})" if spec != resolved and config is None else "")
    if config is not None:
        note += f", settings {config}"
    params = {"config": config, "overrides": merged}
    return DetectorSpec(f"ours:{label}", "ours", "benchmarks.odds:run_streamad", params, note=note)


def run_streamad(X: np.ndarray, seed: int, config: str | None = None, overrides: Mapping[str, Any] | None = None) -> tuple[np.ndarray, float, dict[str, Any]]:
    """Stream ``X`` through the replay pipeline built from settings; scores of every
    record in stream order and the seconds of ``Pipeline.run``."""
    from benchmarks.peers import Clock
    from streamad.app.replay import window_description
    from streamad.config import load_settings
    from streamad.connectors.odds import ArraySource
    from streamad.connectors.sinks import NullSink
    from streamad.factory import detector_name
    from streamad.pipeline import Observer, Pipeline, WindowResult

    settings = load_settings(config, _deep_merge(overrides or {}, {"detector": {"seed": seed}}), env={})

    class Scores(Observer):
        def __init__(self) -> None:
            self.scores: list[np.ndarray] = []
            self.offsets: list[np.ndarray] = []

        def on_window(self, result: WindowResult) -> None:
            self.scores.append(result.scores)
            self.offsets.append(result.window.offsets)

    seen = Scores()
    pipeline = Pipeline(settings, NullSink(), observers=[seen])
    source = ArraySource(X, stream="odds")
    with Clock() as clock:
        counts = pipeline.run(source)
    offsets = np.concatenate(seen.offsets)
    if counts.rejected or not np.array_equal(offsets, np.arange(1, len(X) + 1)):
        raise RuntimeError(f"the pipeline did not score every record once, in order ({counts})")
    detector = pipeline.lanes[source.lane].detector
    info = {
        "detector": detector_name(settings),
        "params": getattr(detector, "params", settings.detector.params),
        "window": window_description(settings),
        "scaler": pipeline.lanes[source.lane].scaler.name,
        "threshold": settings.threshold.kind,
        "driven": f"streamad pipeline, windows of {window_description(settings)}: score the window, then learn it",
        "cpu_seconds": clock.cpu,
    }
    return np.concatenate(seen.scores), clock.wall, info


# -- jobs --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Job:
    spec: DetectorSpec
    dataset: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.spec.label}|{self.dataset}|{self.seed}"


def _resolve(runner: str) -> Callable[..., Any]:
    module, _, name = runner.partition(":")
    return getattr(importlib.import_module(module), name)


def _source_hash(paths: Iterable[Path]) -> str:
    h = hashlib.sha1()
    for p in sorted(paths):
        h.update(str(p.relative_to(ROOT)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("numpy", "scipy", "scikit-learn", "river", "pysad", "torch"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def fingerprint(spec: DetectorSpec, cap: float, limit: int | None) -> str:
    """What a cached result depends on: the spec, the runner's code, the library
    versions, our own code for our detectors, the cap and the record limit."""
    h = hashlib.sha1()
    h.update(json.dumps([spec.runner, spec.params, cap, limit, _versions()], sort_keys=True, default=str).encode())
    h.update(inspect.getsource(_resolve(spec.runner)).encode())
    if spec.kind == "ours":
        h.update(_source_hash([*ROOT.glob("streamad/**/*.py")]).encode())
    return h.hexdigest()[:16]


def run_pool(fn: Callable[[Any], Any], jobs: Sequence[Any], workers: int, every: int = 10) -> list[Any]:
    """``fn`` over ``jobs`` in ``workers`` fresh (spawned) processes, results in finishing
    order, progress on stderr every ``every`` jobs."""
    t0 = time.time()
    out: list[Any] = []
    with mp.get_context("spawn").Pool(workers) as pool:
        for i, r in enumerate(pool.imap_unordered(fn, jobs), 1):
            out.append(r)
            if i % every == 0 or i == len(jobs):
                print(f"{i}/{len(jobs)} jobs, {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
    return out


def single_thread() -> None:
    for var in THREAD_VARS:
        os.environ[var] = "1"
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)


def _job_main(conn: mpc.Connection, job: dict[str, Any], data_dir: str, limit: int | None) -> None:
    """One detector × file × seed, in its own process so that it can be killed."""
    try:
        single_thread()
        from streamad.connectors.odds import load_mat

        X, y = load_mat(Path(data_dir) / f"{job['dataset']}.mat")
        if y is None:
            raise ValueError(f"{job['dataset']}.mat has no labels")
        X, y = protocol_records(X, y, job["seed"], limit)
        conn.send(("start", {"records": len(X), "records_sha": records_digest(X, y)}))
        runner = _resolve(job["runner"])
        scores, seconds, info = runner(X, job["seed"], **job["params"])
        cpu = info.pop("cpu_seconds", None)
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (len(X),):
            raise RuntimeError(f"{len(scores)} scores for {len(X)} records")
        # Only now do labels meet scores.
        auc, ap = metrics(y, scores)
        rate = len(X) / seconds if seconds > 0 else math.inf
        conn.send(("done", {"status": "ok", "roc_auc": auc, "ap": ap, "seconds": seconds, "records_per_s": rate, "cpu_seconds": cpu, "load_avg_1m": os.getloadavg()[0], "info": info}))
    except BaseException as e:  # noqa: BLE001 - reported as the job's result
        conn.send(("done", {"status": "error", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=8)}))
    finally:
        conn.close()


class Cache:
    """Raw per-job results in one JSON file, safe for two harnesses at once (a file lock
    around read-merge-write)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def _locked(self) -> Any:
        import fcntl

        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def load(self) -> dict[str, Any]:
        with self._locked():
            return self._read()

    def put(self, key: str, result: Mapping[str, Any]) -> None:
        with self._locked():
            data = self._read()
            data[key] = dict(result)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            tmp.replace(self.path)


@dataclasses.dataclass
class _Running:
    proc: Any
    job: Job
    started: float
    loop_started: float | None = None
    start_info: dict[str, Any] = dataclasses.field(default_factory=dict)


def run_jobs(
    jobs: Sequence[Job],
    data_dir: Path,
    cap: float = CAP_SECONDS,
    workers: int = 2,
    limit: int | None = MAX_RECORDS,
    on_result: Callable[[Job, dict[str, Any]], None] | None = None,
    load_grace: float = 120.0,
) -> dict[str, dict[str, Any]]:
    """Run every job in its own process, ``workers`` at a time; a job whose loop runs
    past ``cap`` seconds is killed and reported as a timeout."""
    for var in THREAD_VARS:  # inherited by the fork server and every job
        os.environ[var] = "1"
    ctx = mp.get_context("forkserver")
    # Imported once in the fork server rather than in every job; a missing module is skipped.
    ctx.set_forkserver_preload(["numpy", "scipy.io", "sklearn.metrics", "sklearn.ensemble", "river", "pysad.models", "torch", "streamad.connectors.odds", "streamad.pipeline", "benchmarks.peers"])
    pending = deque(jobs)
    running: dict[Any, _Running] = {}
    results: dict[str, dict[str, Any]] = {}

    def finish(conn: Any, result: dict[str, Any]) -> None:
        r = running.pop(conn)
        r.proc.join(timeout=5)
        if r.proc.is_alive():
            r.proc.kill()
            r.proc.join()
        conn.close()
        result = {**r.start_info, **result, "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        results[r.job.key] = result
        if on_result is not None:
            on_result(r.job, result)

    try:
        _drive(ctx, pending, running, data_dir, cap, workers, limit, load_grace, finish)
    finally:  # interrupted: leave no job behind
        for r in running.values():
            r.proc.kill()
            r.proc.join()
    return results


def _drive(ctx: Any, pending: deque[Job], running: dict[Any, _Running], data_dir: Path, cap: float, workers: int, limit: int | None, load_grace: float, finish: Callable[..., None]) -> None:
    while pending or running:
        while pending and len(running) < workers:
            job = pending.popleft()
            parent, child = ctx.Pipe(duplex=False)
            payload = {"dataset": job.dataset, "seed": job.seed, "runner": job.spec.runner, "params": job.spec.params}
            proc = ctx.Process(target=_job_main, args=(child, payload, str(data_dir), limit), daemon=True)
            proc.start()
            child.close()
            running[parent] = _Running(proc, job, time.monotonic())
        for conn in mpc.wait(list(running), timeout=0.25):
            try:
                kind, body = conn.recv()
            except (EOFError, OSError):
                code = running[conn].proc.exitcode
                finish(conn, {"status": "error", "error": f"worker died (exit code {code})"})
                continue
            if kind == "start":
                running[conn].loop_started = time.monotonic()
                running[conn].start_info = body
            else:
                finish(conn, body)
        now = time.monotonic()
        for conn, r in list(running.items()):
            if r.loop_started is not None and now - r.loop_started > cap:
                r.proc.kill()
                finish(conn, {"status": "timeout", "cap_seconds": cap, "seconds": now - r.loop_started})
            elif r.loop_started is None and now - r.started > load_grace:
                r.proc.kill()
                finish(conn, {"status": "error", "error": f"no start after {load_grace:.0f} s of loading"})


# -- tables --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Cell:
    """One detector on one file, over its seeds."""

    status: str  # ok | timeout | error | missing
    auc: list[float]
    ap: list[float]
    rate: list[float]
    seeds: int
    wall_per_cpu: list[float] = dataclasses.field(default_factory=list)
    cpu_rate: list[float] = dataclasses.field(default_factory=list)  # records per CPU-second
    failed: int = 0
    records: int | None = None
    records_sha: list[str] = dataclasses.field(default_factory=list)

    @staticmethod
    def of(runs: Sequence[dict[str, Any] | None]) -> Cell:
        ok = [r for r in runs if r is not None and r.get("status") == "ok"]
        statuses = [None if r is None else r.get("status") for r in runs]
        if len(ok) == len(runs) and runs:
            status = "ok"
        elif "timeout" in statuses:
            status = "timeout"
        elif "error" in statuses:
            status = "error"
        else:
            status = "missing"
        recs = [r.get("records") for r in runs if r is not None and r.get("records") is not None]
        return Cell(
            status,
            [r["roc_auc"] for r in ok],
            [r["ap"] for r in ok],
            [r["records_per_s"] for r in ok],
            len(runs),
            failed=len(runs) - len(ok),
            records=recs[0] if recs else None,
            records_sha=[r.get("records_sha", "") for r in runs if r is not None],
            wall_per_cpu=[r["seconds"] / r["cpu_seconds"] for r in ok if r.get("cpu_seconds")],
            cpu_rate=[r["records"] / r["cpu_seconds"] for r in ok if r.get("cpu_seconds") and r.get("records")],
        )

    def mean(self, what: str) -> float:
        vals = getattr(self, what)
        return float(np.mean(vals)) if self.status == "ok" else math.nan

    def std(self, what: str) -> float:
        vals = getattr(self, what)
        return float(np.std(vals, ddof=1)) if self.status == "ok" and len(vals) > 1 else math.nan

    def median_rate(self, clock: str = "wall") -> float:
        vals = self.rate if clock == "wall" else self.cpu_rate
        return float(np.median(vals)) if self.status == "ok" and vals else math.nan


def mean_ranks(values: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """Mean rank over files (1 = best, ties share the average rank); a detector with no
    result on a file (timeout, error) ranks below every detector with one.

    >>> mean_ranks({"a": [0.9, 0.5], "b": [0.8, math.nan], "c": [0.8, 0.7]})
    {'a': 1.5, 'b': 2.75, 'c': 1.75}
    """
    from scipy.stats import rankdata

    names = list(values)
    if not names:
        return {}
    table = np.array([values[n] for n in names], dtype=np.float64)  # detectors × files
    ranks = np.empty_like(table)
    for j in range(table.shape[1]):
        col = np.where(np.isnan(table[:, j]), -np.inf, table[:, j])
        ranks[:, j] = rankdata(-col, method="average")
    return {n: float(ranks[i].mean()) for i, n in enumerate(names)}


@dataclasses.dataclass
class Summary:
    specs: list[DetectorSpec]
    datasets: list[str]
    seeds: list[int]
    cells: dict[tuple[str, str], Cell]

    def streaming(self) -> list[DetectorSpec]:
        return [s for s in self.specs if s.kind != "offline"]

    def per_file(self, label: str, what: str) -> list[float]:
        return [self.cells[label, d].mean(what) for d in self.datasets]

    def mean_over_files(self, label: str, what: str, files: Sequence[str] | None = None) -> tuple[float, int]:
        files = self.datasets if files is None else files
        vals = [self.cells[label, d].mean(what) for d in files]
        done = [v for v in vals if not math.isnan(v)]
        return (float(np.mean(done)) if done else math.nan), len(done)

    def common_files(self, labels: Sequence[str] | None = None) -> list[str]:
        labels = [s.label for s in self.specs] if labels is None else labels
        return [d for d in self.datasets if all(self.cells[l, d].status == "ok" for l in labels)]

    def ranks(self, what: str) -> dict[str, float]:
        return mean_ranks({s.label: self.per_file(s.label, what) for s in self.streaming()})

    def median_rate(self, label: str, files: Sequence[str] | None = None, clock: str = "wall") -> float:
        files = self.datasets if files is None else files
        vals = [self.cells[label, d].median_rate(clock) for d in files]
        vals = [v for v in vals if not math.isnan(v)]
        return float(np.median(vals)) if vals else math.nan


def summarize(specs: Sequence[DetectorSpec], datasets: Sequence[str], seeds: Sequence[int], results: Mapping[str, Mapping[str, Any]]) -> Summary:
    cells = {}
    for spec in specs:
        for d in datasets:
            runs = [results.get(Job(spec, d, s).key) for s in spec.run_seeds(seeds)]
            cells[spec.label, d] = Cell.of(runs)  # type: ignore[arg-type]
    return Summary(list(specs), list(datasets), list(seeds), cells)


def _fmt_cell(cell: Cell, what: str) -> str:
    if cell.status == "ok":
        sd = cell.std(what)
        return f"{cell.mean(what):.3f} ± {sd:.3f}" if not math.isnan(sd) else f"{cell.mean(what):.3f}"
    if cell.status == "timeout":
        return "**timeout**" + (f" ({cell.failed}/{cell.seeds} seeds)" if cell.failed < cell.seeds else "")
    return f"**{cell.status}**"


def _fmt_rate(v: float) -> str:
    if math.isnan(v):
        return "—"
    return f"{v / 1000:.1f}k" if v >= 10_000 else f"{v:,.0f}"


def _ratio(a: float, b: float) -> str:
    return "—" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.2f}×"


def render_markdown(s: Summary, meta: Mapping[str, Any]) -> str:
    labels = [sp.label for sp in s.specs]
    ours = [sp for sp in s.specs if sp.kind == "ours"]
    head = "| file | records | " + " | ".join(labels) + " |\n|---|---:|" + "---:|" * len(labels)
    common = s.common_files()
    out = [
        "# ODDS, prequential protocol v1",
        "",
        f"Protocol: `../shared/benchmarks/PROTOCOL.md` (v1). Seeds {', '.join(map(str, s.seeds))}; files over {meta['limit']:,} records stream the first {meta['limit']:,} of each seed's permutation; "
        f"test-then-train; labels only for the final metric; cap {meta['cap']:.0f} s per detector, file and seed.",
        "",
        f"- Machine: {meta['machine']}, {meta['cores']} cores; {meta['workers']} jobs at a time, each single-threaded (torch and BLAS set to 1 thread).",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in meta['versions'].items())}.",
        f"- Date: {meta['date']}; git commit {meta['commit']}.",
        f"- Command: `{meta['command']}`",
        f"- Measured: {meta['provenance']}",
        "",
        "Cells are mean ± standard deviation (ddof 1) over seeds. **timeout**: over the cap; never dropped, it counts as the worst rank of its file and is left out of the means. "
        "Mean rank is among the streaming detectors (1 = best); the offline Isolation Forest is a reference that fits on all the records it then scores, so it is not ranked.",
    ]
    for title, what in (("ROC-AUC", "auc"), ("Average precision", "ap")):
        ranks = s.ranks(what)
        out += ["", f"## {title}", "", head]
        for d in s.datasets:
            recs = next((s.cells[l, d].records for l in labels if s.cells[l, d].records), None)
            out.append(f"| {d} | {recs if recs is not None else '?'} | " + " | ".join(_fmt_cell(s.cells[l, d], what) for l in labels) + " |")
        row = []
        for l in labels:
            m, k = s.mean_over_files(l, what)
            row.append(f"**{m:.3f}**" + (f" ({k}/{len(s.datasets)} files)" if k < len(s.datasets) else ""))
        out.append("| **mean over files** | | " + " | ".join(row) + " |")
        if len(common) < len(s.datasets):
            out.append(f"| mean over the {len(common)} files every detector finished | | " + " | ".join(f"{s.mean_over_files(l, what, common)[0]:.3f}" for l in labels) + " |")
        out.append("| **mean rank** | | " + " | ".join(f"**{ranks[l]:.2f}**" if l in ranks else "—" for l in labels) + " |")
    out += [
        "",
        "## Throughput",
        "",
        "Records per second of the score-and-learn loop (loading excluded), median over seeds: the protocol's figure. The machine is shared: the row "
        "'loop wall-s ÷ loop CPU-s' is 1 when a job had its core to itself, and higher when it waited for one; the rows by CPU-seconds below it "
        "take that waiting out, for a comparison that does not depend on what else ran at the time.",
        "",
        head,
    ]
    for d in s.datasets:
        recs = next((s.cells[l, d].records for l in labels if s.cells[l, d].records), None)
        cells = [s.cells[l, d] for l in labels]
        out.append(f"| {d} | {recs if recs is not None else '?'} | " + " | ".join(_fmt_rate(c.median_rate()) if c.status == "ok" else _fmt_cell(c, "auc") for c in cells) + " |")
    out.append("| **median over files** | | " + " | ".join(f"**{_fmt_rate(s.median_rate(l))}**" for l in labels) + " |")
    contention = [np.median([v for d in s.datasets for v in s.cells[l, d].wall_per_cpu] or [math.nan]) for l in labels]
    out.append("| loop wall-s ÷ loop CPU-s, median | | " + " | ".join("—" if math.isnan(c) else f"{c:.2f}" for c in contention) + " |")
    for o in ours:
        out.append(
            f"| {o.label} ÷ this (files both finished) | | "
            + " | ".join(_ratio(s.median_rate(o.label, s.common_files([o.label, l])), s.median_rate(l, s.common_files([o.label, l]))) for l in labels)
            + " |"
        )
    out.append("| records per loop CPU-second, median over files | | " + " | ".join(_fmt_rate(s.median_rate(l, clock="cpu")) for l in labels) + " |")
    for o in ours:
        out.append(
            f"| {o.label} ÷ this, by CPU-seconds | | "
            + " | ".join(_ratio(s.median_rate(o.label, s.common_files([o.label, l]), "cpu"), s.median_rate(l, s.common_files([o.label, l]), "cpu")) for l in labels)
            + " |"
        )
    out += ["", "## Detectors", "", "| detector | what runs | driven | records scored per step |", "|---|---|---|---|"]
    for sp in s.specs:
        info = meta["info"].get(sp.label, {})
        step = f"windows of {info['window']}" if "window" in info else "1 (record by record)" if sp.kind == "peer" else "all at once (offline)"
        detail = sp.note + (f"; params {json.dumps(info['params'], sort_keys=True, default=str)}" if info.get("params") else "")
        out.append(f"| {sp.label} | {detail}. | {info.get('driven', '')} | {step} |")
    same = all(len({sha for l in labels for sha in [_sha_of(s, l, d, seed, meta)] if sha}) <= 1 for d in s.datasets for seed in s.seeds)
    out += ["", f"Same records for every detector: {'yes, checked by fingerprint of every streamed array' if same else '**NO** — see odds.json'}."]
    failures = [(l, d, c) for (l, d), c in s.cells.items() if c.status != "ok"]
    if failures:
        out += ["", "## Timeouts and errors", ""]
        for l, d, c in failures:
            out.append(f"- {l} on {d}: {c.status} ({c.failed}/{c.seeds} seeds)")
    return "\n".join(out) + "\n"


def _sha_of(s: Summary, label: str, dataset: str, seed: int, meta: Mapping[str, Any]) -> str | None:
    r = meta["results"].get(f"{label}|{dataset}|{seed}")
    return None if r is None else r.get("records_sha")


def summary_lines(s: Summary) -> list[str]:
    """Our figure beside each peer's, as ratios, over the files both finished."""
    ours = [sp for sp in s.specs if sp.kind == "ours"]
    peers = [sp for sp in s.specs if sp.kind != "ours"]
    lines = [f"note: {sp.label} runs on seed(s) {', '.join(map(str, sp.run_seeds(s.seeds)))} only ({sp.note})" for sp in s.specs if sp.seeds is not None]
    for o in ours:
        m_auc, k = s.mean_over_files(o.label, "auc")
        m_ap, _ = s.mean_over_files(o.label, "ap")
        ranks = s.ranks("auc")
        lines.append(
            f"{o.label}: mean ROC-AUC {m_auc:.3f}, mean AP {m_ap:.3f} over {k}/{len(s.datasets)} files, "
            f"median {_fmt_rate(s.median_rate(o.label))} rec/s, mean AUC rank {ranks.get(o.label, math.nan):.2f}"
        )
        if not peers:
            continue
        lines.append(f"  {'peer':<18} {'files':>5} {'AUC peer':>9} {'ours':>6} {'ratio':>6}   {'AP peer':>8} {'ours':>6} {'ratio':>6}   {'rec/s peer':>10} {'ours':>8} {'ratio':>7}  {'by CPU-s':>8}")
        for p in peers:
            files = s.common_files([o.label, p.label])
            pa, oa = s.mean_over_files(p.label, "auc", files)[0], s.mean_over_files(o.label, "auc", files)[0]
            pp, op = s.mean_over_files(p.label, "ap", files)[0], s.mean_over_files(o.label, "ap", files)[0]
            pr, orr = s.median_rate(p.label, files), s.median_rate(o.label, files)
            cpu = _ratio(s.median_rate(o.label, files, "cpu"), s.median_rate(p.label, files, "cpu"))
            lines.append(
                f"  {p.label:<18} {len(files):>5} {pa:>9.3f} {oa:>6.3f} {_ratio(oa, pa):>6}   {pp:>8.3f} {op:>6.3f} {_ratio(op, pp):>6}   "
                f"{_fmt_rate(pr):>10} {_fmt_rate(orr):>8} {_ratio(orr, pr):>7}  {cpu:>8}"
            )
    return lines


def plot(s: Summary, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(13, 13), gridspec_kw={"height_ratios": [1, 1, 1.1]})
    x = np.arange(len(s.datasets))
    markers = "o^svD<>Ph*X"
    palette = iter(plt.get_cmap("tab10").colors)
    colors = {sp.label: "black" if sp.kind == "ours" else "grey" if sp.kind == "offline" else next(palette) for sp in s.specs}
    for i, sp in enumerate(s.specs):
        style = {"marker": markers[i % len(markers)], "linestyle": "none", "markersize": 8 if sp.kind == "ours" else 6, "label": sp.label, "color": colors[sp.label]}
        if sp.kind == "ours" and i:
            style.update(markerfacecolor="none")
        elif sp.kind == "offline":
            style.update(alpha=0.6)
        for ax, what in zip(axes[:2], ("auc", "ap")):
            ax.plot(x + (i - len(s.specs) / 2) * 0.06, s.per_file(sp.label, what), **style)
    for ax, title in zip(axes[:2], ("ROC-AUC (mean over seeds)", "Average precision (mean over seeds)")):
        ax.set_xticks(x, s.datasets, rotation=45, ha="right")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(ncol=4, fontsize=8, loc="lower left")
    ax = axes[2]
    for i, sp in enumerate(s.specs):
        rate, (auc, _) = s.median_rate(sp.label), s.mean_over_files(sp.label, "auc")
        if math.isnan(rate) or math.isnan(auc):
            continue
        ax.scatter([rate], [auc], marker=markers[i % len(markers)], s=70, color=colors[sp.label])
        ax.annotate(sp.label, (rate, auc), textcoords="offset points", xytext=(6, 4), fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("records/s (median over files; one thread)")
    ax.set_ylabel("mean ROC-AUC over files")
    ax.set_title("Throughput vs mean ROC-AUC")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- command line -----------------------------------------------------------------------------------------


def _machine() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_meta(module: str, argv: Sequence[str] | None, **extra: Any) -> dict[str, Any]:
    """What a table says of the run that made it: the command, the date, the commit and
    the machine, then ``extra``."""
    args = argv if argv is not None else sys.argv[1:]
    return {"command": f"python -m {module} " + " ".join(args), "date": dt.date.today().isoformat(), "commit": _commit(), "machine": _machine(), **extra}


def publish(stem: str, text: str, data: Mapping[str, Any]) -> None:
    """Write a table (``stem``.md) and the data behind it (``stem``.json) under benchmarks/results."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.md").write_text(text)
    (RESULTS / f"{stem}.json").write_text(json.dumps(data, indent=1, default=str))


def _commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "streamad", "benchmarks"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return sha + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _default_data_dir() -> Path:
    for p in (ROOT.parent / "shared" / "datasets" / "odds", ROOT.parent.parent / "shared" / "datasets" / "odds"):
        if p.is_dir():
            return p
    return ROOT.parent / "shared" / "datasets" / "odds"


def build_specs(detectors: Sequence[str], overrides: Mapping[str, Any], peers: Sequence[str] | None) -> list[DetectorSpec]:
    specs = [our_spec(d, overrides) for d in detectors]
    for p in peers or ():
        specs.append(PEERS[PEER_KEYS[p]])
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"two detectors share a label: {labels}; name them with label=spec")
    return specs


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.odds", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detectors", "--detector", default="default", help="ours, comma-separated: registry names or settings files, optionally label=spec (default: default)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="settings override for our detectors, e.g. window.size=128 (repeatable)")
    ap.add_argument("--peers", default=",".join(DEFAULT_PEERS), help=f"peers, comma-separated, from {', '.join(PEER_KEYS)} (default: {', '.join(DEFAULT_PEERS)})")
    ap.add_argument("--no-peers", action="store_true", help="run only our detectors")
    ap.add_argument("--datasets", default=",".join(DATASETS), help="ODDS files (default: all 20)")
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    ap.add_argument("--data-dir", type=Path, default=_default_data_dir())
    ap.add_argument("--cap", type=float, default=CAP_SECONDS, help="seconds per detector, file and seed before a timeout (default 300)")
    ap.add_argument("--limit", type=int, default=MAX_RECORDS, help="records streamed from larger files (default 60000; 0 streams all, a separate 'full' run)")
    ap.add_argument("--jobs", type=int, default=2, help="jobs at a time (default 2)")
    ap.add_argument("--fresh", action="store_true", help="ignore cached results (new results still go to the cache)")
    ap.add_argument("--cache", type=Path, default=CACHE_DIR / "odds_jobs.json")
    ap.add_argument("--out", type=Path, default=None, help="directory for odds.md/.json/.png (default: benchmarks/results for a full protocol run, else benchmarks/.cache/partial)")
    args = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that running jobs are killed too

    datasets = [d for d in args.datasets.split(",") if d]
    unknown = sorted(set(datasets) - set(DATASETS))
    if unknown:
        raise SystemExit(f"unknown ODDS files {unknown}; known: {', '.join(DATASETS)}")
    missing = [d for d in datasets if not (args.data_dir / f"{d}.mat").is_file()]
    if missing:
        raise SystemExit(f"not found in {args.data_dir}: {', '.join(d + '.mat' for d in missing)} (use --data-dir)")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    peers = [] if args.no_peers else [p for p in args.peers.split(",") if p]
    bad = sorted(set(peers) - set(PEER_KEYS))
    if bad:
        raise SystemExit(f"unknown peers {bad}; known: {', '.join(PEER_KEYS)}")
    limit = args.limit or None
    specs = build_specs([d for d in args.detectors.split(",") if d], parse_sets(args.set), peers)
    full = datasets == list(DATASETS) and seeds == list(SEEDS) and limit == MAX_RECORDS and set(peers) == set(DEFAULT_PEERS) and args.cap == CAP_SECONDS
    out = args.out or (RESULTS if full else CACHE_DIR / "partial")

    run_id = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    commit = _commit()
    cache = Cache(args.cache)
    cached = {} if args.fresh else cache.load()
    prints = {s.label: fingerprint(s, args.cap, limit) for s in specs}
    results: dict[str, dict[str, Any]] = {}
    jobs: list[Job] = []
    for spec in specs:
        for d in datasets:
            for seed in spec.run_seeds(seeds):
                job = Job(spec, d, seed)
                hit = cached.get(job.key)
                if hit is not None and hit.get("fingerprint") == prints[spec.label] and hit.get("status") in ("ok", "timeout"):
                    results[job.key] = hit
                else:
                    jobs.append(job)
    # Long jobs first, so the run does not end waiting for one of them.
    jobs.sort(key=lambda j: (j.dataset not in ("http", "shuttle", "mammography"), j.spec.kind == "ours"))
    print(f"{len(results)} results from the cache, {len(jobs)} jobs to run ({args.jobs} at a time, cap {args.cap:.0f} s)", file=sys.stderr)
    done = 0

    def record(job: Job, result: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        result = {**result, "fingerprint": prints[job.spec.label], "run_id": run_id, "commit": commit}
        results[job.key] = result
        cache.put(job.key, result)
        if result["status"] == "ok":
            what = f"AUC {result['roc_auc']:.3f} AP {result['ap']:.3f} {_fmt_rate(result['records_per_s'])} rec/s"
        else:
            what = result["status"] + (f": {result.get('error', '')}" if result["status"] == "error" else "")
        print(f"[{done}/{len(jobs)}] {job.key}: {what}", file=sys.stderr, flush=True)

    if jobs:
        run_jobs(jobs, args.data_dir, cap=args.cap, workers=args.jobs, limit=limit, on_result=record)

    summary = summarize(specs, datasets, seeds, results)
    runs = sorted({r.get("run_id", "?") for r in results.values()})
    measured_at = sorted({r.get("commit", "?") for r in results.values()})
    info = {}
    for spec in specs:
        for key, r in results.items():
            if key.startswith(spec.label + "|") and r.get("status") == "ok":
                info[spec.label] = r.get("info", {})
                break
    meta = {
        "limit": limit or 0,
        "cap": args.cap,
        "machine": _machine(),
        "cores": os.cpu_count(),
        "workers": args.jobs,
        "versions": _versions(),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "command": "python -m benchmarks.odds " + " ".join(argv if argv is not None else sys.argv[1:]),
        "provenance": (f"every job in this run ({run_id})" if runs == [run_id] else f"{len(runs)} runs, {runs[0]} to {runs[-1]} (resumed from the cache)")
        + f", at commit {', '.join(measured_at)}",
        "info": info,
        "results": results,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "odds.md").write_text(render_markdown(summary, meta))
    raw = {k: v for k, v in meta.items() if k != "results"}
    raw["detectors"] = [dataclasses.asdict(s) for s in specs]
    raw["datasets"], raw["seeds"] = datasets, seeds
    raw["jobs"] = {k: {kk: vv for kk, vv in v.items() if kk != "traceback"} for k, v in sorted(results.items())}
    (out / "odds.json").write_text(json.dumps(raw, indent=1, default=str))
    plot(summary, out / "odds.png")
    for failure in (r for r in results.values() if r.get("status") == "error"):
        print(failure.get("traceback", failure.get("error")), file=sys.stderr)
    print("\n".join(summary_lines(summary)))
    print(f"tables: {out / 'odds.md'}  raw: {out / 'odds.json'}  plot: {out / 'odds.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
