"""docker/ cannot be run here (no Docker): keep it correct by parsing and checking it.

The compose file parses and names only pinned images from a known list and files that
exist; the Dockerfile copies only what exists in its build context and pins CPU torch;
``promtool check config`` accepts the Prometheus config; Grafana's provisioning points
at the dashboard and the datasource the dashboard uses; the streamad config validates;
the demo producer's messages parse with streamad's own schema.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"

# Every image the stack may pull, with the tag shape that counts as pinned.
KNOWN_IMAGES = {
    "apache/kafka": r"3\.[7-9]\.\d+|4\.\d+\.\d+",
    "prom/prometheus": r"v[23]\.\d+\.\d+",
    "grafana/grafana": r"1[0-2]\.\d+\.\d+",
    "python": r"3\.1[1-3]\.\d+-slim-bookworm",
}
BUILT_IMAGE = re.compile(r"streamad:\d+\.\d+\.\d+")


def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def check_image(image: str) -> None:
    assert ":" in image and "@" not in image, f"{image}: pin a tag"
    repo, tag = image.rsplit(":", 1)
    assert tag != "latest", f"{image}: 'latest' is not pinned"
    assert repo in KNOWN_IMAGES, f"{image}: not in the known image list {sorted(KNOWN_IMAGES)}"
    assert re.fullmatch(KNOWN_IMAGES[repo], tag), f"{image}: tag {tag!r} does not look like a pinned release of {repo}"


def host_path(spec: str) -> Path | None:
    """The host side of a bind mount (``./x:/y:ro``), or None for a named volume."""
    src = spec.split(":", 1)[0]
    return (DOCKER / src).resolve() if src.startswith((".", "/")) else None


def test_compose_names_pinned_images_and_existing_files() -> None:
    c = compose()
    services = c["services"]
    assert {"kafka", "producer", "streamad", "prometheus", "grafana"} <= set(services)
    named_volumes = set(c.get("volumes") or {})
    for name, svc in services.items():
        build = svc.get("build")
        if build is not None:
            context = (DOCKER / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), f"{name}: no Dockerfile at {build}"
            assert BUILT_IMAGE.fullmatch(svc["image"]), f"{name}: a built image gets a versioned tag, not {svc.get('image')!r}"
        else:
            check_image(svc["image"])
        for spec in svc.get("volumes", []):
            p = host_path(spec)
            if p is None:
                assert spec.split(":")[0] in named_volumes, f"{name}: volume {spec!r} is not declared"
            else:
                assert p.exists(), f"{name}: mounts {spec!r} but {p} does not exist"
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown service {dep}"


def test_kafka_runs_kraft_with_the_official_image() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in json.dumps(env).upper()
    listeners = {part.split("://")[0] for part in env["KAFKA_LISTENERS"].split(",")}
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    advertised = {part.split("://")[0] for part in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    assert advertised <= listeners and env["KAFKA_CONTROLLER_LISTENER_NAMES"] not in advertised
    assert set(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].replace(":PLAINTEXT", "").split(",")) == listeners


def test_streamad_service_runs_the_config_in_docker() -> None:
    from streamad.config import load_settings

    svc = compose()["services"]["streamad"]
    assert svc["command"][:2] == ["run", "--config"]
    config_in_container = svc["command"][2]
    (mount,) = [v for v in svc["volumes"] if v.split(":")[1] == config_in_container]
    path = host_path(mount)
    assert path is not None and path.parent == DOCKER
    s = load_settings(path, env={})  # the whole file, kafka section included
    assert s.metrics.enabled
    assert s.kafka is not None and s.kafka.bootstrap_servers == ["kafka:9092"]
    # Every topic streamad reads or writes is created by the stack's topics job.
    script = compose()["services"]["topics"]["command"][-1]
    created = set(re.findall(r"([\w.-]+):\d+", script))
    wanted = {*s.kafka.topics, s.kafka.output_topic, s.kafka.dead_letter_topic, s.kafka.drift_topic}
    assert wanted <= created, f"topics not created: {wanted - created}"
    port = s.metrics.port
    assert f"{port}:{port}" in svc["ports"]
    prom = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "streamad"]
    targets = [f"{n}:{sd['port']}" for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
    targets += [t for sc in job.get("static_configs", []) for t in sc["targets"]]
    assert f"streamad:{port}" in targets


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_copies_what_exists_and_pins_cpu_torch() -> None:
    svc = compose()["services"]["streamad"]
    context = (DOCKER / svc["build"]["context"]).resolve()
    assert context == ROOT
    ins = dockerfile_instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    assert len(froms) == 1
    check_image(froms[0].split()[0])
    copies = [rest.split() for word, rest in ins if word == "COPY"]
    assert copies
    for args in copies:
        for src in [a for a in args[:-1] if not a.startswith("--")]:
            assert (context / src).exists(), f"COPY {src}: not in the build context {context}"
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    assert re.search(r"--index-url \S+/whl/cpu\b.*torch==2\.13\.0", runs), "install the pinned CPU build of torch"
    # The .dockerignore next to the Dockerfile must not hide what is copied.
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    for args in copies:
        for src in args[:-1]:
            assert f"!{src}" in ignore or f"!{src}/**" in ignore, f"{src} is copied but excluded by Dockerfile.dockerignore"
    entry = [rest for word, rest in ins if word == "ENTRYPOINT"]
    assert entry and json.loads(entry[0]) == ["streamad"]


def test_promtool_accepts_the_prometheus_config() -> None:
    promtool = shutil.which("promtool") or ("/usr/bin/promtool" if os.access("/usr/bin/promtool", os.X_OK) else None)
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`; scripts/test installs it)")
    r = subprocess.run([promtool, "check", "config", str(DOCKER / "prometheus" / "prometheus.yml")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_grafana_provisioning_matches_the_dashboard() -> None:
    c = compose()["services"]["grafana"]
    mounts = {v.split(":")[1]: host_path(v) for v in c["volumes"] if host_path(v) is not None}
    ds = yaml.safe_load((DOCKER / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    prov = yaml.safe_load((DOCKER / "grafana" / "provisioning" / "dashboards" / "streamad.yaml").read_text())
    (provider,) = prov["providers"]
    dash_dir = mounts[provider["options"]["path"]]
    assert dash_dir is not None
    dashboards = list(dash_dir.glob("*.json"))
    assert [d.name for d in dashboards] == ["streamad.json"]
    home = c["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/streamad.json"
    d = json.loads(dashboards[0].read_text())
    uids = set()
    for p in d["panels"]:
        for item in [p, *p.get("targets", [])]:
            if "datasource" in item:
                uids.add(item["datasource"]["uid"])
    assert uids == {source["uid"]}
    titles = " ".join(p["title"].lower() for p in d["panels"])
    for what in ("records per second", "lag", "latency", "score distribution", "threshold", "drift", "feature drift", "loe", "ess", "loss", "checkpoint"):
        assert what in titles, f"the dashboard has no panel about {what}"
    assert any(p["type"] == "heatmap" for p in d["panels"])
    assert any("drift" in a["name"].lower() for a in d["annotations"]["list"])
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))


def test_producer_messages_parse_with_the_docker_config() -> None:
    from streamad.records import Lane
    from streamad.schema import Schema

    r = subprocess.run(
        [sys.executable, str(DOCKER / "produce_demo.py"), "--dry-run", "--records", "3000", "--pumps", "2", "--rate", "0"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    msgs = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(msgs) == 6000
    rec = yaml.safe_load((DOCKER / "streamad.yaml").read_text())["record"]
    schema = Schema(features=rec["features"], key=rec["key"], timestamp=rec["timestamp"], label=rec["label"]).resolve(list(msgs[0]), guess=False)
    batch = schema.parse_mappings(msgs, np.arange(len(msgs)), Lane("sensors"))
    assert len(batch) + len(batch.rejects) == len(msgs)
    assert 0 < len(batch.rejects) < 20 and {x.code for x in batch.rejects} <= {"missing_field", "non_finite", "non_numeric"}
    assert batch.timestamps is not None and np.isfinite(batch.timestamps).all()
    assert set(batch.keys) == {"pump-1", "pump-2"}


def test_the_image_compiles_its_kernels_into_a_cache_its_user_owns() -> None:
    """numba caches compiled code beside the module only where that is writable; the
    image's user cannot write site-packages, so the cache lives in NUMBA_CACHE_DIR,
    filled at build time and handed to the user who runs streamad."""
    ins = dockerfile_instructions()
    env = " ".join(rest for word, rest in ins if word == "ENV")
    m = re.search(r"NUMBA_CACHE_DIR=(\S+)", env)
    assert m, "set NUMBA_CACHE_DIR"
    cache = m.group(1)
    users = [rest for word, rest in ins if word == "USER"]
    assert users and users[-1] == "streamad"
    useradd = [i for i, (word, rest) in enumerate(ins) if word == "RUN" and "useradd" in rest]
    home = re.search(r"--home-dir (\S+)", ins[useradd[0]][1])
    assert home and cache.startswith(home.group(1) + "/"), "the cache lives in the user's home"
    (compile_at,) = [i for i, (word, rest) in enumerate(ins) if word == "RUN" and "compile_kernels()" in rest]
    assert useradd[0] < compile_at, "the user exists before the cache is handed over"
    assert re.search(r'chown -R streamad "?\$NUMBA_CACHE_DIR"?', ins[compile_at][1])


def test_compile_kernels_fills_the_cache_numba_is_pointed_at(tmp_path) -> None:
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    (run,) = [rest for word, rest in dockerfile_instructions() if word == "RUN" and "compile_kernels()" in rest]
    (code,) = re.findall(r'python -c "([^"]*compile_kernels\(\)[^"]*)"', run)  # the image's own line
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    cached = {p.name.split("-")[0] for p in tmp_path.rglob("*.nbi")}
    assert {
        "temporal_kernel.run_rows", "temporal_kernel.running_means", "temporal_kernel.scale_columns", "record_kernel.record_scores", "record_kernel.scale_record",
        "record_kernel.quadratic", "record_kernel.axes_score",
        "kernel.feed", "kernel.chunk_medians", "histogram_kernel.binned", "histogram_kernel.quantiles",
        "gaussian_kernel.spd_inverse",
    } <= cached  # fmt: skip
