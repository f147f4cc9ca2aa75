"""The ``streamad`` command line."""

from __future__ import annotations

import json
import logging
import math
import os
import stat
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer.exceptions import TyperException

from streamad.app.outputs import OVERWRITE_RULE
from streamad.errors import ConfigError, InputError, StreamadError

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    no_args_is_help=True,
    help="Streaming anomaly detection for sensor and tabular data.",
)


def _split(value: str | None) -> list[str] | None:
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
        if not k.strip():
            raise ConfigError(f"--param takes NAME=VALUE, the name is missing in {p!r}")
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


def _progress(source: Any, enabled: bool, description: str = "replaying") -> Iterator[Any]:
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
        redirect_stdout=False,
    ) as bar, _logs_above(bar):
        done, total = source.progress
        task = bar.add_task(f"{description} ({unit})", total=total or None)
        for item in source:
            yield item
            done, total = source.progress
            bar.update(task, completed=done)


class _logs_above:
    """While a progress bar is live, log lines go through its console (above the bar)
    instead of being written across it."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.handlers: list[tuple[logging.StreamHandler, Any]] = []

    def __enter__(self) -> _logs_above:
        for h in logging.getLogger().handlers:
            if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.__stderr__:
                # The live display has put a proxy in sys.stderr that prints above the bar.
                self.handlers.append((h, h.setStream(sys.stderr)))
        return self

    def __exit__(self, *exc: object) -> None:
        for h, stream in self.handlers:
            h.setStream(stream)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


_OUTPUTS_HELP = (
    "Outputs: unless named, detections, rejects and drift events go to "
    "OUT_DIR/<dir>-<name>-<hash>.detections.jsonl, .rejects.csv and .drift.jsonl, a "
    "name unique to the input's path (<dir> is its folder, <hash> a short hash of its "
    "resolved path), so replays of valve1/0.csv and valve2/0.csv never share outputs. "
)


@app.command(
    help="Stream a file through the detection pipeline and print a summary.\n\n"
    + _OUTPUTS_HELP
    + OVERWRITE_RULE
    + "\n\n"
    "With --out - stdout carries the detections only (one JSON object per line); the summary and "
    "notes go to stderr. Ctrl-C (or SIGTERM) stops the replay cleanly: outputs are flushed and the "
    "summary covers the records read until then (exit status 130; 143 for SIGTERM; 141 when the "
    "reader of --out - went away). Bad options and unreadable files stop with one line "
    "'streamad: error: ...' and exit status 2."
)
def replay(
    file: Path = typer.Argument(..., help="CSV/TSV file, or ODDS .mat (MATLAB v5 or v7.3)."),
    config: Path | None = typer.Option(None, "--config", "-c", help="Settings file (YAML); options here override it."),
    features: str | None = typer.Option(None, help="Comma-separated feature columns (default: every column not given another role)."),
    exclude: str | None = typer.Option(None, help="Comma-separated columns to ignore."),
    key: str | None = typer.Option(None, help="Column holding the record key."),
    timestamp: str | None = typer.Option(None, help="Column holding the event time (ISO 8601, another date layout, or epoch s/ms)."),
    label: str | None = typer.Option(None, help="Column holding the 0/1 label, used only for the final metrics."),
    no_guess: bool = typer.Option(False, "--no-guess", help="Do not pick up timestamp/label columns by their names."),
    delimiter: str | None = typer.Option(None, help="Field delimiter: one character, or 'tab' / '\\t' (default: sniffed among , ; tab |)."),
    detector: str | None = typer.Option(None, help="Detector name (see `streamad detectors`)."),
    param: list[str] = typer.Option([], "--param", "-p", help="Detector parameter NAME=VALUE (repeatable)."),
    seed: int | None = typer.Option(None, help="Random seed of the detector (a non-negative integer)."),
    window_size: int | None = typer.Option(None, help="Records per window."),
    initial_window_size: int | None = typer.Option(None, help="Records in a lane's first window; each next one doubles up to --window-size."),
    max_wait: float | None = typer.Option(None, help="Seconds a partial window may wait before it is processed."),
    threshold: str | None = typer.Option(None, help="spot (extreme-value, target false-alarm rate) or quantile."),
    risk: float | None = typer.Option(None, help="Target false-alarm rate of the spot threshold."),
    quantile: float | None = typer.Option(None, help="Alarm quantile of the quantile threshold."),
    warmup: int | None = typer.Option(None, help="Scores the threshold learns before any alarm (not counting windows that begin in the first 128 records: threshold.skip_first_records)."),
    out_dir: Path = typer.Option(Path("streamad-out"), help="Where detections, rejects and drift events go unless named below."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Detections file (.jsonl or .csv; - for stdout, which then carries nothing else)."),
    rejects: Path | None = typer.Option(None, help="Rejected records file (.csv or .jsonl)."),
    emit: str | None = typer.Option(None, help="alarms (default) or all: which records get a detection message."),
    speed: float | None = typer.Option(None, help="Pace the replay to the timestamps, this many times faster (default: as fast as possible)."),
    permute: int | None = typer.Option(None, help=".mat only: stream in the benchmark protocol's order for this seed (a non-negative integer)."),
    limit: int | None = typer.Option(None, help="Stop after this many records."),
    summary_json: Path | None = typer.Option(None, help="Also write the summary as JSON here (- for stdout; the summary table then goes to stderr)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on a terminal."),
    metrics_port: int | None = typer.Option(None, help="Serve Prometheus metrics on this port during the replay (0: any free port)."),
    metrics_host: str | None = typer.Option(None, help="Address the metrics endpoint listens on (default 0.0.0.0)."),
    metrics_linger: float | None = typer.Option(None, help="Keep serving metrics this many seconds after the replay, so a scrape sees the final values."),
    drift: bool | None = typer.Option(None, "--drift/--no-drift", help="Watch features and scores for drift (default: on)."),
    drift_events: Path | None = typer.Option(None, help="Drift events file (JSON lines; default: next to the detections)."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite output files even when they hold another input's results or were not written by streamad."),
) -> None:
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
    # Cheap checks first: a bad option should not wait for the model to load.
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1 (got {limit})")
    if permute is not None and permute < 0:
        raise ConfigError(f"--permute takes a seed, a non-negative integer (got {permute})")
    if permute is not None and file.suffix.lower() != ".mat":
        raise ConfigError("--permute applies to .mat files only")
    if seed is not None and not 0 <= seed < 2**63:
        raise ConfigError(f"--seed must be a non-negative integer below 2**63 (got {seed})")
    if speed is not None and not (math.isfinite(speed) and speed > 0):
        raise ConfigError(f"--speed must be a positive number of times real time (got {speed:g})")
    delimiter = _delimiter(delimiter)
    _check_input(file)
    # The outputs named here are checked before the model loads, and again below with
    # any the config file names.
    _check_outputs(file, out_dir, out, rejects, False if drift is False else drift_events, summary_json, force)
    settings = _load_settings(config, overrides)
    _run_replay(file, settings, out_dir, delimiter, speed, permute, limit, summary_json, progress, force)


def _delimiter(value: str | None) -> str | None:
    """The field delimiter a user asked for, or ``None`` to sniff it.

    >>> _delimiter(";"), _delimiter("tab"), _delimiter("\\t"), _delimiter(None)
    (';', '\\t', '\\t', None)
    >>> _delimiter(";;")
    Traceback (most recent call last):
    ...
    streamad.errors.ConfigError: --delimiter must be one character, or 'tab' (got ';;')
    """
    if value is None:
        return None
    if value.lower() in ("tab", "\\t"):
        return "\t"
    if value == "":
        raise ConfigError("--delimiter is empty; leave it out to have the delimiter sniffed")
    if len(value) != 1:
        raise ConfigError(f"--delimiter must be one character, or 'tab' (got {value!r})")
    if value in "\r\n":
        raise ConfigError(f"--delimiter cannot be a line break (got {value!r})")
    if value == '"':
        raise ConfigError("--delimiter cannot be '\"': that is the quote character")
    if not value.isprintable() and value != "\t":
        raise ConfigError(f"--delimiter must be a visible character, a space or a tab (got {value!r})")
    return value


def _settings_env() -> dict[str, str]:
    """The environment the settings read: STREAMAD_DEBUG is the CLI's own switch."""
    return {k: v for k, v in os.environ.items() if k != "STREAMAD_DEBUG"}


def _load_settings(config: Path | None, overrides: Mapping[str, Any]) -> Any:
    """Settings from the config file, the environment and the options, with a bad
    config file (binary, a device, huge) refused in one line."""
    from streamad.config import load_settings

    if config is not None:
        try:
            st = config.stat()
        except OSError as e:
            raise ConfigError(f"cannot read config file {config}: {e.strerror or e}") from None
        if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            if os.path.realpath(config) != os.devnull:
                raise ConfigError(f"config file {config} is a device, not a settings file")
        elif stat.S_ISREG(st.st_mode) and st.st_size > 10 << 20:
            raise ConfigError(f"config file {config} is {st.st_size:,} bytes: too large for a settings file")
    try:
        settings = load_settings(config, overrides=overrides, env=_settings_env())
    except (ValueError, TypeError) as e:
        # YAML that parses into something pydantic chokes on, a NUL in the text...
        raise ConfigError(f"config file {config}: {_one_line(str(e))}") from None
    return settings


def _check_input(file: Path) -> None:
    """The input exists and is not a directory (what it holds is the reader's to judge)."""
    try:
        st = file.stat()
    except FileNotFoundError:
        hint = " (to read standard input, give /dev/stdin)" if str(file) == "-" else ""
        raise InputError(f"{file}: no such file{hint}") from None
    except OSError as e:
        raise InputError(f"cannot read {file}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"{file} is a directory, not a file")


def _check_outputs(
    file: Path,
    out_dir: Path,
    detections: Path | None,
    rejects: Path | None,
    drift_events: Path | None | bool,
    summary_json: Path | None,
    force: bool,
) -> tuple[Path, Path, Path | None]:
    """Where a replay's detections, rejects and drift events go (``None``: no drift
    events, when ``drift_events`` is False), refusing before anything is written the
    paths that would lose data (see `streamad.app.outputs.check_outputs`)."""
    from streamad.app.outputs import check_outputs, default_drift_path, default_output_paths, is_stdout

    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out-dir {out_dir} is not a directory")
    det_default, rej_default = default_output_paths(file, out_dir)
    det_path = detections or det_default
    rej_path = rejects or rej_default
    drift_path = None if drift_events is False else (drift_events or default_drift_path(file, out_dir))
    for option, path in (("--rejects", rej_path), ("--drift-events", drift_path)):
        if path is not None and is_stdout(path):  # type: ignore[arg-type]
            raise ConfigError(f"{option} cannot go to stdout: only --out (detections) and --summary-json may")
    json_to_stdout = summary_json is not None and is_stdout(summary_json)
    if is_stdout(det_path) and json_to_stdout:
        raise ConfigError("--out and --summary-json cannot both go to stdout")
    outputs = {"--out" if detections else "detections file": det_path, "--rejects" if rejects else "rejects file": rej_path}
    if drift_path is not None:
        outputs["--drift-events" if drift_events else "drift events file"] = drift_path  # type: ignore[assignment]
    if summary_json is not None and not json_to_stdout:
        outputs["--summary-json"] = summary_json
    check_outputs(file, outputs, force=force, own=[det_default, rej_default, default_drift_path(file, out_dir)])
    return det_path, rej_path, drift_path  # type: ignore[return-value]


def _run_replay(
    file: Path,
    settings: Any,
    out_dir: Path,
    delimiter: str | None,
    speed: float | None,
    permute: int | None,
    limit: int | None,
    summary_json: Path | None,
    progress: bool,
    force: bool = False,
) -> None:
    from streamad.app.heap import SettleHeap
    from streamad.app.outputs import is_stdout
    from streamad.app.pacing import paced
    from streamad.app.replay import end_offset, event_times
    from streamad.app.replay import replay as run
    from streamad.connectors.sinks import DriftEventsFile, RejectsFile, StdoutSink, detection_sink
    from streamad.drift import DriftLog
    from streamad.factory import for_stream
    from streamad.metrics import start_metrics

    det_path, rej_path, drift_path = _check_outputs(
        file, out_dir, settings.output.detections, settings.output.rejects, settings.drift.events if settings.drift.enabled else False, summary_json, force
    )
    to_stdout = is_stdout(det_path)
    json_to_stdout = summary_json is not None and is_stdout(summary_json)

    source, notes = open_source(file, settings, delimiter, permute, limit)
    settings = for_stream(settings, event_times(source))
    show = progress and sys.stderr.isatty()

    def batches(src: Any) -> Iterable[Any]:
        it: Iterable[Any] = _progress(src, show)
        return paced(it, speed) if speed is not None else it

    with ExitStack() as serving:
        metrics = start_metrics(settings)
        observers: list[Any] = [SettleHeap()]
        if metrics is not None:
            serving.callback(metrics.close)
            end = end_offset(source, file)
            if end is not None:
                metrics.set_end_offsets({source.lane: end})
            observers.append(metrics)
        with ExitStack() as files:  # closed (flushed) in reverse order, also on an error
            sink = StdoutSink() if to_stdout else detection_sink(det_path)
            files.callback(sink.close)
            rejects = RejectsFile(rej_path)
            files.callback(rejects.close)
            # Without drift detection a key's lasting state adopted is still logged.
            drift_log = DriftLog(DriftEventsFile(drift_path) if drift_path is not None else None)
            files.callback(drift_log.close)  # first to close: logs the per-feature drift summary
            observers.append(drift_log)

            def reader_gone() -> str | None:
                return "stdout closed by its reader" if getattr(sink, "reader_gone", False) else None

            summary, _ = run(
                source, settings, sink, source.feature_names, rejects=rejects, observers=observers, batches=batches,
                source_name=str(file), live=speed is not None, should_stop=reader_gone,
            )
        summary.notes += notes
        if isinstance(sink, StdoutSink) and sink.reader_gone:
            summary.notes.append(f"stdout was closed by its reader after {sink.delivered:,} detections; later ones were not delivered")
        summary.outputs = {"detections": "stdout" if to_stdout else str(det_path), "rejects": f"{rej_path} ({rejects.written:,} rows)"}
        if drift_path is not None:
            summary.outputs["drift events"] = str(drift_path)
        if metrics is not None:
            summary.outputs["metrics"] = f"http://{settings.metrics.host}:{metrics.port}/metrics"
        if summary_json is not None and not json_to_stdout:
            _write_summary_json(summary_json, summary.as_dict(), False)
        typer.echo(summary.render(), err=to_stdout or json_to_stdout)
        if json_to_stdout:
            _write_summary_json(Path("-"), summary.as_dict(), True)
        if metrics is not None:
            _linger(metrics, settings.metrics.linger_seconds, summary.interrupted)
    if summary.interrupted:
        codes = {"Ctrl-C": 130, "SIGTERM": 143, "stdout closed by its reader": 141}
        raise typer.Exit(codes.get(summary.stop_reason or "", 130))
    if not summary.reconciled or summary.read_error:
        # The summary above says what is missing; a script must not take the run as whole.
        raise typer.Exit(1)


def _write_summary_json(path: Path, summary: dict[str, Any], to_stdout: bool) -> None:
    text = json.dumps(summary, indent=2, default=float) + "\n"
    if to_stdout:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    except OSError as e:
        raise InputError(f"cannot write --summary-json {path}: {e.strerror or e}") from None


def _linger(metrics: Any, seconds: float, interrupted: bool) -> None:
    """Keep the metrics endpoint up a while after a replay, so the final values get scraped."""
    import time

    if seconds > 0 and not interrupted:
        sys.stdout.flush()
        typer.echo(f"serving metrics on port {metrics.port} for {seconds:g} s more (Ctrl-C to stop)", err=True)
        try:
            time.sleep(seconds)
        except KeyboardInterrupt:
            pass


def open_source(file: Path, settings: Any, delimiter: str | None, permute: int | None, limit: int | None) -> tuple[Any, list[str]]:
    """A file source for a path: ``.mat`` as ODDS, anything else as delimited text."""
    from streamad.schema import Schema

    notes: list[str] = []
    _check_input(file)
    if file.suffix.lower() == ".mat":
        from streamad.connectors.odds import MatSource

        if settings.record.features or settings.record.key or settings.record.timestamp:
            raise ConfigError(".mat files have no named columns: --features/--key/--timestamp do not apply")
        mat = MatSource(file, permutation_seed=permute, limit=limit)
        if mat.X.shape[1] == 0:
            raise InputError(f"{file}: 'X' has no columns (shape {mat.X.shape}): nothing to score")
        if not mat.has_labels:
            notes.append(f"{file} has no 'y' array: replayed without labels, so no quality metrics")
        if permute is None:
            notes.append("streamed in file order; --permute SEED streams in the ODDS benchmark protocol's order")
        return mat, notes
    if permute is not None:
        raise ConfigError("--permute applies to .mat files only")
    from streamad.connectors.csv_source import CsvSource

    r = settings.record
    schema = Schema(features=r.features, key=r.key, timestamp=r.timestamp, label=r.label, exclude=tuple(r.exclude))
    src = CsvSource(file, schema, delimiter=delimiter, guess_roles=r.guess_roles, limit=limit)
    s = src.schema
    roles = ", ".join(f"{k}: {v}" for k, v in (("timestamp", s.timestamp), ("label", s.label), ("key", s.key)) if v)
    n = len(s.features or ())
    notes.append(f"{n} feature{'' if n == 1 else 's'}" + (f"; {roles}" if roles else "") + f"; delimiter {src.delimiter!r}")
    ignored = [c for c in src.columns if c not in set(s.features or ()) | set(s.roles)]
    if ignored:
        notes.append(f"ignored columns: {', '.join(ignored)}")
    return src, notes


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("streamad-out"), help="Where the detections and the plot go."),
    records: int = typer.Option(20_000, min=2_000, max=10_000_000, help="Length of the generated stream."),
    seed: int = typer.Option(7, min=0, help="Seed of the generated stream."),
    detector: str | None = typer.Option(None, help="Detector name (default: the default detector)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on a terminal."),
) -> None:
    """Run the whole pipeline on a generated sensor stream with planted anomalies and drift."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out-dir {out_dir} is not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create --out-dir {out_dir}: {e.strerror or e}") from None
    # Say something at once: loading numpy, scipy and PyTorch takes a few seconds.
    typer.echo(f"generating a {records:,}-record sensor stream (seed {seed}) with planted anomalies and drift...", err=True)
    from streamad.app.demo import run_demo
    from streamad.app.heap import SettleHeap

    settings = _load_settings(None, _prune({"detector": {"name": detector}}))
    show = progress and sys.stderr.isatty()
    summary, _ = run_demo(
        settings, out_dir=out_dir, n=records, seed=seed, batches=lambda src: _progress(src, show, "scoring"), say=lambda m: typer.echo(m, err=True),
        observers=[SettleHeap()],  # as replay and run: up to 10 million records
    )  # fmt: skip
    typer.echo(summary.render())
    if summary.interrupted:
        raise typer.Exit(143 if summary.stop_reason == "SIGTERM" else 130)


@app.command()
def run(
    config: Path | None = typer.Option(None, "--config", "-c", help="Settings file (YAML) with a kafka section; STREAMAD_* variables override it."),
) -> None:
    """Attach to Kafka as a consumer group member: score records, publish detections, until SIGTERM/SIGINT."""
    from streamad.app.signals import StopSignals

    StopSignals.install()  # first: a stop signal during start-up is then noticed and logged
    settings = _load_settings(config, {})
    logging.getLogger().setLevel(settings.log_level)
    # The Kafka client is imported here only: streamad/ never needs it otherwise.
    from streamad.errors import require

    require("kafka", "kafka", "streamad run")
    from streamad.app.heap import SettleHeap
    from streamad.app.kafka import KafkaApp
    from streamad.metrics import start_metrics

    kafka_app = KafkaApp(settings)
    kafka_app.observers.append(SettleHeap())
    metrics = start_metrics(kafka_app.runs, lag=kafka_app.lag)
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
    from streamad.factory import SENSOR_DEFAULT

    names = available()
    marks = {DEFAULT_DETECTOR: "  (default: tables)", SENSOR_DEFAULT["detector"]: "  (default: sensor streams)"}
    width = max(len(n) for n in names) + max(map(len, marks.values()))
    for name in names:
        label = name + marks.get(name, "")
        typer.echo(f"{label:<{width}}  {describe(name)}")
    p = SENSOR_DEFAULT["params"]
    inner = ", ".join(f"{k}={v}" for k, v in p["inner"].items())
    typer.echo(
        f"\nsensor streams: records with event times (a timestamp column, Kafka); the sensor default is "
        f"{SENSOR_DEFAULT['detector']}: a {p['detector']} ({inner}) and a threshold per record key (one for a stream "
        f"without keys), windows of {SENSOR_DEFAULT['window']}, scaler {SENSOR_DEFAULT['scaler']}"
    )


@app.command()
def version() -> None:
    """Print the version."""
    from streamad import __version__

    typer.echo(__version__)


def _one_line(text: str) -> str:
    """A message as one line: whatever follows a line break is joined with '; '."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _debug() -> bool:
    return os.environ.get("STREAMAD_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _fail(message: str, status: int = 2) -> NoReturn:
    typer.echo(f"streamad: {message}", err=True)
    raise SystemExit(status)


def _stdout_gone() -> NoReturn:
    """The reader of stdout went away (``| head``): stop quietly, like any Unix filter."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the flush at exit does not complain
        os.close(devnull)
    except (OSError, ValueError):
        pass
    raise SystemExit(141)


def _warning_line(message: Any, category: type, filename: str, lineno: int, file: Any = None, line: str | None = None) -> None:
    """A library's warning as one log line, without the source line Python adds."""
    logging.getLogger("streamad").warning("%s: %s", category.__name__, _one_line(str(message)))


def main(argv: list[str] | None = None) -> None:
    """The ``streamad`` entry point: no traceback reaches a user. Usage errors and bad
    files print one line ``streamad: error: ...`` and exit with status 2; anything
    unexpected prints one line too (STREAMAD_DEBUG=1 shows the traceback) and exits 1."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not _debug():
        import warnings

        warnings.showwarning = _warning_line
    try:
        status = app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        raise SystemExit(e.exit_code) from None
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    except TyperException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `streamad`: show the help
            typer.echo(e.format_message())
            raise SystemExit(0) from None
        _fail(f"error: {_one_line(e.format_message())}", 2)
    except StreamadError as e:
        _fail(f"error: {_one_line(str(e))}", 2)
    except BrokenPipeError:
        _stdout_gone()
    except MemoryError:
        _fail("error: out of memory (a smaller --window-size, or fewer features, needs less)", 1)
    except Exception as e:  # noqa: BLE001 - the last resort: a bug must not show a traceback
        if _debug():
            raise
        what = _one_line(str(e)) or "no message"
        _fail(f"internal error: {type(e).__name__}: {what}; rerun with STREAMAD_DEBUG=1 for the details", 1)
    if isinstance(status, int) and status:
        # Without standalone mode, click returns the status of a typer.Exit raised in a command.
        raise SystemExit(status)


if __name__ == "__main__":
    main()
