"""`streamad run` refuses a bad configuration at start, with one line naming the key
(no broker needed: nothing is contacted before the settings are valid)."""

from __future__ import annotations

import os

import pytest
import yaml

from tests.conftest import run_cli

GOOD = {
    "bootstrap_servers": "127.0.0.1:1",
    "topics": ["sensors"],
    "group_id": "streamad",
    "output_topic": "detections",
    "dead_letter_topic": "dead-letter",
}


def write(tmp_path, kafka=GOOD, **other):
    p = tmp_path / "streamad.yaml"
    p.write_text(yaml.safe_dump({"kafka": kafka, **other} if kafka is not None else other))
    return p


CASES = {
    "unknown key": (dict(kafka={**GOOD, "bootstrap_server": "x:1"}), {}, "kafka.bootstrap_server: unknown setting"),
    "wrong type": (dict(kafka={**GOOD, "session_timeout_ms": "soon"}), {}, "kafka.session_timeout_ms: Input should be a valid integer"),
    "out of range": (dict(kafka={**GOOD, "max_poll_records": 0}), {}, "kafka.max_poll_records: Input should be greater than 0 (got 0)"),
    "inconsistent": (dict(kafka={**GOOD, "heartbeat_interval_ms": 60000}), {}, "kafka.heartbeat_interval_ms: must be lower than kafka.session_timeout_ms"),
    "missing required kafka setting": (dict(kafka={k: v for k, v in GOOD.items() if k != "group_id"}), {}, "kafka.group_id: Field required"),
    "no kafka section": (dict(kafka=None, window={"size": 64}), {}, "kafka: missing: `streamad run` needs a kafka section"),
    "bad env override": (
        {},
        {"STREAMAD_KAFKA__HEARTBEAT_INTERVAL_MS": "often"},
        "kafka.heartbeat_interval_ms: Input should be a valid integer, unable to parse string as an integer (got 'often') [from STREAMAD_KAFKA__HEARTBEAT_INTERVAL_MS]",
    ),
    "bad env list": ({}, {"STREAMAD_KAFKA__BOOTSTRAP_SERVERS": "broker1,broker2:9092"}, "kafka.bootstrap_servers: 'broker1' is not host:port"),
    "unknown client option": (
        dict(kafka={**GOOD, "client": {"sasl_mechansm": "PLAIN"}}),
        {},
        "kafka.client.sasl_mechansm: not a kafka-python client option (did you mean 'sasl_mechanism'?)",
    ),
    "reserved client option": (dict(kafka={**GOOD, "consumer": {"enable.auto.commit": True}}), {}, "kafka.consumer: option 'enable.auto.commit' cannot be passed through"),
    "output is an input": (dict(kafka={**GOOD, "output_topic": "sensors"}), {}, "kafka.output_topic: 'sensors' is also an input topic"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_settings_fail_fast_with_one_line(tmp_path, case):
    content, env, message = CASES[case]
    path = write(tmp_path, **content) if content else write(tmp_path)
    r = run_cli("run", "--config", str(path), env=env, timeout=60)
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.startswith("streamad: error:")]
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_bad_yaml_and_unreadable_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kafka:\n  topics: [a, b\n  group_id: g\n")
    r = run_cli("run", "--config", str(bad))
    assert r.returncode == 2 and f"config file {bad} is not valid YAML at line" in r.stderr
    missing = tmp_path / "nope.yaml"
    r = run_cli("run", "--config", str(missing))
    assert r.returncode == 2 and f"cannot read config file {missing}: No such file or directory" in r.stderr
    if os.geteuid() != 0:  # root reads anything
        locked = write(tmp_path)
        locked.chmod(0)
        r = run_cli("run", "--config", str(locked))
        assert r.returncode == 2 and "Permission denied" in r.stderr
    r = run_cli("run", "--config", str(tmp_path))
    assert r.returncode == 2 and f"cannot read config file {tmp_path}" in r.stderr


def test_the_example_config_is_valid(tmp_path):
    """examples/streamad.yaml loads (its SASL/SSL options pass kafka-python's checks)."""
    from streamad.config import load_settings
    from streamad.connectors.kafka.options import client_options
    from tests.conftest import ROOT

    s = load_settings(ROOT / "examples" / "streamad.yaml", env={})
    consumer, producer = client_options(s.kafka)
    assert consumer["security_protocol"] == producer["security_protocol"] == "SASL_SSL"
