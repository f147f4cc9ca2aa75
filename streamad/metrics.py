"""Prometheus metrics: a pipeline observer and the HTTP endpoint that serves it.

Names follow Prometheus conventions: the ``streamad_`` prefix, base units
(``_seconds``), ``_total`` counters, and labels of low cardinality only — the stream
(file or topic) and the partition, plus a fixed reason code, drift kind or feature
name where a metric needs one; never a record key.

Histograms over records (scores, latencies) are filled a window at a time with numpy
(``VectorHistogram``), so a busy stream does not pay a Python call per record.

``start_metrics(settings)`` is the entry point for any run loop: it returns a
``MetricsObserver`` serving ``/metrics`` (or ``None`` when metrics are off); pass it
to the ``Pipeline`` with the other observers, and give it the source's consumer lag
(``lag=source.lag`` or ``observe_lag(lane, lag)``).

>>> from prometheus_client import CollectorRegistry, generate_latest
>>> reg = CollectorRegistry()
>>> m = MetricsObserver(registry=reg, model="gaussian")
>>> m.observe_lag(Lane("sensors", 3), 42)
>>> [line for line in generate_latest(reg).decode().splitlines() if line.startswith("streamad_consumer_lag")]
['streamad_consumer_lag_records{partition="3",stream="sensors"} 42.0']
"""

from __future__ import annotations

import logging
import math
import platform
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from streamad.records import Batch, Lane, Reject

log = logging.getLogger("streamad.metrics")

# Scores have the detector's own scale: log-spaced buckets, three per decade, cover a
# Mahalanobis distance, a reconstruction loss and a probability alike.
SCORE_BUCKETS = tuple(float(f"{m}e{e}") for e in range(-3, 7) for m in (1, 2, 5))
# Score as a multiple of the current threshold: 1 is where alarms start.
RATIO_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0, 100.0)
WINDOW_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 86400.0)

LANE_LABELS = ("stream", "partition")


def _lane(lane: Lane) -> tuple[str, str]:
    return (lane.stream, str(lane.partition))


class VectorHistogram(Collector):
    """A Prometheus histogram observed with arrays of values (and optional weights).

    >>> h = VectorHistogram("x_seconds", "demo", ["stream"], buckets=(1.0, 2.0))
    >>> h.observe(("s",), np.array([0.5, 1.5, 7.0]))
    >>> [(s.name, s.labels.get("le"), s.value) for s in next(iter(h.collect())).samples][:4]
    [('x_seconds_bucket', '1.0', 1.0), ('x_seconds_bucket', '2.0', 2.0), ('x_seconds_bucket', '+Inf', 3.0), ('x_seconds_count', None, 3.0)]
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str], buckets: Sequence[float], registry: CollectorRegistry | None = None) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self._le = [_float_str(b) for b in self.bounds] + ["+Inf"]
        self._counts: dict[tuple[str, ...], np.ndarray] = {}
        self._sums: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()
        if registry is not None:
            registry.register(self)

    def observe(self, labelvalues: tuple[str, ...], values: np.ndarray, weights: np.ndarray | None = None) -> None:
        v = np.asarray(values, dtype=np.float64).ravel()
        keep = ~np.isnan(v)
        v = v[keep]
        w = None if weights is None else np.asarray(weights, dtype=np.float64).ravel()[keep]
        if len(v) == 0:
            return
        # Bucket i counts values <= bounds[i]; the last one is +Inf.
        idx = np.searchsorted(self.bounds, v, side="left")
        add = np.bincount(idx, weights=w, minlength=len(self.bounds) + 1)
        total = float(np.dot(v[np.isfinite(v)], w[np.isfinite(v)])) if w is not None else float(v[np.isfinite(v)].sum())
        with self._lock:
            c = self._counts.get(labelvalues)
            if c is None:
                self._counts[labelvalues] = add
                self._sums[labelvalues] = total
            else:
                c += add
                self._sums[labelvalues] += total

    def collect(self) -> Iterable[Metric]:
        fam = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            items = [(k, np.cumsum(c), self._sums[k]) for k, c in self._counts.items()]
        for labels, cum, total in items:
            fam.add_metric(list(labels), list(zip(self._le, (float(x) for x in cum))), total)
        yield fam

    def describe(self) -> Iterable[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)


def _float_str(x: float) -> str:
    """Bucket bounds as Prometheus clients print them (``0.001``, ``1e+06``)."""
    from prometheus_client.utils import floatToGoString

    return floatToGoString(x)


class MetricsObserver:
    """Turns pipeline events into Prometheus metrics (see ``docs/observability.md``).

    ``lag`` is polled at most once per ``lag_interval`` seconds, from the pipeline's own
    thread (a Kafka consumer must not be called from the HTTP server's thread).
    ``event_latency`` observes now minus each record's event time; ``end_offsets`` lets
    a file replay report the records left in the file as its lag.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        model: str = "",
        lag: Callable[[], Mapping[Lane, int]] | None = None,
        lag_interval: float = 1.0,
        event_latency: bool = True,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from streamad import __version__
        from streamad.drift import KINDS

        self.registry = registry if registry is not None else CollectorRegistry()
        self._lag = lag
        self.lag_interval = lag_interval
        self._lag_polled = -math.inf
        self.event_latency = event_latency
        self.wall_clock = wall_clock
        self.clock = clock
        self.end_offsets: dict[Lane, int] = {}
        self.positions: dict[Lane, int] = {}
        self._lanes: set[Lane] = set()
        self._lag_lanes: set[Lane] = set()
        self._drift_kinds = KINDS
        self.server: Any = None
        self.thread: threading.Thread | None = None
        reg = self.registry
        L = LANE_LABELS

        Info("streamad_build", "Version of streamad, the detector and Python in this process.", registry=reg).info(
            {"version": __version__, "detector": model, "python": platform.python_version()}
        )
        self.consumed = Counter("streamad_records_consumed_total", "Records read from the source (scored or rejected later).", L, registry=reg)
        self.scored = Counter("streamad_records_scored_total", "Records scored by the detector.", L, registry=reg)
        self.rejected = Counter("streamad_records_rejected_total", "Records dead-lettered, by reason code.", (*L, "reason"), registry=reg)
        self.alarms = Counter("streamad_alarms_total", "Records whose score exceeded the threshold.", L, registry=reg)
        self.window_seconds = Histogram(
            "streamad_window_processing_seconds", "Time to scale, score, threshold, emit and learn one window.", ("stream",), buckets=WINDOW_SECONDS_BUCKETS, registry=reg
        )
        self.detection_latency = VectorHistogram(
            "streamad_detection_latency_seconds",
            "Per record, from the arrival of its window's first batch to the end of the window's processing.",
            ("stream",),
            LATENCY_BUCKETS,
            reg,
        )
        self.event_latency_hist = VectorHistogram(
            "streamad_event_latency_seconds", "Per record with an event time, from that time to its detection (on a replay: the age of the data).", ("stream",), LATENCY_BUCKETS, reg
        )
        self.score = VectorHistogram("streamad_score", "Anomaly scores, in the detector's own units.", ("stream",), SCORE_BUCKETS, reg)
        self.score_ratio = VectorHistogram(
            "streamad_score_threshold_ratio", "Anomaly scores divided by the threshold in force (1 = alarm level).", ("stream",), RATIO_BUCKETS, reg
        )
        self.lag_gauge = Gauge(
            "streamad_consumer_lag_records",
            "Records not yet done, per partition this worker holds. Kafka: the high-water mark at the latest fetch minus the "
            "committed offset (before the first commit, minus where reading started); file replay: records left in the file.",
            L,
            registry=reg,
        )
        self.offset_resets = Counter(
            "streamad_offset_resets_total",
            "Kafka partitions found with their committed offset or checkpoint outside the broker's range, by reason "
            "(beyond_end: past the high-water mark; before_start: below the log start; recreated: the topic's id changed).",
            (*L, "reason"),
            registry=reg,
        )
        self.threshold = Gauge("streamad_threshold", "Alarm threshold in force for the last window (set once finite; with a threshold per key, the median over the window's records).", L, registry=reg)
        self.warmup = Gauge("streamad_detector_warmup", "1 while the detector is still warming up, else 0.", L, registry=reg)
        self.loe_flag = Gauge("streamad_loe_flag_ratio", "Share of the last window that latent outlier exposure labelled anomalous.", L, registry=reg)
        self.ess = Gauge("streamad_importance_weight_ess_ratio", "Effective sample size of the importance weights, as a share of the window.", L, registry=reg)
        self.loss = Gauge("streamad_training_loss", "Training loss of the last window learned.", L, registry=reg)
        self.checkpoint_ts = Gauge(
            "streamad_last_checkpoint_timestamp_seconds", "Unix time of the last checkpoint (sinks flushed, lane state saved when a state dir is set).", L, registry=reg
        )
        self.drift_events = Counter("streamad_drift_events_total", "Drift alarms, by kind (feature, score, or a key's lasting state adopted as normal).", (*L, "kind"), registry=reg)
        self.feature_drift = Gauge("streamad_feature_drift_statistic", "Drift statistic of each feature (PSI or KS), recent records against the reference.", (*L, "feature"), registry=reg)
        self.feature_drift_threshold = Gauge("streamad_feature_drift_threshold", "Alarm level of the feature drift statistic.", ("method",), registry=reg)
        self.score_drift = Gauge("streamad_score_drift_statistic", "Page-Hinkley statistic of the score stream's ranks (upward).", L, registry=reg)
        self.score_drift_threshold = Gauge("streamad_score_drift_threshold", "Alarm level of the score drift statistic.", registry=reg)
        self.temporal_keys = Gauge(
            "streamad_temporal_keys", "Keys whose recent history the temporal stage keeps, per lane (at most features.max_keys).", L, registry=reg
        )
        self.temporal_evictions = Counter(
            "streamad_temporal_evictions_total",
            "Keys the temporal stage forgot to stay within features.max_keys (the least recently seen first).",
            L,
            registry=reg,
        )
        self.detector_keys = Gauge(
            "streamad_detector_keys", "Keys with a model of their own, per lane (the per-key detector; at most its max_keys).", L, registry=reg
        )
        self.detector_evictions = Counter(
            "streamad_detector_key_evictions_total",
            "Keys whose own model the per-key detector forgot to stay within its max_keys (the least recently seen first).",
            L,
            registry=reg,
        )

        from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)

    # -- serving -------------------------------------------------------------------------------

    def serve(self, host: str = "0.0.0.0", port: int = 9108) -> int:
        """Serve ``/metrics`` from a daemon thread; returns the port (useful with port 0)."""
        from prometheus_client import start_http_server

        from streamad.errors import ConfigError

        try:
            self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {e.strerror or e}") from None
        return int(self.server.server_port)

    @property
    def port(self) -> int | None:
        return None if self.server is None else int(self.server.server_port)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # -- lag -------------------------------------------------------------------------------------

    def observe_lag(self, lane: Lane, lag: int | float) -> None:
        """Records of ``lane`` not yet done (Kafka: high-water mark minus committed offset)."""
        self.lag_gauge.labels(*_lane(lane)).set(max(0.0, float(lag)))

    def set_end_offsets(self, end_offsets: Mapping[Lane, int]) -> None:
        """For finite sources: one past the last offset of each lane, so lag = end − position."""
        self.end_offsets.update(end_offsets)
        self._lag = self._file_lag

    def _file_lag(self) -> dict[Lane, int]:
        return {lane: max(0, end - self.positions.get(lane, 0)) for lane, end in self.end_offsets.items()}

    def poll_lag(self, force: bool = False) -> None:
        if self._lag is None:
            return
        now = self.clock()
        if not force and now - self._lag_polled < self.lag_interval:
            return
        self._lag_polled = now
        try:
            lags = self._lag()
        except Exception as e:  # a lag probe must never stop the pipeline
            log.warning("could not read the consumer lag: %s", e)
            return
        for lane, lag in lags.items():
            self.observe_lag(lane, lag)
        # A partition that moved to another worker is that worker's to report: a value
        # left behind here would be stale from then on.
        for lane in self._lag_lanes - set(lags):
            try:
                self.lag_gauge.remove(*_lane(lane))
            except KeyError:
                pass
        self._lag_lanes = set(lags)

    def on_offset_reset(self, lane: Lane, reason: str) -> None:
        """A Kafka partition's committed offset or checkpoint was outside the broker's range."""
        self.offset_resets.labels(*_lane(lane), reason).inc()

    # -- observer hooks ----------------------------------------------------------------------

    def _new_lane(self, lane: Lane) -> None:
        """Counters start at 0, so rates and "no drift" read as 0 instead of as missing."""
        self._lanes.add(lane)
        lv = _lane(lane)
        for c in (self.consumed, self.scored, self.alarms):
            c.labels(*lv)
        for kind in self._drift_kinds:
            self.drift_events.labels(*lv, kind)

    def _advance(self, lane: Lane, last_offset: int) -> None:
        if lane not in self._lanes:
            self._new_lane(lane)
        if last_offset + 1 > self.positions.get(lane, 0):
            self.positions[lane] = last_offset + 1

    def on_batch(self, batch: Batch) -> None:
        if len(batch):
            self._advance(batch.lane, int(batch.offsets[-1]))
            self.consumed.labels(*_lane(batch.lane)).inc(len(batch))
        self.poll_lag()

    def on_rejects(self, rejects: Sequence[Reject]) -> None:
        by: dict[tuple[Lane, str], int] = {}
        for r in rejects:
            by[(r.lane, r.code)] = by.get((r.lane, r.code), 0) + 1
            self._advance(r.lane, r.offset)
        for (lane, code), n in by.items():
            lv = _lane(lane)
            self.consumed.labels(*lv).inc(n)
            self.rejected.labels(*lv, code).inc(n)
        self.poll_lag()

    def on_window(self, r: Any) -> None:
        lane, window, scores = r.lane, r.window, np.asarray(r.scores, dtype=np.float64)
        lv = _lane(lane)
        if lane not in self._lanes:
            self._new_lane(lane)
        n = len(scores)
        self.scored.labels(*lv).inc(n)
        self.alarms.labels(*lv).inc(int(np.count_nonzero(r.alarms)))
        stream = (lane.stream,)
        self.window_seconds.labels(*stream).observe(r.seconds)
        if window.arrival:
            self.detection_latency.observe(stream, np.array([max(0.0, self.clock() - window.arrival)]), np.array([float(n)]))
        if self.event_latency and window.timestamps is not None:
            self.event_latency_hist.observe(stream, np.maximum(self.wall_clock() - window.timestamps, 0.0))
        self.score.observe(stream, scores)
        # One threshold for the window, or one per record (a threshold per key): the gauge
        # shows the middle one of the window's records.
        thr = np.broadcast_to(np.asarray(r.threshold, dtype=np.float64), scores.shape)
        known = np.isfinite(thr)
        if known.any():
            self.threshold.labels(*lv).set(float(np.median(thr[known])))
            ratio = known & (thr > 0)
            if ratio.any():
                self.score_ratio.observe(stream, scores[ratio] / thr[ratio])
        rep = r.report
        self.warmup.labels(*lv).set(1.0 if rep.warmup else 0.0)
        for gauge, value in ((self.loe_flag, rep.loe_flag_rate), (self.ess, rep.ess), (self.loss, rep.loss)):
            if value is not None and math.isfinite(value):
                gauge.labels(*lv).set(float(value))
        if "keys" in rep.extra:
            self.detector_keys.labels(*lv).set(rep.extra["keys"])
            self.detector_evictions.labels(*lv).inc(rep.extra.get("evicted", 0.0))
        t = getattr(r, "temporal", None)
        if t is not None:
            self.temporal_keys.labels(*lv).set(t.keys)
            self.temporal_evictions.labels(*lv).inc(t.evictions)
        d = getattr(r, "drift", None)
        if d is not None:
            for e in d.events:
                self.drift_events.labels(*lv, e.kind).inc()
            for feature, value in d.features.items():
                self.feature_drift.labels(*lv, feature).set(value)
            if not math.isnan(d.feature_threshold):  # NaN: no monitor, only a lane's own events
                self.feature_drift_threshold.labels(d.method).set(d.feature_threshold)
            if d.score is not None:
                self.score_drift.labels(*lv).set(d.score)
            if d.score_threshold is not None:
                self.score_drift_threshold.set(d.score_threshold)

    def on_checkpoint(self, lanes: Sequence[Lane]) -> None:
        now = self.wall_clock()
        for lane in lanes:
            self.checkpoint_ts.labels(*_lane(lane)).set(now)
        self.poll_lag(force=True)


def start_metrics(
    settings: Any,
    lag: Callable[[], Mapping[Lane, int]] | None = None,
    event_latency: bool = True,
    registry: CollectorRegistry | None = None,
) -> MetricsObserver | None:
    """The metrics observer of a run, already serving on ``settings.metrics.host:port``;
    ``None`` when ``settings.metrics.enabled`` is false.

    >>> from streamad.config import load_settings
    >>> start_metrics(load_settings(env={})) is None
    True
    >>> m = start_metrics(load_settings(overrides={"metrics": {"enabled": True, "host": "127.0.0.1", "port": 0}}, env={}))
    >>> import urllib.request
    >>> body = urllib.request.urlopen(f"http://127.0.0.1:{m.port}/metrics").read().decode()
    >>> 'streamad_build_info{' in body
    True
    >>> m.close()
    """
    if not settings.metrics.enabled:
        return None
    from streamad.factory import detector_name

    m = MetricsObserver(registry=registry, model=detector_name(settings), lag=lag, event_latency=event_latency)
    port = m.serve(settings.metrics.host, settings.metrics.port)
    log.info("serving Prometheus metrics on http://%s:%d/metrics", settings.metrics.host, port)
    return m
