"""One typed settings object for every way streamad runs.

Settings come from, highest priority first: explicit overrides (command-line
options), ``STREAMAD_*`` environment variables (nested with ``__``, for example
``STREAMAD_WINDOW__SIZE=512``), a YAML file, and the defaults below. Everything is
validated at start; an error names the bad key.

>>> s = load_settings(overrides={"window": {"size": 128}}, env={"STREAMAD_THRESHOLD__RISK": "0.01"})
>>> s.window.size, s.threshold.risk
(128, 0.01)
>>> load_settings(overrides={"window": {"size": 0}}, env={})
Traceback (most recent call last):
...
streamad.errors.ConfigError: window.size: Input should be greater than 0 (got 0)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from streamad.errors import ConfigError

ENV_PREFIX = "STREAMAD_"
ENV_NESTED = "__"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class RecordSettings(_Section):
    """Which fields are features, key, event time and label (label: evaluation only)."""

    features: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    key: str | None = None
    timestamp: str | None = None
    label: str | None = None
    guess_roles: bool = True


TemporalGroup = Literal["jump", "diff", "drift", "vol", "run", "gap", "calendar"]


class FeaturesSettings(_Section):
    """The temporal stage (streamad/temporal.py): per-key history turned into context
    columns before the scaler. ``auto`` turns it on for records with event times (a CSV
    with a timestamp column, Kafka) and off for the rest (ODDS ``.mat`` files, tables
    without a timestamp)."""

    temporal: Literal["auto", "on", "off"] = "auto"
    max_keys: int = Field(10_000, gt=0, le=10_000_000, description="keys kept per lane; the least recently seen are forgotten beyond that")
    groups: list[TemporalGroup] | None = Field(None, description="derived column groups (default: jump, drift, vol, run, gap)")
    short_span: int = Field(8, gt=0, le=100_000, description="records in the short running means")
    long_span: int = Field(256, gt=0, le=10_000_000, description="records in the long running means")
    history: int = Field(5, gt=0, le=64, description="previous values a jump is measured from (their median)")

    @field_validator("temporal", mode="before")
    @classmethod
    def _yaml_switch(cls, v: Any) -> Any:
        # YAML reads a bare on / off (and yes / no) as a boolean.
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v


class WindowSettings(_Section):
    size: int = Field(256, gt=0, le=1_000_000)
    initial_size: int | None = Field(8, gt=0, description="first window of a lane; each next one doubles, up to size (null: size from the start)")
    max_wait_seconds: float = Field(1.0, gt=0, description="a partial window waits at most this long on a live source")
    max_records: int | None = Field(
        256,
        gt=0,
        le=1_000_000,
        description="records with keys: a window closes when one key has size records in it, or at this many in all (never fewer than size; null: size)",
    )

    @property
    def keyed_max(self) -> int:
        """The most records a window of records with keys holds (``max_records``, never
        fewer than ``size``)."""
        return max(self.size, self.max_records or self.size)

    @model_validator(mode="after")
    def _initial_below_size(self) -> WindowSettings:
        if self.initial_size is not None and self.initial_size > self.size:
            self.initial_size = self.size
        return self


class ScalerSettings(_Section):
    kind: Literal["auto", "standard", "minmax", "none"] = "auto"
    half_life: float | None = Field(None, gt=0, description="records after which old statistics count half")
    constant_share: float | None = Field(
        0.97,  # streamad.scaling.CONSTANT_SHARE (config imports no numpy; a test holds them equal)
        gt=0.5,
        le=1,
        description=(
            "standard: a feature holding one value in at least this share of the records learned scales to 0, "
            "as a constant one does (its rare departures are not distances; null: only a feature that never moves)"
        ),
    )


class DetectorSettings(_Section):
    """Which detector, and its parameters: checked against the detector's signature
    without building it (no network, no torch), each bad key named."""

    name: str = "default"
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = Field(0, ge=0, lt=2**63)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from streamad.detectors import available

        names = available()
        if v != "default" and v not in names:
            raise ValueError(f"unknown detector {v!r}; available: default, {', '.join(names)}")
        return v

    @model_validator(mode="after")
    def _params_fit(self) -> DetectorSettings:
        from streamad.detectors import ParamsError, validate_params

        try:
            validate_params(self.name, self.params)
        except ParamsError as e:
            raise e.validation_error("params") from None
        return self


class ThresholdSettings(_Section):
    kind: Literal["spot", "quantile"] = "spot"
    risk: float = Field(1e-3, gt=0, lt=0.02, description="target false-alarm rate (spot)")
    quantile: float = Field(0.995, gt=0, lt=1, description="alarm quantile (quantile)")
    warmup_records: int = Field(
        100, ge=0, description="scores the threshold learns (per lane) before it may raise an alarm; the detector's own warm-up (detector.params.score_warmup) gives a provisional threshold"
    )
    half_life: float = Field(50_000, gt=0)
    skip_first_records: int = Field(
        128, ge=0, description="the threshold does not learn the scores of windows that begin within a lane's first records (scored by a model that had learned fewer records than this)"
    )
    adopt_after: int | None = Field(
        1024,
        gt=0,
        description=(
            "records of one key flagged in a row (more than half of each batch) after which their state is its new normal: "
            "the key's detector forgets the old one and learns every record until the flags stop; not a key with a stuck sensor "
            "(null: never; a lasting state is then learned one flagged record in ten)"
        ),
    )


class OutputSettings(_Section):
    detections: Path | None = None
    emit: Literal["alarms", "all"] = "alarms"
    rejects: Path | None = None
    top_features: int = Field(3, ge=0)


class MetricsSettings(_Section):
    """The Prometheus endpoint (``/metrics``); port 0 picks a free port."""

    enabled: bool = False
    host: str = "0.0.0.0"
    port: int = Field(9108, ge=0, le=65535)
    linger_seconds: float = Field(0.0, ge=0, description="replay: keep serving this long after the end, so a scrape sees the final values")


def _score_drift_only() -> list[Literal["score", "feature"]]:
    return ["score"]


class DriftSettings(_Section):
    """Drift of each feature (reference window against the recent records) and of the
    score stream (Page-Hinkley on the scores' ranks), per lane; see streamad/drift.py."""

    enabled: bool = True
    method: Literal["psi", "ks"] = "psi"
    threshold: float | None = Field(None, gt=0, description="feature drift alarm level; default 1.0 for psi, 0.35 for ks")
    reference_records: int = Field(5000, gt=0, description="records in the reference window (re-taken after an alarm)")
    recent_records: int = Field(2000, gt=0, description="records in the sliding window compared with the reference")
    bins: int = Field(10, ge=2, le=100, description="equal-mass bins of the reference per feature (finer tail bins are added)")
    score: bool = Field(True, description="also watch the score stream")
    score_chunk: int = Field(32, gt=0, description="records per median fed to Page-Hinkley")
    score_delta: float = Field(0.05, ge=0, description="Page-Hinkley tolerance, in rank units (0..1)")
    score_threshold: float = Field(5.0, gt=0, description="Page-Hinkley alarm level (lambda), in rank units x chunks")
    # Keep learning by default: re-opening the warm-up on score drift cost ROC-AUC on
    # file-order http (0.96 -> 0.71) and on the drifting demo streams (0.835 -> 0.797),
    # see benchmarks/results/ANALYSIS.md.
    action: Literal["none", "reopen_warmup", "reset_threshold", "reopen_warmup_and_reset_threshold"] = Field(
        "none", description="what the learner does on drift: none keeps learning as before"
    )
    act_on: list[Literal["score", "feature"]] = Field(default_factory=_score_drift_only, description="drift kinds that trigger the action")
    events: Path | None = Field(None, description="append drift events here as JSON lines")

    @model_validator(mode="after")
    def _ks_range(self) -> DriftSettings:
        if self.method == "ks" and self.threshold is not None and self.threshold >= 1:
            raise ValueError("threshold: a KS statistic lies in [0, 1]; give a value below 1")
        return self

    @property
    def feature_threshold(self) -> float:
        if self.threshold is not None:
            return self.threshold
        return 1.0 if self.method == "psi" else 0.35


class StateSettings(_Section):
    dir: Path | None = None
    checkpoint_interval_seconds: float = Field(5.0, gt=0)


_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
# Client options streamad sets itself: passing them through would break its guarantees.
_RESERVED_CLIENT_OPTIONS = {
    "bootstrap_servers": "set kafka.bootstrap_servers",
    "group_id": "set kafka.group_id",
    "enable_auto_commit": "streamad commits offsets itself, after detections are acknowledged",
    "auto_offset_reset": "set kafka.auto_offset_reset",
    "key_deserializer": "streamad reads raw bytes",
    "value_deserializer": "streamad reads raw bytes",
    "key_serializer": "streamad writes raw bytes",
    "value_serializer": "streamad writes raw bytes",
    "session_timeout_ms": "set kafka.session_timeout_ms",
    "heartbeat_interval_ms": "set kafka.heartbeat_interval_ms",
    "max_poll_interval_ms": "set kafka.max_poll_interval_ms",
    "max_poll_records": "set kafka.max_poll_records",
    "transactional_id": "streamad delivers at-least-once without transactions",
}


def _topic_name(v: str) -> str:
    if not _TOPIC.match(v) or v in (".", ".."):
        raise ValueError(f"{v!r} is not a valid topic name (letters, digits, '.', '_', '-'; at most 249)")
    return v


class KafkaRetrySettings(_Section):
    """Backoff when the broker cannot be reached (at start, for sends and commits)."""

    initial_backoff_seconds: float = Field(0.5, gt=0, le=60)
    max_backoff_seconds: float = Field(30.0, gt=0, le=3600)
    give_up_after_seconds: float | None = Field(None, gt=0, description="stop retrying at start after this long (default: never)")

    @model_validator(mode="after")
    def _ordered(self) -> KafkaRetrySettings:
        if self.max_backoff_seconds < self.initial_backoff_seconds:
            raise ValueError(
                f"max_backoff_seconds ({self.max_backoff_seconds}) is lower than initial_backoff_seconds ({self.initial_backoff_seconds})"
            )
        return self


class KafkaSettings(_Section):
    """``streamad run``: where records come from and where detections and dead letters go.

    ``client`` options go to the consumer and the producer (security protocol, SASL,
    SSL: whatever reaches the cluster), ``consumer`` and ``producer`` options to one of
    them; all are kafka-python option names (``security.protocol`` is accepted for
    ``security_protocol``) and are checked against kafka-python at start.
    """

    bootstrap_servers: list[str] = Field(min_length=1)
    topics: list[str] = Field(min_length=1, description="input topics")
    group_id: str = Field(min_length=1)
    output_topic: str
    dead_letter_topic: str
    drift_topic: str | None = Field(None, description="drift events go here too (they are always logged)")
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    offset_reset_policy: Literal["fail", "earliest", "latest"] = Field(
        "fail",
        description="a partition whose committed or checkpoint offset is outside the broker's range (topic re-created, "
        "broker storage lost, retention): fail stops the worker; earliest reads it again from its start; latest skips to its end",
    )
    stop_grace_seconds: float = Field(5.0, ge=0, le=3600, description="after SIGTERM/SIGINT, unacknowledged sends are retried this long, then left uncommitted")
    max_message_bytes: int = Field(1_048_576, gt=0, le=100_000_000, description="larger input messages are dead-lettered")
    session_timeout_ms: int = Field(45_000, ge=1_000, le=3_600_000)
    heartbeat_interval_ms: int = Field(3_000, ge=100, le=600_000)
    max_poll_interval_ms: int = Field(300_000, ge=1_000, le=86_400_000)
    max_poll_records: int = Field(2_000, gt=0, le=1_000_000)
    retry: KafkaRetrySettings = Field(default_factory=KafkaRetrySettings)
    client: dict[str, Any] = Field(default_factory=dict)
    consumer: dict[str, Any] = Field(default_factory=dict)
    producer: dict[str, Any] = Field(default_factory=dict)

    @field_validator("bootstrap_servers", "topics", mode="before")
    @classmethod
    def _split_commas(cls, v: Any) -> Any:
        # A comma-separated string is how an environment variable spells a list.
        if isinstance(v, str):
            return [p.strip() for p in v.split(",") if p.strip()]
        return v

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port(cls, v: list[str]) -> list[str]:
        for server in v:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{server!r} is not host:port")
        return v

    @field_validator("topics")
    @classmethod
    def _topics(cls, v: list[str]) -> list[str]:
        return [_topic_name(t) for t in v]

    @field_validator("output_topic", "dead_letter_topic", "drift_topic")
    @classmethod
    def _output(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        _topic_name(v)
        if v in (info.data.get("topics") or ()):
            raise ValueError(f"{v!r} is also an input topic: streamad would read its own output")
        return v

    @field_validator("heartbeat_interval_ms")
    @classmethod
    def _below_session(cls, v: int, info: ValidationInfo) -> int:
        session = info.data.get("session_timeout_ms")
        if session is not None and v >= session:
            raise ValueError(f"must be lower than kafka.session_timeout_ms ({v} >= {session})")
        return v

    @field_validator("client", "consumer", "producer", mode="after")
    @classmethod
    def _options(cls, v: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in v.items():
            key = str(name).replace(".", "_").replace("-", "_").lower()
            if key in _RESERVED_CLIENT_OPTIONS:
                raise ValueError(f"option {name!r} cannot be passed through: {_RESERVED_CLIENT_OPTIONS[key]}")
            out[key] = value
        return out


class Settings(_Section):
    record: RecordSettings = Field(default_factory=RecordSettings)
    features: FeaturesSettings = Field(default_factory=FeaturesSettings)
    window: WindowSettings = Field(default_factory=WindowSettings)
    scaler: ScalerSettings = Field(default_factory=ScalerSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    threshold: ThresholdSettings = Field(default_factory=ThresholdSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    kafka: KafkaSettings | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    threads: int = Field(1, ge=1, le=256, description="CPU threads for the model's tensor math (small networks run fastest on one)")


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _deep_merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    """``STREAMAD_A__B=v`` to ``{"a": {"b": v}}``; values are parsed as YAML scalars
    (so ``true``, ``3``, ``[a, b]`` work) and validated like the file."""
    import yaml

    out: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split(ENV_NESTED)]
        if not all(path):
            raise ConfigError(f"environment variable {name}: empty key segment")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        node = out
        for p in path[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name} conflicts with another STREAMAD_ variable")
        node[path[-1]] = value
    return out


def read_config_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text (a YAML file was expected)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}: {getattr(e, 'problem', e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings, not a {type(data).__name__}")
    return data


def format_validation_error(e: ValidationError, origins: Mapping[tuple[str, ...], str] | None = None) -> str:
    """One line per error, naming the key; ``origins`` maps a key path to where its
    value came from (an environment variable), so a bad override is easy to find."""
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            msg += f" (got {err['input']!r})"
        path = tuple(str(p) for p in err["loc"])
        source = next((v for k, v in (origins or {}).items() if k[: len(path)] == path or path[: len(k)] == k), None)
        if source:
            msg += f" [from {source}]"
        lines.append(f"{loc}: {msg}" if err["loc"] else msg)
    return "; ".join(lines)


def _env_origins(env: Mapping[str, str]) -> dict[tuple[str, ...], str]:
    return {
        tuple(p.lower() for p in name[len(ENV_PREFIX) :].split(ENV_NESTED)): name for name in env if name.startswith(ENV_PREFIX)
    }


def load_settings(
    path: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    model: type[Settings] = Settings,
) -> Settings:
    """File, then environment, then overrides; raises ``ConfigError`` naming the bad key."""
    env = os.environ if env is None else env
    data: dict[str, Any] = read_config_file(Path(path)) if path is not None else {}
    data = _deep_merge(data, env_overrides(env))
    data = _deep_merge(data, overrides or {})
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, _env_origins(env))) from None
