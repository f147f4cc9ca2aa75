"""Columnar batches of records, and rejected records.

Sources hand the pipeline `Batch` objects: many records from one partition of one
stream, held as arrays so that nothing on the hot path touches records one by one.
A window is a `Batch` too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, order=True)
class Lane:
    """Where records come from: a stream (file path or topic) and a partition.

    Model state is kept per lane so that a Kafka partition can move between workers
    together with the model that learned it.
    """

    stream: str
    partition: int = 0

    def __str__(self) -> str:
        return f"{self.stream}[{self.partition}]"


@dataclass(frozen=True)
class Reject:
    """A record that never reaches the model, and why.

    ``code`` is a short, fixed name for the kind of problem (a metric label);
    ``reason`` is the sentence for people.
    """

    lane: Lane
    offset: int  # Kafka offset, or 1-based data row number in a file
    code: str
    reason: str
    raw: bytes | str | None = None
    field: str | None = None


# The fixed set of reject codes.
REJECT_CODES = (
    "missing_field",
    "non_numeric",
    "non_finite",
    "bad_timestamp",
    "column_count",
    "not_json",
    "not_object",
    "oversized",
    "undecodable",
    "empty",
    "malformed",  # a delimited line whose quotes do not close
    "truncated",  # a line cut off where a compressed file's data broke
)


NO_LABEL = -1


@dataclass
class Batch:
    """Records of one lane, in order.

    ``X`` holds the raw (unscaled) features. ``offsets`` are Kafka offsets or file row
    numbers and identify each record. ``labels`` (1 = anomaly, 0 = normal, -1 = unknown)
    are for evaluation only: nothing in the model or threshold path reads them.
    """

    lane: Lane
    X: np.ndarray
    offsets: np.ndarray
    keys: np.ndarray | None = None
    timestamps: np.ndarray | None = None  # event time, seconds since the epoch
    labels: np.ndarray | None = None
    arrival: float = 0.0  # time.monotonic() when the batch was read
    rejects: list[Reject] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.X = np.asarray(self.X, dtype=np.float64)
        if self.X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {self.X.shape}")
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        if len(self.offsets) != len(self.X):
            raise ValueError("offsets and X differ in length")

    def __len__(self) -> int:
        return len(self.X)

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def slice(self, start: int, stop: int) -> Batch:
        return Batch(
            lane=self.lane,
            X=self.X[start:stop],
            offsets=self.offsets[start:stop],
            keys=None if self.keys is None else self.keys[start:stop],
            timestamps=None if self.timestamps is None else self.timestamps[start:stop],
            labels=None if self.labels is None else self.labels[start:stop],
            arrival=self.arrival,
        )

    def select(self, mask: np.ndarray) -> Batch:
        return Batch(
            lane=self.lane,
            X=self.X[mask],
            offsets=self.offsets[mask],
            keys=None if self.keys is None else self.keys[mask],
            timestamps=None if self.timestamps is None else self.timestamps[mask],
            labels=None if self.labels is None else self.labels[mask],
            arrival=self.arrival,
            rejects=self.rejects,
        )

    @staticmethod
    def concat(parts: Sequence[Batch]) -> Batch:
        """Join batches of one lane; ``arrival`` is the earliest one."""
        if len(parts) == 1:
            p = parts[0]
            return Batch(p.lane, p.X, p.offsets, p.keys, p.timestamps, p.labels, p.arrival)

        def cat(name: str) -> Any:
            cols = [getattr(p, name) for p in parts]
            if any(c is None for c in cols):
                return None
            return np.concatenate(cols)

        return Batch(
            lane=parts[0].lane,
            X=np.concatenate([p.X for p in parts]),
            offsets=np.concatenate([p.offsets for p in parts]),
            keys=cat("keys"),
            timestamps=cat("timestamps"),
            labels=cat("labels"),
            arrival=min(p.arrival for p in parts),
        )
