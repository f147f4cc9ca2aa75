"""The embedded demo: a seeded pump-station sensor stream with planted anomalies.

Six correlated sensors sampled once a second: flow drives pressure and pump current,
current drives vibration and temperature. Planted, and labelled: single-sample
spikes, two level shifts, and a flow sensor stuck at one value while the pump keeps
changing. Unlabelled: a slow temperature drift over the second half, which the model
should absorb rather than alarm on, and a handful of sensor dropouts (NaN) that must
be rejected, not scored.

>>> s = generate(n=3000, seed=1)
>>> s.X.shape, s.feature_names[:2], int(s.y.sum()) > 0, int(np.isnan(s.X).any(axis=1).sum())
((3000, 6), ('flow', 'pressure'), True, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = ("flow", "pressure", "pump_current", "vibration", "temperature", "voltage")
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@dataclass
class DemoStream:
    X: np.ndarray
    y: np.ndarray
    timestamps: np.ndarray
    feature_names: tuple[str, ...] = FEATURES
    events: list[dict[str, Any]] = field(default_factory=list)


def _ar1(rng: np.random.Generator, n: int, phi: float, sigma: float) -> np.ndarray:
    """``y[t] = e[t] + phi * y[t-1]`` with stationary variance ``sigma**2``."""
    e = rng.normal(0.0, sigma * np.sqrt(1 - phi**2), n)
    y = np.empty(n)
    prev = 0.0
    for t, et in enumerate(e.tolist()):
        prev = et + phi * prev
        y[t] = prev
    return y


def generate(n: int = 20_000, seed: int = 7, drift: bool = True, anomalies: bool = True) -> DemoStream:
    """The demo stream; ``drift``/``anomalies`` switch the planted changes on or off."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    flow = 50 + 6 * np.sin(2 * np.pi * t / 1800) + 2 * np.sin(2 * np.pi * t / 333) + _ar1(rng, n, 0.95, 1.0)
    true_flow = flow.copy()
    y = np.zeros(n, dtype=np.int8)
    events: list[dict[str, Any]] = []
    if anomalies:
        # The flow sensor freezes while the real flow goes on moving the other sensors.
        a = int(n * 0.62)
        b = a + max(50, n // 200)
        flow[a:b] = flow[a]
        y[a:b] = 1
        events.append({"kind": "stuck sensor", "feature": "flow", "start": a, "stop": b})
    pressure = 1.0 + 0.04 * true_flow + _ar1(rng, n, 0.8, 0.05)
    current = 4.0 + 0.12 * true_flow + _ar1(rng, n, 0.7, 0.15)
    vibration = 0.2 + 0.03 * current + _ar1(rng, n, 0.5, 0.02)
    temperature = 35 + 0.8 * current + _ar1(rng, n, 0.98, 0.4)
    voltage = 230 + _ar1(rng, n, 0.3, 0.8)
    X = np.column_stack([flow, pressure, current, vibration, temperature, voltage])
    if drift:
        start = n // 2
        ramp = np.clip((t - start) / (n - start), 0.0, 1.0)
        X[:, 4] += 4.0 * ramp  # about four standard deviations by the end
        events.append({"kind": "gradual drift (unlabelled)", "feature": "temperature", "start": start, "stop": n})
    if anomalies:
        sd = X.std(axis=0)
        for j, frac in ((1, 0.30), (3, 0.82)):
            a = int(n * frac)
            b = a + max(30, n // 400)
            X[a:b, j] += 4.0 * sd[j]
            y[a:b] = 1
            events.append({"kind": "level shift", "feature": FEATURES[j], "start": a, "stop": b})
        taken = y.astype(bool).copy()
        spots = rng.choice(np.flatnonzero(~taken[1000:]) + 1000, size=max(10, n // 800), replace=False)
        for i in np.sort(spots):
            j = int(rng.integers(0, len(FEATURES)))
            X[i, j] += rng.choice([-1.0, 1.0]) * rng.uniform(6.0, 9.0) * sd[j]
            y[i] = 1
            events.append({"kind": "spike", "feature": FEATURES[j], "start": int(i), "stop": int(i) + 1})
        for i in rng.choice(np.flatnonzero(y == 0)[1000:], size=max(3, n // 5000), replace=False):
            X[i, int(rng.integers(0, len(FEATURES)))] = np.nan
            events.append({"kind": "dropout (NaN, rejected)", "start": int(i), "stop": int(i) + 1})
    return DemoStream(X=X, y=y, timestamps=START + t, events=events)


def plot(stream: DemoStream, recorder: Any, path: Path) -> Path:
    """Values, scores, threshold and alarms over time, with the planted anomalies shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    offsets = recorder.array("offsets").astype(np.int64) - 1  # ArraySource offsets start at 1
    scores = recorder.array("scores")
    thr = recorder.array("thresholds")
    alarms = recorder.array("alarms").astype(bool)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(14, 8), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    X = stream.X
    mu, sd = np.nanmean(X[:2000], axis=0), np.nanstd(X[:2000], axis=0)
    for j, name in enumerate(stream.feature_names):
        ax1.plot((X[:, j] - mu[j]) / sd[j] + 6 * (len(stream.feature_names) - 1 - j), lw=0.5, label=name)
    for ax in (ax1, ax2):
        for e in stream.events:
            if e["kind"] in ("level shift", "stuck sensor"):
                ax.axvspan(e["start"], e["stop"], color="red", alpha=0.12, lw=0)
            elif e["kind"] == "spike":
                ax.axvline(e["start"], color="red", alpha=0.25, lw=0.8)
            elif e["kind"].startswith("gradual drift"):
                ax.axvspan(e["start"], e["stop"], color="orange", alpha=0.05, lw=0)
    ax1.set_yticks([])
    ax1.set_ylabel("sensors (standardised, stacked)")
    ax1.legend(loc="upper left", ncol=6, fontsize=8)
    ax1.set_title("streamad demo: planted anomalies in red (spikes, level shifts, stuck flow sensor); temperature drift shaded orange")
    ax2.plot(offsets, scores, lw=0.5, color="black", label="score")
    finite = np.isfinite(thr)
    ax2.plot(offsets[finite], thr[finite], lw=1.0, color="tab:blue", label="threshold (SPOT)")
    ax2.scatter(offsets[alarms], scores[alarms], s=10, color="red", zorder=3, label=f"alarms ({int(alarms.sum())})")
    lo, hi = np.nanpercentile(scores, [1, 99.9])
    if np.all(scores > 0) and hi / max(lo, 1e-12) > 50:
        ax2.set_yscale("log")
    ax2.set_ylabel("anomaly score")
    ax2.set_xlabel("record (1 per second)")
    ax2.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_demo(
    settings: Any,
    out_dir: Path = Path("streamad-out"),
    n: int = 20_000,
    seed: int = 7,
    batches: Callable[[Any], Iterable[Any]] | None = None,
    say: Callable[[str], None] | None = None,
    observers: Iterable[Any] = (),
) -> tuple[Any, Path | None]:
    """Generate the stream, replay it through the pipeline, write detections and the plot.
    ``batches`` wraps the source (a progress bar); ``say`` reports each step;
    ``observers`` see every window as the pipeline's do."""
    from streamad.app.replay import Recorder, replay
    from streamad.connectors.odds import ArraySource
    from streamad.connectors.sinks import JsonlSink, RejectsFile
    from streamad.factory import for_stream

    tell = say or (lambda message: None)
    stream = generate(n=n, seed=seed)
    # Batches of 1,000 give a progress bar some steps; windows close by count, so the
    # results are the same with any batch size.
    source = ArraySource(stream.X, stream.y, stream="demo", timestamps=stream.timestamps, feature_names=stream.feature_names, chunk_rows=1000)
    out_dir = Path(out_dir)
    det_path, rej_path = out_dir / "demo.detections.jsonl", out_dir / "demo.rejects.csv"
    sink = JsonlSink(det_path)
    try:
        rejects = RejectsFile(rej_path)
    except BaseException:
        sink.close()
        raise
    named = settings.detector.name != "default"
    settings = for_stream(settings, timed=True)  # the stream carries event times
    what = settings.detector.name + ("" if named else " (the default for sensor streams: an online Gaussian per device, one here)")
    tell(f"scoring it with {what}: score first, then learn, window by window...")
    try:
        summary, recorder = replay(
            source, settings, sink, stream.feature_names, rejects=rejects, observers=observers, batches=batches,
            keep=Recorder.ALL, source_name=f"demo sensor stream ({n:,} records, seed {seed})",
        )  # fmt: skip
    finally:
        sink.close()
        rejects.close()
    summary.outputs = {"detections": str(det_path), "rejects": f"{rej_path} ({rejects.written} rows)"}
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        summary.notes.append("no plot: it needs matplotlib (pip install 'streamad-loe[plot]')")
        return summary, None
    tell(f"plotting to {out_dir / 'demo.png'}...")
    png = plot(stream, recorder, out_dir / "demo.png")
    summary.outputs["plot"] = str(png)
    return summary, png
