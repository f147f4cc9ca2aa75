"""The ``streamad`` command line."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import typer
from typer.exceptions import TyperException

from streamad.errors import ConfigError, InputError, StreamadError

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Streaming anomaly detection for sensor and tabular data.",
)


def _split(value: Optional[str]) -> Optional[list[str]]:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _params(pairs: Iterable[str]) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"--param takes NAME=VALUE, got {p!r}")
        k, v = p.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v)
        except yaml.YAMLError:
            out[k.strip()] = v
    return out


def _prune(d: dict[str, Any]) -> dict[str, Any]:
    """Drop options the user did not give, so the config file and environment apply."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            v = _prune(v)
            if v:
                out[k] = v
        elif v is not None:
            out[k] = v
    return out


def _progress(source: Any, enabled: bool) -> Iterator[Any]:
    if not enabled or not hasattr(source, "progress"):
        yield from source
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    unit = getattr(source, "progress_unit", "records")
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeRemainingColumn(),
        transient=True,
        console=_stderr_console(),
    ) as bar:
        done, total = source.progress
        task = bar.add_task(f"replaying ({unit})", total=total or None)
        for item in source:
            yield item
            done, total = source.progress
            bar.update(task, completed=done)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


@app.command()
def replay(
    file: Path = typer.Argument(..., help="CSV/TSV file, or ODDS .mat (MATLAB v5 or v7.3)."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Settings file (YAML); options here override it."),
    features: Optional[str] = typer.Option(None, help="Comma-separated feature columns (default: every column not given another role)."),
    exclude: Optional[str] = typer.Option(None, help="Comma-separated columns to ignore."),
    key: Optional[str] = typer.Option(None, help="Column holding the record key."),
    timestamp: Optional[str] = typer.Option(None, help="Column holding the event time (ISO 8601 or epoch s/ms)."),
    label: Optional[str] = typer.Option(None, help="Column holding the 0/1 label, used only for the final metrics."),
    no_guess: bool = typer.Option(False, "--no-guess", help="Do not pick up timestamp/label columns by their names."),
    delimiter: Optional[str] = typer.Option(None, help="Field delimiter (default: sniffed among , ; tab |)."),
    detector: Optional[str] = typer.Option(None, help="Detector name (see `streamad detectors`)."),
    param: list[str] = typer.Option([], "--param", "-p", help="Detector parameter NAME=VALUE (repeatable)."),
    seed: Optional[int] = typer.Option(None, help="Random seed of the detector."),
    window_size: Optional[int] = typer.Option(None, help="Records per window."),
    initial_window_size: Optional[int] = typer.Option(None, help="Records in a lane's first window; each next one doubles up to --window-size."),
    max_wait: Optional[float] = typer.Option(None, help="Seconds a partial window may wait before it is processed."),
    threshold: Optional[str] = typer.Option(None, help="spot (extreme-value, target false-alarm rate) or quantile."),
    risk: Optional[float] = typer.Option(None, help="Target false-alarm rate of the spot threshold."),
    quantile: Optional[float] = typer.Option(None, help="Alarm quantile of the quantile threshold."),
    warmup: Optional[int] = typer.Option(None, help="Records scored before any alarm may be raised."),
    out_dir: Path = typer.Option(Path("streamad-out"), help="Where detections and rejects go unless named below."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Detections file (.jsonl or .csv; - for stdout)."),
    rejects: Optional[Path] = typer.Option(None, help="Rejected records file (.csv or .jsonl)."),
    emit: Optional[str] = typer.Option(None, help="alarms (default) or all: which records get a detection message."),
    speed: Optional[float] = typer.Option(None, help="Pace the replay to the timestamps, this many times faster (default: as fast as possible)."),
    permute: Optional[int] = typer.Option(None, help=".mat only: stream in the benchmark protocol's order for this seed."),
    limit: Optional[int] = typer.Option(None, help="Stop after this many records."),
    summary_json: Optional[Path] = typer.Option(None, help="Also write the summary as JSON here."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on a terminal."),
    metrics_port: Optional[int] = typer.Option(None, help="Serve Prometheus metrics on this port during the replay (0: any free port)."),
    metrics_host: Optional[str] = typer.Option(None, help="Address the metrics endpoint listens on (default 0.0.0.0)."),
    metrics_linger: Optional[float] = typer.Option(None, help="Keep serving metrics this many seconds after the replay, so a scrape sees the final values."),
    drift: Optional[bool] = typer.Option(None, "--drift/--no-drift", help="Watch features and scores for drift (default: on)."),
    drift_events: Optional[Path] = typer.Option(None, help="Drift events file (JSON lines; default: next to the detections)."),
) -> None:
    """Stream a file through the detection pipeline and print a summary."""
    from streamad.config import load_settings

    overrides = _prune(
        {
            "record": {"features": _split(features), "exclude": _split(exclude), "key": key, "timestamp": timestamp, "label": label, "guess_roles": False if no_guess else None},
            "window": {"size": window_size, "initial_size": initial_window_size, "max_wait_seconds": max_wait},
            "detector": {"name": detector, "params": _params(param) or None, "seed": seed},
            "threshold": {"kind": threshold, "risk": risk, "quantile": quantile, "warmup_records": warmup},
            "output": {"detections": out, "emit": emit, "rejects": rejects},
            "metrics": {
                "enabled": True if metrics_port is not None else None,
                "port": metrics_port,
                "host": metrics_host,
                "linger_seconds": metrics_linger,
            },
            "drift": {"enabled": drift, "events": drift_events},
        }
    )
    if limit is not None and limit < 1:
        raise ConfigError("--limit must be at least 1")
    settings = load_settings(config, overrides=overrides)
    _run_replay(file, settings, out_dir, delimiter, speed, permute, limit, summary_json, progress)


def _run_replay(
    file: Path,
    settings: Any,
    out_dir: Path,
    delimiter: Optional[str],
    speed: Optional[float],
    permute: Optional[int],
    limit: Optional[int],
    summary_json: Optional[Path],
    progress: bool,
) -> None:
    from connectors.sinks import RejectsFile, detection_sink
    from streamad.drift import DriftLog, JsonlDriftSink
    from streamad.metrics import start_metrics
    from streamad.pacing import paced
    from streamad.replay import default_drift_path, default_output_paths, end_offset, replay as run

    source, notes = open_source(file, settings, delimiter, permute, limit)
    det_path, rej_path = default_output_paths(file, out_dir)
    det_path = settings.output.detections or det_path
    rej_path = settings.output.rejects or rej_path
    drift_path = settings.drift.events or default_drift_path(file, out_dir)
    metrics = start_metrics(settings)
    observers: list[Any] = []
    if metrics is not None:
        metrics.set_end_offsets({source.lane: end_offset(source, file)})
        observers.append(metrics)
    drift_log = DriftLog(JsonlDriftSink(drift_path)) if settings.drift.enabled else None
    if drift_log is not None:
        observers.append(drift_log)
    sink = detection_sink(det_path)
    rejects = RejectsFile(rej_path)
    show = progress and sys.stderr.isatty()

    def batches(src: Any) -> Iterable[Any]:
        it: Iterable[Any] = _progress(src, show)
        return paced(it, speed) if speed is not None else it

    try:
        summary, _ = run(source, settings, sink, source.feature_names, rejects=rejects, observers=observers, batches=batches, source_name=str(file), live=speed is not None)
    finally:
        sink.close()
        rejects.close()
        if drift_log is not None:
            drift_log.close()
    summary.notes += notes
    summary.outputs = {"detections": str(det_path), "rejects": f"{rej_path} ({rejects.written:,} rows)"}
    if drift_log is not None:
        summary.outputs["drift events"] = str(drift_path)
    if metrics is not None:
        summary.outputs["metrics"] = f"http://{settings.metrics.host}:{metrics.port}/metrics"
    typer.echo(summary.render())
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps(summary.as_dict(), indent=2, default=float))
    if metrics is not None:
        _linger(metrics, settings.metrics.linger_seconds, summary.interrupted)
    if summary.interrupted:
        raise typer.Exit(130)


def _linger(metrics: Any, seconds: float, interrupted: bool) -> None:
    """Keep the metrics endpoint up a while after a replay, so the final values get scraped."""
    import time

    try:
        if seconds > 0 and not interrupted:
            sys.stdout.flush()
            typer.echo(f"serving metrics on port {metrics.port} for {seconds:g} s more (Ctrl-C to stop)", err=True)
            time.sleep(seconds)
    except KeyboardInterrupt:
        pass
    finally:
        metrics.close()


def open_source(file: Path, settings: Any, delimiter: Optional[str], permute: Optional[int], limit: Optional[int]) -> tuple[Any, list[str]]:
    """A file source for a path: ``.mat`` as ODDS, anything else as delimited text."""
    from streamad.schema import Schema

    notes: list[str] = []
    if not file.exists():
        raise InputError(f"{file}: no such file")
    if file.is_dir():
        raise InputError(f"{file} is a directory, not a file")
    if file.suffix.lower() == ".mat":
        from connectors.odds import MatSource

        if settings.record.features or settings.record.key or settings.record.timestamp:
            raise ConfigError(".mat files have no named columns: --features/--key/--timestamp do not apply")
        src = MatSource(file, permutation_seed=permute, limit=limit)
        if not src.has_labels:
            notes.append(f"{file} has no 'y' array: replayed without labels, so no quality metrics")
        if permute is None:
            notes.append("streamed in file order; --permute SEED streams in the ODDS benchmark protocol's order")
        return src, notes
    if permute is not None:
        raise ConfigError("--permute applies to .mat files only")
    from connectors.csv_source import CsvSource

    r = settings.record
    schema = Schema(features=r.features, key=r.key, timestamp=r.timestamp, label=r.label, exclude=tuple(r.exclude))
    src = CsvSource(file, schema, delimiter=delimiter, guess_roles=r.guess_roles, limit=limit)
    s = src.schema
    roles = ", ".join(f"{k}: {v}" for k, v in (("timestamp", s.timestamp), ("label", s.label), ("key", s.key)) if v)
    notes.append(f"{len(s.features or ())} features" + (f"; {roles}" if roles else "") + f"; delimiter {src.delimiter!r}")
    ignored = [c for c in src.columns if c not in set(s.features or ()) | set(s.roles)]
    if ignored:
        notes.append(f"ignored columns: {', '.join(ignored)}")
    return src, notes


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("streamad-out"), help="Where the detections and the plot go."),
    records: int = typer.Option(20_000, min=2_000, help="Length of the generated stream."),
    seed: int = typer.Option(7, help="Seed of the generated stream."),
    detector: Optional[str] = typer.Option(None, help="Detector name (default: the default detector)."),
) -> None:
    """Run the whole pipeline on a generated sensor stream with planted anomalies and drift."""
    from streamad.config import load_settings
    from streamad.demo import run_demo

    settings = load_settings(overrides=_prune({"detector": {"name": detector}}))
    summary, _ = run_demo(settings, out_dir=out_dir, n=records, seed=seed)
    typer.echo(summary.render())


@app.command()
def run(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Settings file (YAML) with a kafka section; STREAMAD_* variables override it."),
) -> None:
    """Attach to Kafka as a consumer group member: score records, publish detections, until SIGTERM/SIGINT."""
    from streamad.config import load_settings

    settings = load_settings(config)
    logging.getLogger().setLevel(settings.log_level)
    # The Kafka client is imported here only: streamad/ never needs it otherwise.
    from connectors.kafka import KafkaApp
    from streamad.metrics import start_metrics

    kafka_app = KafkaApp(settings)
    metrics = start_metrics(settings, lag=kafka_app.lag)
    if metrics is not None:
        kafka_app.observers.append(metrics)
    try:
        kafka_app.run()
    finally:
        if metrics is not None:
            metrics.close()


@app.command()
def detectors() -> None:
    """List the available detectors."""
    from streamad.detectors import DEFAULT_DETECTOR, available, describe

    names = available()
    width = max(len(n) for n in names) + len("  (default)")
    for name in names:
        label = name + ("  (default)" if name == DEFAULT_DETECTOR else "")
        typer.echo(f"{label:<{width}}  {describe(name)}")


@app.command()
def version() -> None:
    """Print the version."""
    from streamad import __version__

    typer.echo(__version__)


def main(argv: Optional[list[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        raise SystemExit(e.exit_code) from None
    except typer.Abort:
        typer.echo("streamad: aborted", err=True)
        raise SystemExit(130) from None
    except TyperException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `streamad`: show the help
            typer.echo(e.format_message())
            raise SystemExit(0) from None
        typer.echo(f"streamad: error: {e.format_message()}", err=True)
        raise SystemExit(2) from None
    except StreamadError as e:
        typer.echo(f"streamad: error: {e}", err=True)
        raise SystemExit(2) from None
    except BrokenPipeError:
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
