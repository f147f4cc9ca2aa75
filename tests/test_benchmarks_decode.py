"""The decoding benchmark's messages and its two readers (benchmarks/decode_throughput.py)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from benchmarks import decode_throughput as bench


@pytest.mark.parametrize("kind", bench.KINDS)
def test_both_readers_read_every_message_and_streamad_the_same_event_times(kind):
    msgs = bench.messages(300, kind)
    features = [k for k in orjson.loads(msgs[0].value) if k not in ("device", "timestamp")]
    polls = [msgs[i : i + 128] for i in range(0, len(msgs), 128)]
    assert bench.streamad_decode(polls)[1] == bench.bare_decode(polls, features)[1] == 300
    from streamad.config import RecordSettings
    from streamad.records import Lane

    batch = bench.JsonDecoder(RecordSettings(key="device"), max_message_bytes=10_000).decode(Lane("t", 0), msgs)
    assert not batch.rejects and batch.keys.tolist()[:9] == [f"pump-{i % 8}" for i in range(9)]
    # Every encoding carries the same instants (the Kafka timestamp to the millisecond).
    want = np.array([(bench.START.timestamp() + i) + ((i * 7919) % 1_000_000 if i % 3 else 0) / 1e6 for i in range(300)])
    np.testing.assert_allclose(batch.timestamps, want, rtol=0, atol=1e-3 if kind == "kafka timestamp" else 1e-6)


def test_the_report_has_a_row_for_each_kind_of_event_time(capsys):
    assert bench.main(["--records", "400", "--batch", "100", "--repeats", "1", "--no-write"]) == 0
    out = capsys.readouterr().out
    assert all(f"| {kind} |" in out for kind in bench.KINDS)
    assert bench.main(["--records", "1", "--no-write"]) == 2
