"""Per-lane model state on disk: one atomic checkpoint file per lane."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from streamad import checkpoint
from streamad.records import Lane


class StateStore:
    """Checkpoints in a directory shared by every worker of a consumer group, so a
    partition's new owner restores the model its old owner checkpointed."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, lane: Lane) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]", "_", lane.stream)
        return self.directory / f"{safe}-{lane.partition}.ckpt"

    def save(self, lane: Lane, state: dict[str, Any]) -> None:
        checkpoint.save(self.path(lane), state)

    def load(self, lane: Lane) -> dict[str, Any] | None:
        p = self.path(lane)
        if not p.exists():
            return None
        state = checkpoint.load(p)
        if not isinstance(state, dict):
            raise ValueError(f"checkpoint {p} does not hold a lane state")
        return state
