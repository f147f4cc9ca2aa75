import io

import numpy as np
import pytest
import torch

from streamad import checkpoint


def test_round_trip_of_nested_state_with_tensors_and_special_floats(tmp_path):
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(m.parameters())
    m(torch.randn(4, 3)).sum().backward()
    opt.step()
    state = {"model": m.state_dict(), "opt": opt.state_dict(), "inf": float("inf"), "none": None, "t": (1, "x"), "ints": {3: [1, 2]}}
    checkpoint.save(tmp_path / "c.ckpt", state)
    back = checkpoint.load(tmp_path / "c.ckpt")
    m2 = torch.nn.Linear(3, 2)
    m2.load_state_dict(back["model"])
    assert all(torch.equal(a, b) for a, b in zip(m.parameters(), m2.parameters()))
    opt2 = torch.optim.Adam(m2.parameters())
    opt2.load_state_dict(back["opt"])
    assert back["inf"] == float("inf") and back["none"] is None and back["t"] == (1, "x") and back["ints"] == {3: [1, 2]}


def test_pickled_payloads_are_refused():
    buf = io.BytesIO()
    np.savez(buf, __manifest__=np.frombuffer(b'{"format": "streamad-checkpoint/1", "state": {"__array__": "a0"}}', dtype=np.uint8), a0=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        checkpoint.loads(buf.getvalue())


def test_object_arrays_cannot_be_written():
    with pytest.raises(TypeError):
        checkpoint.dumps({"x": np.array([object()], dtype=object)})


def test_not_a_checkpoint():
    buf = io.BytesIO()
    np.savez(buf, __manifest__=np.frombuffer(b'{"format": "other"}', dtype=np.uint8))
    with pytest.raises(ValueError, match="not a streamad checkpoint"):
        checkpoint.loads(buf.getvalue())


def test_atomic_write_leaves_no_temporary_files(tmp_path):
    for i in range(3):
        checkpoint.save(tmp_path / "s.ckpt", {"i": i})
    assert [p.name for p in tmp_path.iterdir()] == ["s.ckpt"]
    assert checkpoint.load(tmp_path / "s.ckpt") == {"i": 2}
