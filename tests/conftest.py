from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _find_shared() -> Path:
    """``shared/`` beside the checkout (as CI has it), or beside any parent folder; ``SHARED_DATA_DIR``
    names another (not a STREAMAD_ variable: those are settings)."""
    if "SHARED_DATA_DIR" in os.environ:
        return Path(os.environ["SHARED_DATA_DIR"])
    for parent in ROOT.parents:
        if (parent / "shared" / "datasets").is_dir():
            return parent / "shared"
    return ROOT.parent / "shared"


SHARED = _find_shared()
ODDS = SHARED / "datasets" / "odds"
SKAB = SHARED / "datasets" / "skab"


@pytest.fixture(scope="session")
def odds_dir() -> Path:
    if not ODDS.is_dir():
        pytest.skip(f"ODDS data not found at {ODDS}")
    return ODDS


@pytest.fixture(scope="session")
def skab_dir() -> Path:
    if not SKAB.is_dir():
        pytest.skip(f"SKAB data not found at {SKAB}")
    return SKAB


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a fresh interpreter, by default from an empty
    directory of its own, so outputs on default paths never land in the repository."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "streamad", *args],
        cwd=cwd or tempfile.mkdtemp(prefix="streamad-cli-"),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def assert_resumes_exactly(det: Any, back: Any, probe: Any, nxt: Any) -> None:
    """``det``'s checkpoint, loaded into a fresh ``back``: scoring ``probe`` changes no
    state, ``back`` scores it identically, and after both learn ``nxt`` their scores and
    contributions are still identical."""
    import numpy as np

    from streamad import checkpoint

    before = checkpoint.dumps(det.state_dict())
    s = det.score(probe)
    assert np.isfinite(s).all()
    assert checkpoint.dumps(det.state_dict()) == before
    back.load_state_dict(checkpoint.loads(before))
    assert np.array_equal(back.score(probe), s)
    det.learn(nxt)
    back.learn(nxt)
    assert np.array_equal(back.score(probe), det.score(probe))
    assert np.array_equal(back.contributions(probe), det.contributions(probe))


def restart_halfway(
    settings: Any, X: Any, keys: Any, ts: Any, names: list[str], state_dir: Path, cut: int = 640, after: Any = None
) -> tuple[Any, Any, Any]:
    """The stream through one pipeline, and through one that stops after ``cut`` records
    (its lane state checkpointed) and a second that resumes from that state (configured
    with ``after``: an upgrade's settings; default the same): the uninterrupted run's
    scores, the two halves' joined, and the resumed pipeline."""
    import numpy as np

    from streamad.app.replay import Recorder
    from streamad.connectors.sinks import MemorySink
    from streamad.pipeline import Pipeline
    from streamad.sources import ArraySource
    from streamad.state import StateStore

    def source(n: int) -> ArraySource:
        return ArraySource(X[:n], keys=keys[:n], timestamps=ts[:n], chunk_rows=64)

    whole, first, second = Recorder(), Recorder(), Recorder()
    Pipeline(settings, MemorySink(), feature_names=names, observers=[whole]).run(source(len(X)))
    store = StateStore(state_dir)
    Pipeline(settings, MemorySink(), feature_names=names, observers=[first], store=store).run(source(cut))
    resumed = Pipeline(settings if after is None else after, MemorySink(), feature_names=names, observers=[second], store=store)
    resumed.run(source(len(X)))
    return whole.array("scores"), np.concatenate([first.array("scores"), second.array("scores")]), resumed
