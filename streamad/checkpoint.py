"""A checkpoint format that never unpickles: nested state as JSON, arrays as ``.npy``.

State dicts of detectors, scalers and thresholds are nested dicts, lists and tuples
of numbers, strings, None, numpy arrays and torch tensors. They are written as one
``.npz`` archive holding a JSON manifest and, for each dtype, one array with every
array of that dtype laid end to end (the manifest says where each one starts and its
shape), and read back with ``allow_pickle=False``: a checkpoint from an untrusted place
cannot run code.

One entry per dtype, not per array: a lane of 1,024 devices holds about 23,000 small
arrays (each key's Gaussian, threshold and temporal state), and a zip entry apiece made
the checkpoint, written every ``state.checkpoint_interval_seconds``, cost 1.2 s to write
and 2.8 s to read. Checkpoints of the first format (an entry per array) still load.

>>> import numpy as np
>>> state = {"n": 3, "w": np.arange(3.0), "opt": {0: (1, "a")}}
>>> back = loads(dumps(state))
>>> back["n"], back["w"].tolist(), back["opt"]
(3, [0.0, 1.0, 2.0], {0: (1, 'a')})
"""

from __future__ import annotations

import io
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson

FORMAT = "streamad-checkpoint/2"
#: the first format: one ``.npz`` entry per array (read, no longer written)
FORMAT_1 = "streamad-checkpoint/1"


def _encode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        # JSON has no NaN/inf; keep them exact through a 0-d array.
        if f != f or f in (float("inf"), float("-inf")):
            name = f"a{len(arrays)}"
            arrays[name] = np.asarray(f)
            return {"__scalar__": name}
        return f
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError("object arrays cannot be checkpointed safely")
        name = f"a{len(arrays)}"
        arrays[name] = obj
        return {"__array__": name}
    if type(obj).__module__.startswith("torch") and type(obj).__name__ in ("Tensor", "Parameter"):
        t = obj.detach().cpu()
        name = f"a{len(arrays)}"
        arrays[name] = t.float().numpy() if str(t.dtype) == "torch.bfloat16" else t.numpy()
        return {"__tensor__": name, "dtype": str(t.dtype)}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, arrays) for k, v in obj.items()}
        return {"__items__": [[_encode(k, arrays), _encode(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, arrays) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, arrays) for v in obj]
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}")


def _decode(obj: Any, arrays: Any) -> Any:
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__array__" in obj:
        return arrays[obj["__array__"]]
    if "__scalar__" in obj:
        return float(arrays[obj["__scalar__"]])
    if "__tensor__" in obj:
        import torch

        t = torch.from_numpy(np.array(arrays[obj["__tensor__"]]))
        return t.to(getattr(torch, obj["dtype"].removeprefix("torch.")))
    if "__tuple__" in obj:
        return tuple(_decode(v, arrays) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_decode_key(_decode(k, arrays)): _decode(v, arrays) for k, v in obj["__items__"]}
    return {k: _decode(v, arrays) for k, v in obj.items()}


def _decode_key(k: Any) -> Any:
    return tuple(k) if isinstance(k, list) else k


def dumps(state: Any) -> bytes:
    arrays: dict[str, np.ndarray] = {}
    encoded = _encode(state, arrays)
    # Arrays of one dtype laid end to end in one entry; ``index`` says where each is.
    parts: dict[str, list[np.ndarray]] = {}
    filled: dict[str, int] = {}
    index: dict[str, list[Any]] = {}
    for name, a in arrays.items():
        kind = a.dtype.str
        start = filled.get(kind, 0)
        parts.setdefault(kind, []).append(a.reshape(-1))
        filled[kind] = start + a.size
        index[name] = [kind, start, list(a.shape)]
    blobs = {f"b{i}": np.concatenate(p) for i, p in enumerate(parts.values())}
    manifest = {"format": FORMAT, "state": encoded, "arrays": index, "blobs": {kind: f"b{i}" for i, kind in enumerate(parts)}}
    buf = io.BytesIO()
    # The entry names are b0, b1, ...: none can be taken for savez's allow_pickle.
    np.savez(buf, __manifest__=np.frombuffer(orjson.dumps(manifest), dtype=np.uint8), **blobs)  # type: ignore[arg-type]
    return buf.getvalue()


def loads(data: bytes) -> Any:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        manifest = orjson.loads(npz["__manifest__"].tobytes())
        fmt = manifest.get("format")
        if fmt == FORMAT_1:
            arrays = {k: npz[k] for k in npz.files if k != "__manifest__"}
        elif fmt == FORMAT:
            arrays = _unpack(manifest, {kind: npz[name] for kind, name in manifest["blobs"].items()})
        elif isinstance(fmt, str) and fmt.startswith("streamad-checkpoint/"):
            raise ValueError(f"a checkpoint of a newer streamad (format {fmt!r}; this one reads {FORMAT_1!r} and {FORMAT!r})")
        else:
            raise ValueError(f"not a streamad checkpoint (format {fmt!r})")
    return _decode(manifest["state"], arrays)


def _unpack(manifest: dict[str, Any], blobs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name, (kind, start, shape) in manifest["arrays"].items():
        blob = blobs.get(kind)
        size = math.prod(shape)
        if blob is None or blob.dtype.str != kind or not 0 <= start <= start + size <= len(blob):
            raise ValueError(f"corrupt streamad checkpoint: array {name} ({kind}, {start}, {shape}) is not in its entry")
        # A copy: each array of the state is its own, writable, as the first format's were.
        arrays[name] = blob[start : start + size].reshape(shape).copy()
    return arrays


def save(path: str | os.PathLike[str], state: Any) -> None:
    """Write atomically: a crash leaves either the old checkpoint or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = dumps(state)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dirfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


def load(path: str | os.PathLike[str]) -> Any:
    return loads(Path(path).read_bytes())
