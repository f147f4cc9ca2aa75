"""Replay the demo pump-station sensor stream into a Kafka topic, paced in real time.

Each pump is one key (so one partition) and its own seeded copy of the demo stream
(``streamad.app.demo.generate``: spikes, level shifts, a stuck sensor, NaN dropouts and a
slow temperature drift over the second half). Event times are stamped at production,
so streamad's event-time latency is meaningful. Messages are JSON objects:
``{"timestamp": 1767225600.0, "pump": "pump-1", "flow": 50.1, ..., "label": 0}``
(``label`` is for evaluation only; NaN dropouts are sent as ``null`` and are rejected).

    python docker/produce_demo.py --bootstrap localhost:29092 --topic sensors
    python docker/produce_demo.py --dry-run --records 5      # print messages, no Kafka
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from typing import Any


def messages(pumps: int, records: int, seed: int, clock: Any = time.time) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """(key, message) pairs, round-robin over pumps, ``records`` per pump."""
    from streamad.app.demo import generate

    # The demo stream plants its anomalies at fixed shares of its length: it needs a few thousand records.
    streams = [generate(n=max(records, 3000), seed=seed + p, drift=True, anomalies=True) for p in range(pumps)]
    for i in range(records):
        for p, s in enumerate(streams):
            msg: dict[str, Any] = {"timestamp": clock(), "pump": f"pump-{p + 1}"}
            for name, v in zip(s.feature_names, s.X[i]):
                msg[name] = None if math.isnan(v) else round(float(v), 6)
            msg["label"] = int(s.y[i])
            yield f"pump-{p + 1}".encode(), msg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", default="localhost:9092", help="Kafka bootstrap servers")
    ap.add_argument("--topic", default="sensors")
    ap.add_argument("--pumps", type=int, default=3, help="keys (pumps), each its own stream")
    ap.add_argument("--partitions", type=int, default=3, help="pump p goes to partition p mod this (one pump, one lane)")
    ap.add_argument("--records", type=int, default=20_000, help="records per pump per pass")
    ap.add_argument("--rate", type=float, default=50.0, help="records per second per pump (0: as fast as possible)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--loop", action="store_true", help="start over after the last record (new seeds)")
    ap.add_argument("--dry-run", action="store_true", help="print the messages as JSON lines instead of producing")
    args = ap.parse_args(argv)

    producer = None
    if not args.dry_run:
        from kafka import KafkaProducer

        for _attempt in range(60):  # the broker may still be starting
            try:
                producer = KafkaProducer(bootstrap_servers=args.bootstrap, acks="all", linger_ms=20, value_serializer=lambda m: json.dumps(m).encode())
                break
            except Exception as e:  # NoBrokersAvailable and friends
                print(f"waiting for Kafka at {args.bootstrap}: {e}", file=sys.stderr)
                time.sleep(2)
        else:
            return 1
    sent, seed, start = 0, args.seed, time.monotonic()
    try:
        while True:
            for key, msg in messages(args.pumps, args.records, seed):
                if args.dry_run:
                    print(json.dumps(msg))
                else:
                    pump = int(key.decode().rsplit("-", 1)[1]) - 1
                    producer.send(args.topic, key=key, value=msg, partition=pump % args.partitions, timestamp_ms=int(msg["timestamp"] * 1000))  # type: ignore[union-attr]
                sent += 1
                if args.rate > 0:
                    due = start + sent / (args.rate * args.pumps)
                    wait = due - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
            if not args.loop:
                break
            seed += args.pumps
    except KeyboardInterrupt:
        pass
    finally:
        if producer is not None:
            producer.flush()
            producer.close()
    print(f"produced {sent} records to {args.topic}" if not args.dry_run else f"{sent} messages", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
