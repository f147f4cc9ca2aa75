"""Where a replay's outputs go, and the rule that keeps one input's results from
overwriting another's.

Default names are unique per input path (`output_prefix`). Before anything is written,
`check_outputs` refuses what would lose data: writing over the input, two outputs on
one file, and, without ``--force``, an existing file that holds another input's
results or something streamad did not write (`OVERWRITE_RULE`). This module is light
on purpose: the command line checks outputs before the model (and PyTorch) loads.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path


def output_prefix(source: Path) -> str:
    """The name a replay's default outputs start with, unique per input path: the
    input's parent directory and stem (to be readable) and a short hash of its resolved
    path (to be unique: ``a/x/0.csv`` and ``b/x/0.csv`` differ only there).

    >>> p = output_prefix(Path("/data/skab/valve1/0.csv")); p.startswith("valve1-0-"), len(p)
    (True, 15)
    >>> output_prefix(Path("/data/skab/valve2/0.csv")) != output_prefix(Path("/data/skab/valve1/0.csv"))
    True
    """
    if str(source) == "-":
        return "stdin"
    try:
        # Resolving follows symlinks, so a link and its target share their outputs; a
        # pipe or device is named as given (/dev/stdin resolves to a new pipe each time).
        where = source.resolve() if source.is_file() else Path(os.path.abspath(source))
    except (OSError, RuntimeError):
        where = Path(os.path.abspath(source))
    digest = hashlib.sha256(os.fsencode(where)).hexdigest()[:6]
    parts = [_safe_name(where.parent.name)[:40], _safe_name(source.stem)[:80] or "stream", digest]
    return "-".join(p for p in parts if p)


def _safe_name(name: str) -> str:
    """A file name fragment: letters, digits, ``.``, ``_`` and ``-`` only."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")


def default_output_paths(source: Path, out_dir: Path) -> tuple[Path, Path]:
    """Detections and rejects files of a replay without ``--out`` / ``--rejects``."""
    prefix = output_prefix(source)
    return out_dir / f"{prefix}.detections.jsonl", out_dir / f"{prefix}.rejects.csv"


def default_drift_path(source: Path, out_dir: Path) -> Path:
    return out_dir / f"{output_prefix(source)}.drift.jsonl"


OVERWRITE_RULE = (
    "An output file that exists is overwritten only when it is empty or holds results of "
    "the same input (re-running a replay replaces its own outputs); a file with another "
    "input's results, or one streamad did not write, is refused unless --force."
)


def output_origin(path: Path) -> tuple[str, str | None]:
    """What an existing output file holds: ``("empty", None)`` (nothing, or a header
    only: nothing to lose), ``("streamad", stream)`` (results streamad wrote for the input
    named ``stream``) or ``("other", None)``. Only the start of the file is read."""
    import csv
    import json

    try:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
    except OSError:
        return "other", None
    if not head.strip():
        return "empty", None
    first = head.split(b"\n", 1)[0].strip()
    try:
        record = json.loads(first)
    except ValueError:
        record = None
    if record is None and head.lstrip().startswith(b"{"):
        try:
            record = json.loads(head)  # a summary written with --summary-json
        except ValueError:
            record = None
    if isinstance(record, dict):
        src = record.get("source")
        stream = src.get("stream") if isinstance(src, dict) else src if "read" in record else record.get("stream")
        return ("streamad", stream) if isinstance(stream, str) else ("other", None)
    from streamad.connectors.sinks import CsvSink, RejectsFile

    text = head.decode("utf-8", errors="replace").splitlines()
    for columns in (CsvSink.COLUMNS, RejectsFile.COLUMNS):
        if text and text[0].strip() == ",".join(columns):
            rows = [r for r in csv.reader(text[1:2]) if r]
            if not rows:
                return "empty", None
            i = columns.index("stream")
            return ("streamad", rows[0][i]) if len(rows[0]) > i else ("other", None)
    return "other", None


def _same_input(stream: str, source: Path, names: Sequence[str]) -> bool:
    if stream in names:
        return True
    try:
        return Path(stream).exists() and os.path.samefile(stream, source)
    except OSError:
        return False


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def is_stdout(path: Path | str) -> bool:
    """``-``, or a path that is this process's stdout (``/dev/stdout``, ``/proc/self/fd/1``)."""
    if str(path) == "-":
        return True
    try:
        a, b = os.stat(path), os.fstat(1)
    except (OSError, ValueError):
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def check_outputs(source: Path, outputs: dict[str, Path], force: bool = False, names: Sequence[str] = (), own: Sequence[Path] = ()) -> None:
    """Refuse, before anything is written, outputs that would destroy data: the input
    itself, two outputs on one file, a directory, a path below a file, and (without
    ``force``) an existing file holding another input's results (see `OVERWRITE_RULE`).
    ``outputs`` maps an option name (``--out``) to its path; ``names`` are the names
    the input's results carry as their stream (the path as given). Paths in ``own``
    are the input's default outputs: their name already says which input they are of."""
    from streamad.errors import InputError

    names = [str(source), *names]
    seen: dict[str, str] = {}
    for option, path in outputs.items():
        try:
            _check_output(source, option, path, force, names, own, seen)
        except OSError as e:  # a name too long, a symlink loop...
            raise InputError(f"{option} {path}: {e.strerror or e}") from None


def _check_output(source: Path, option: str, path: Path, force: bool, names: Sequence[str], own: Sequence[Path], seen: dict[str, str]) -> None:
    """One output of `check_outputs`; ``seen`` maps the real paths checked so far to their option."""
    from streamad.errors import InputError

    if is_stdout(path):
        return
    if str(path) in ("", "."):
        raise InputError(f"{option}: '{path}' is empty or the current directory; give a file name")
    if path.is_dir():
        raise InputError(f"{option} {path} is a directory; give a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{option} {path}: {parent} is not a directory")
            break
    exists = path.exists()
    if exists and not _is_regular(path):
        return  # /dev/null, a FIFO: nothing to overwrite, and may be given twice
    key = os.path.realpath(path)
    if key in seen:
        raise InputError(f"{seen[key]} and {option} both name {path}: give each output its own file")
    seen[key] = option
    if exists and source.exists() and os.path.samefile(path, source):
        raise InputError(f"{option} {path} is the input file: it would be overwritten")
    if exists and not force and path not in own:
        kind, stream = output_origin(path)
        if kind == "other":
            raise InputError(f"{option} {path} exists and does not hold streamad results; --force overwrites it")
        if kind == "streamad" and not _same_input(stream or "", source, names):
            raise InputError(f"{option} {path} holds the results of another input ({stream!r}, as it was named then); --force overwrites it")
