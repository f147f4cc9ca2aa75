"""The Detector contract.

A detector scores a whole window with the state it had before the window, then learns
from it. ``score`` never changes state, so a record is always judged by a model that
has not yet seen it. ``score_one``/``learn_one`` give the river-style per-record API on
top of the window API: records are learned in mini-batches.
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from streamad.detectors.params import check_params
from streamad.minibatch import Keys, MiniBatches, Record


@dataclass
class LearnReport:
    """What one ``learn`` call did; metrics and the CLI read it."""

    n_learned: int
    loss: float | None = None
    loe_flag_rate: float | None = None  # share of the window LOE labelled anomalous
    ess: float | None = None  # effective sample size of the importance weights, as a share of the window
    warmup: bool = False
    extra: dict[str, float] = field(default_factory=dict)
    #: set by the ``Model``: the keys (None: records without one) whose lasting state it
    #: began to adopt with this window, each with its records flagged in a row
    lasting: list[tuple[Any, int]] = field(default_factory=list)


class Detector(abc.ABC):
    """Base class for every detector.

    Subclasses implement ``score``, ``learn``, ``state_dict`` and ``load_state_dict``.
    Scores are floats where higher means more anomalous; their scale is the
    detector's own (thresholds are learned on top of them).

    **Parameters** are the constructor's keyword arguments, typed, with their
    constraints in the annotation (``Annotated[float, Field(gt=0)]``); the constructor
    checks them, ``streamad.detectors.validate_params`` checks a dict of them without
    building anything, and ``get_params()`` returns them. They are fixed for the
    detector's life: a different configuration is a different detector.

    **Checkpoints.** ``state_dict()`` holds the parameters and everything learned,
    including records ``learn_one`` has buffered. ``load_state_dict(state)`` restores
    the learned state into this detector, which keeps its own parameters: a state made
    with other parameters is refused with a ``ValueError`` naming each one that
    differs, so a restored model is always the configured one (the pipeline reports it
    in one line). ``Detector.from_state_dict(state)`` is the other way round: a new
    detector with the checkpoint's parameters, restored.

    **Keys.** ``score(X, keys)``, ``learn(X, keys)`` and ``contributions(X, keys)`` take
    the records' keys (the device, sensor or tenant each record came from), one per row
    of ``X``: a string, or None for a record without a key; ``keys=None`` means no
    record has one. A detector that ignores keys (``uses_keys`` False: every shipped
    detector but ``hgad``) accepts and ignores them, and computes exactly what it
    computes without them. A detector that uses keys maps each key to a **class** of
    its own model: the first keys get a class each, in the order they arrive, up to its
    ``max_classes``; records without a key share one class (the key None); a key
    never seen before that finds every class taken joins the class its first records
    resemble most (the nearest class under the model as it is), and keeps it. The key
    table is part of the state. ``score`` never changes the table: a key it has not
    seen is scored as a member of the class it would join, and joins when ``learn``
    first sees it. When the key is too young for statistics of its own (per-key score
    normalisation), its class's, or the whole stream's, stand in. A detector that
    ignores keys serves a stream of many devices as one population.

    **One record at a time** (river style): ``score_one(x, key)`` scores a record with the
    model as of the last learned mini-batch; ``learn_one(x, key)`` buffers it (with its
    key) and learns the
    buffer as one batch when it is full: the first batch holds ``first_minibatch``
    records and each next one twice as many, up to ``minibatch_size`` (the detector's
    batch size), so a young model learns early and an old one at full speed.
    ``flush()`` learns a partial buffer now; ``learn_many(X)`` learns the buffer and
    ``X`` together, ``score_many(X)`` scores a batch. A record is a mapping (feature
    name to value: the names of the first one fix the order), a sequence or an array.

    >>> import numpy as np
    >>> from streamad.detectors.gaussian import Gaussian
    >>> det = Gaussian(warmup=16)
    >>> rng = np.random.default_rng(0)
    >>> for x in rng.normal(size=(40, 2)):
    ...     det.learn_one({"a": x[0], "b": x[1]})
    >>> det.seen, len(det.buffered)  # batches of 8 and 16 learned, 16 records waiting
    (24, 16)
    >>> det.score_one({"a": 0.0, "b": 9.0}) > det.score_one({"a": 0.0, "b": 0.0})
    True
    """

    name: ClassVar[str] = "detector"
    version: ClassVar[str] = "1"
    #: Parameters added since states of this version were first written, at the values
    #: those states were computed with: a state that lacks one was made with this value.
    implied_params: ClassVar[dict[str, Any]] = {}
    #: The scaler the pipeline puts in front of this detector unless told otherwise.
    preferred_scaler: ClassVar[str] = "standard"
    #: Whether the records' keys change what the detector computes (see "Keys" above).
    uses_keys: ClassVar[bool] = False
    #: Whether each key's scores come from a model of that key alone (``per-key``), so
    #: that they mean something only beside the same key's: the model then keeps a
    #: threshold per key (streamad/judging.py), young while ``key_young(key)``.
    scores_per_key: ClassVar[bool] = False
    #: Whether the detector learns every record of a window, alarms included: one that
    #: screens its own contamination (hgad's LOE on per-class scores) and whose density
    #: would grow too thin a tail without them. Others get one alarmed record in ten
    #: (``Model.learn``).
    learns_alarmed: ClassVar[bool] = False
    #: Records in the first mini-batch of ``learn_one``; each next one doubles.
    first_minibatch: ClassVar[int] = 8
    #: The parameter holding the records of the detector's warm-up, whose scores make a
    #: provisional threshold (None: no warm-up to shorten); the replay's notes name it.
    warmup_param: ClassVar[str | None] = None

    def warmup_setting(self) -> tuple[int, str, str] | None:
        """The records of this detector's warm-up, the ``--param`` that sets them (its
        value shown as ``N``) and the settings key: what the replay's notes name. None:
        no warm-up to shorten."""
        p = self.warmup_param
        return None if p is None else (int(getattr(self, p)), f"{p}=N", f"detector.params.{p}")

    def learns_alarmed_rows(self, keys: Keys, n: int) -> np.ndarray | bool:
        """Which of a window's ``n`` records (with ``keys``) this detector learns even when
        the model flagged them: ``learns_alarmed`` for all of them, unless the detector
        decides per record (``per-key``: each key's detector as it would alone)."""
        return bool(self.learns_alarmed)

    def key_young(self, key: Any) -> bool:
        """Whether ``key``'s scores are still those of a warm-up (``scores_per_key``
        detectors; the others answer for the whole stream in ``LearnReport.warmup``)."""
        raise NotImplementedError(f"{self.name} does not keep a model per key")


    # -- parameters ---------------------------------------------------------------------

    def _set_params(self, owner: type, values: Mapping[str, Any]) -> None:
        """Check the arguments of ``owner.__init__`` (``values``: its ``locals()``) and
        keep each one as an attribute of the same name."""
        names = [n for n in _init_names(owner) if n in values]
        checked = check_params(owner, {n: values[n] for n in names}, getattr(owner, "name", owner.__name__))
        for n in names:
            setattr(self, n, checked.get(n, values[n]))

    @classmethod
    def _param_names(cls) -> list[str]:
        return list(_param_names(cls))

    def get_params(self) -> dict[str, Any]:
        """The parameters this detector was made with."""
        return {n: getattr(self, n) for n in self._param_names() if hasattr(self, n)}

    @property
    def params(self) -> dict[str, Any]:
        return self.get_params()

    def _state_header(self) -> dict[str, Any]:
        """What every state of this detector starts with: its name, version and parameters."""
        return {"name": self.name, "version": self.version, "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.get_params().items()}}

    def _check_header(self, state: Mapping[str, Any], legacy: Mapping[str, Any] | None = None) -> None:
        """Refuse a state of another detector, version or parameters, saying which."""
        if state.get("name") != self.name:
            raise ValueError(f"state is for detector {state.get('name')!r}, not {self.name!r}")
        if str(state.get("version")) != self.version:
            raise ValueError(
                f"state is from {self.name} version {state.get('version')}, this is version {self.version}: "
                "the model cannot continue from it (start with an empty state directory)"
            )
        self._check_params(state["params"], legacy)

    def _check_params(self, saved: Mapping[str, Any], legacy: Mapping[str, Any] | None = None) -> None:
        """Refuse a state made with other parameters, naming them. ``legacy``: values of
        parameters that older states carry and this detector no longer takes (they must
        be at these values, the only ones it computes)."""
        mine = self.get_params()
        saved = self._with_implied(saved)
        differ = []
        for k, v in saved.items():
            if k in mine:
                want = mine[k]
            elif legacy is not None and k in legacy:
                want = legacy[k]
            else:
                differ.append(f"{k}={v!r} (not a parameter of {self.name} {self.version})")
                continue
            if _plain(v) != _plain(want):
                differ.append(f"{k}={v!r} (configured: {want!r})")
        if differ:
            raise ValueError(
                f"the {self.name} state was made with other parameters: {', '.join(differ)}; "
                "configure those to continue from it, or start without it"
            )

    @classmethod
    def _with_implied(cls, saved: Mapping[str, Any]) -> dict[str, Any]:
        return {**{k: v for k, v in cls.implied_params.items() if k not in saved}, **saved}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> Detector:
        """A detector made with the parameters recorded in ``state``, restored from it."""
        names = set(cls._param_names())
        det = cls(**{k: v for k, v in cls._with_implied(dict(state.get("params") or {})).items() if k in names})
        det.load_state_dict(state)
        return det

    # -- the window contract -------------------------------------------------------------

    @abc.abstractmethod
    def score(self, X: np.ndarray, keys: Keys = None) -> np.ndarray:
        """Scores of the records of ``X`` (n × d), without changing any state; ``keys``:
        one per record, or None (see "Keys" in the class docstring)."""

    @abc.abstractmethod
    def learn(self, X: np.ndarray, keys: Keys = None) -> LearnReport:
        """Learn from the records of ``X`` (n × d) and their ``keys``."""

    def contributions(self, X: np.ndarray, keys: Keys = None) -> np.ndarray | None:
        """Per-feature, non-negative contributions to each record's score (n × d), if the
        detector can tell; ``None`` lets the pipeline fall back to scaled deviations."""
        return None

    def on_drift(self, kind: str) -> None:  # noqa: B027 (an optional hook: a no-op unless overridden)
        """Called when a drift detector fires; detectors that keep warm-up state may reopen it."""

    def on_lasting_state(self, keys: Sequence[Any]) -> None:  # noqa: B027 (an optional hook: a no-op unless overridden)
        """Called when the records of ``keys`` (None: records without a key) have been
        flagged for the model's ``adopt_after`` records in a row: a state that lasts,
        which the model now learns in full. Detectors that hold the old state for long
        (a Gaussian with a long half-life) may forget it, so the new one is soon normal."""

    @abc.abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this detector is now."""

    @abc.abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state produced by ``state_dict`` (see the class docstring)."""

    # -- river-style, one record at a time ---------------------------------------------

    @property
    def minibatch_size(self) -> int:
        """Records ``learn_one`` learns at once, once past its first batches."""
        return 256

    @property
    def _batches(self) -> MiniBatches:
        """What ``learn_one`` holds (made on first use: subclasses set their own state)."""
        mb = self.__dict__.get("_minibatches")
        if mb is None:
            mb = self.__dict__["_minibatches"] = MiniBatches(self.first_minibatch)
        return mb

    @property
    def buffered(self) -> np.ndarray:
        """The records ``learn_one`` holds for the next mini-batch (n × d)."""
        rows = self._batches.rows
        return np.stack(rows) if rows else np.empty((0, 0))

    @property
    def buffered_keys(self) -> list[str | None]:
        """The keys of the records ``learn_one`` holds (None for a record without one)."""
        return list(self._batches.keys)

    def score_one(self, x: Record, key: str | None = None) -> float:
        """The score of one record, by the model as of the last learned mini-batch."""
        return float(self._keyed(self.score, self._row(x), None if key is None else [key])[0])

    def learn_one(self, x: Record, key: str | None = None) -> None:
        """Buffer one record (and its key); learn the buffer when it holds a mini-batch."""
        batch = self._batches.add_keyed(x, self.minibatch_size, key)
        if batch is not None:
            self._keyed(self.learn, *batch)

    def flush(self) -> LearnReport | None:
        """Learn the buffered records now (None when there are none)."""
        batch = self._batches.take_keyed(self.minibatch_size)
        return None if batch is None else self._keyed(self.learn, *batch)

    def learn_many(self, X: np.ndarray | Sequence[Record], keys: Keys = None) -> LearnReport:
        """Learn the buffered records and the records of ``X`` as one batch."""
        return self._keyed(self.learn, *self._batches.before_keyed(self._many(X), keys))

    def score_many(self, X: np.ndarray | Sequence[Record], keys: Keys = None) -> np.ndarray:
        """Scores of a batch of records, by the model as of the last learned batch."""
        return np.asarray(self._keyed(self.score, self._many(X), keys), dtype=np.float64)

    @staticmethod
    def _keyed(method: Callable[..., Any], X: np.ndarray, keys: Keys) -> Any:
        # Keys go only where there are some: a detector written before the contract
        # carried keys (``score(self, X)``) keeps working on keyless records.
        return method(X) if keys is None else method(X, keys)

    def _row(self, x: Record) -> np.ndarray:
        return self._batches.row(x)

    def _many(self, X: np.ndarray | Sequence[Record]) -> np.ndarray:
        return self._batches.matrix(X)

    def _one_state(self) -> dict[str, Any]:
        """What ``learn_one`` holds, for ``state_dict``."""
        return self._batches.state_dict()

    def _load_one_state(self, state: Mapping[str, Any] | None) -> None:
        self._batches.load_state_dict(state)


def _plain(v: Any) -> Any:
    """Tuples and lists alike, as a checkpoint's JSON gives them back."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


# Signatures are read once per class: a lane of 1,024 devices builds and restores a
# detector per device, and inspect.signature took most of a restore's time.
@functools.cache
def _init_names(owner: type) -> tuple[str, ...]:
    return tuple(inspect.signature(owner).parameters)


@functools.cache
def _param_names(cls: type) -> tuple[str, ...]:
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is Detector:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name not in names:
                names.append(p.name)
    return tuple(names)
