"""How the default drift settings do on the demo sensor stream, over many seeds.

Replays ``streamad.app.demo.generate`` (20,000 records, 6 sensors, 1 Hz) with and without
the planted temperature drift (a ramp to about 4 standard deviations over the second
half, from record 10,000) and with and without the planted anomalies, and counts drift
alarms. Prints a markdown table (docs/observability.md quotes it). The defaults were
chosen on seeds 1-5; run on other seeds to check them:

    python -m benchmarks.drift_calibration --seeds 6-25 --method psi
"""

from __future__ import annotations

import argparse
from typing import Any


def run(seed: int, drift: bool, anomalies: bool, overrides: dict[str, Any]) -> list[Any]:
    from streamad.app.demo import generate
    from streamad.app.replay import replay
    from streamad.config import load_settings
    from streamad.connectors.odds import ArraySource
    from streamad.connectors.sinks import NullSink
    from streamad.pipeline import Observer

    class Collect(Observer):
        def __init__(self) -> None:
            self.events: list[Any] = []

        def on_window(self, r: Any) -> None:
            self.events += list(r.drift.events)

    st = generate(n=20_000, seed=seed, drift=drift, anomalies=anomalies)
    c = Collect()
    src = ArraySource(st.X, st.y, timestamps=st.timestamps, feature_names=st.feature_names)
    replay(src, load_settings(env={}, overrides=overrides), NullSink(), st.feature_names, observers=[c])
    return c.events


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="6-25")
    ap.add_argument("--method", default="psi")
    args = ap.parse_args()
    a, b = (int(x) for x in args.seeds.split("-"))
    seeds = range(a, b + 1)
    overrides = {"drift": {"method": args.method, "action": "none"}}
    print("| planted drift | anomalies | runs | runs with a feature alarm on temperature | alarms on other features | runs with a score alarm | first alarm (record, median) |")
    print("|---|---|---|---|---|---|---|")
    for drift in (True, False):
        for anomalies in (True, False):
            temp = other = score = 0
            firsts = []
            for seed in seeds:
                ev = run(seed, drift, anomalies, overrides)
                temp += any(e.kind == "feature" and e.feature == "temperature" for e in ev)
                other += sum(e.kind == "feature" and e.feature != "temperature" for e in ev)
                score += any(e.kind == "score" for e in ev)
                if ev:
                    firsts.append(min(e.offset for e in ev))
            first = f"{sorted(firsts)[len(firsts) // 2]:,}" if firsts else "-"
            print(f"| {'yes' if drift else 'no'} | {'yes' if anomalies else 'no'} | {len(seeds)} | {temp} | {other} | {score} | {first} |")


if __name__ == "__main__":
    main()
