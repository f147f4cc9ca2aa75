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
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


class WindowSettings(_Section):
    size: int = Field(256, gt=0, le=1_000_000)
    max_wait_seconds: float = Field(1.0, gt=0)


class ScalerSettings(_Section):
    kind: Literal["auto", "standard", "minmax", "none"] = "auto"
    half_life: float | None = Field(None, gt=0, description="records after which old statistics count half")


class DetectorSettings(_Section):
    name: str = "default"
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from streamad.detectors import available

        names = available()
        if v != "default" and v not in names:
            raise ValueError(f"unknown detector {v!r}; available: default, {', '.join(names)}")
        return v


class ThresholdSettings(_Section):
    kind: Literal["spot", "quantile"] = "spot"
    risk: float = Field(1e-3, gt=0, lt=0.02, description="target false-alarm rate (spot)")
    quantile: float = Field(0.995, gt=0, lt=1, description="alarm quantile (quantile)")
    warmup_records: int = Field(1000, ge=0, description="no alarms before this many records per lane")
    half_life: float = Field(50_000, gt=0)


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
    action: Literal["none", "reopen_warmup", "reset_threshold", "reopen_warmup_and_reset_threshold"] = "reopen_warmup"
    act_on: list[Literal["score", "feature"]] = Field(default_factory=lambda: ["score"], description="drift kinds that trigger the action")
    events: Path | None = Field(None, description="append drift events here as JSON lines")

    @model_validator(mode="after")
    def _ks_range(self) -> "DriftSettings":
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


class Settings(_Section):
    record: RecordSettings = Field(default_factory=RecordSettings)
    window: WindowSettings = Field(default_factory=WindowSettings)
    scaler: ScalerSettings = Field(default_factory=ScalerSettings)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    threshold: ThresholdSettings = Field(default_factory=ThresholdSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _detector_builds(self) -> "Settings":
        from streamad.factory import build_detector

        try:
            build_detector(self)
        except ValueError as e:
            raise ValueError(f"detector.params: {e}") from None
        return self


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
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from None
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


def format_validation_error(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        elif "input" in err and not isinstance(err["input"], (dict, list)):
            msg += f" (got {err['input']!r})"
        lines.append(f"{loc}: {msg}" if err["loc"] else msg)
    return "; ".join(lines)


def load_settings(
    path: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    model: type[Settings] = Settings,
) -> Settings:
    """File, then environment, then overrides; raises ``ConfigError`` naming the bad key."""
    data: dict[str, Any] = read_config_file(Path(path)) if path is not None else {}
    data = _deep_merge(data, env_overrides(os.environ if env is None else env))
    data = _deep_merge(data, overrides or {})
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e)) from None
