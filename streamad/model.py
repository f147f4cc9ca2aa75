"""The model of one stream: an online scaler, a detector and a threshold, learned together.

Every record is judged by the state from before it, then learned from: the scaler
learns it, the detector learns it scaled as the next records will be, and the threshold
learns the score it got (once the detector's own warm-up is over: the scores of a model
still warming up say nothing about the normal tail). The pipeline keeps one ``Model``
per lane and feeds it windows; you can hold one yourself and feed it records, batches
or a whole DataFrame (``streamad.detect`` runs one through the pipeline's windows).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> model = Model("gaussian")
>>> for x in rng.normal(size=(3000, 3)):
...     model.learn_one({"flow": x[0], "pressure": x[1], "temperature": x[2]})
>>> model.predict_one({"flow": 0.1, "pressure": -0.3, "temperature": 0.2})
False
>>> model.predict_one({"flow": 0.1, "pressure": 9.0, "temperature": 0.2})
True
>>> model.explain_one({"flow": 0.1, "pressure": 9.0, "temperature": 0.2})[0][0]
'pressure'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from streamad.detectors import Detector, LearnReport, make_detector
from streamad.judging import ADOPT_AFTER, Judging, PerKeyJudging
from streamad.minibatch import MiniBatches, Record
from streamad.scaling import Scaler, StandardScaler, make_scaler, moments
from streamad.temporal import Context, TemporalFeatures
from streamad.threshold import Threshold

if TYPE_CHECKING:
    from streamad.config import Settings

#: of the records the model flagged (alarmed on, or suspects), it learns one in this
#: many (``Model.learn``)
FLAGGED_EVERY = 10


#: what ``explain`` lists per record: (feature, share) or, with temporal context,
#: (feature, share, behaviour, description)
Explanation = tuple[str, float] | tuple[str, float, str, str]


@dataclass
class Verdict:
    """How a batch of records was judged, by the state from before it."""

    scaled: np.ndarray  # the records as the detector saw them
    scores: np.ndarray
    threshold: float | np.ndarray  # inf while the threshold warms up; per record with a threshold per key
    alarms: np.ndarray  # bool: score above the threshold
    features: np.ndarray | None = None  # the model's columns before scaling (with temporal context: values + derived)
    context: Context | None = None  # the temporal context (None without the temporal stage)
    keys: np.ndarray | None = None  # the records' keys, as the detector saw them


class Model:
    """Scaler → detector → threshold, river-style one record at a time or a batch at a time.

    Parameters
    ----------
    detector : Detector or str, default "default"
        A detector, or the name of a registered one (``streamad detectors`` lists them).
        ``"default"`` is what a replay runs: with ``temporal``, the sensor default (a
        trimmed online Gaussian per key, ``factory.SENSOR_DEFAULT``), else ``loe-ae``.
    scaler : Scaler or str, default "auto"
        ``"standard"``, ``"minmax"``, ``"none"``, a ``Scaler``, or ``"auto"``: the
        detector's preferred scaler.
    threshold : Threshold, optional
        What turns scores into alarms; by default the extreme-value threshold with the
        settings' defaults (``SpotThreshold``: a target false-alarm rate of 0.001, alarms
        once it has learned 100 scores, a small-sample estimate before; provisional
        while the detector warms up).
    temporal : TemporalFeatures or bool, optional
        Per-key temporal context before the scaler (``streamad.temporal``): each record
        is scored with its values and what its key's history says about them (jumps,
        drift, a flat or stuck sensor, gaps); ``True`` for the default stage. Keys and
        event times come with ``judge`` / ``learn`` (the pipeline passes the window's);
        records learned one at a time are one key. Off by default.
    adopt_after : int or None, default 1024
        Records of one key (of the stream, without keys) flagged in a row, more than
        half of each batch, after which their state is taken as the key's new normal:
        the detector forgets the old one (``Detector.on_lasting_state``) and the model
        learns every record of the key until its records are mostly unflagged again
        (``Judging.adopting``); not a key with a stuck sensor (``TemporalFeatures.stuck``).
        None: a lasting state is learned one flagged record in ``FLAGGED_EVERY``, as slowly
        as the estimate's memory is long.

    Notes
    -----
    ``learn_one`` buffers records and learns them as one batch (8 records first, then
    twice as many each time up to the detector's batch size); ``score_one`` and
    ``predict_one`` use the model as of the last learned batch. ``learn_many`` scores a
    batch before learning it, because the threshold learns those scores.
    """

    def __init__(
        self,
        detector: Detector | str = "default",
        scaler: Scaler | str = "auto",
        threshold: Threshold | None = None,
        temporal: TemporalFeatures | bool | None = None,
        adopt_after: int | None = ADOPT_AFTER,
    ) -> None:
        #: the window ``streamad.detect`` runs this model in unless told: the sensor
        #: default's 32 records of a key, else the pipeline's 256
        self.window_size = 256
        if detector == "default" and temporal:
            # What ``for_stream`` makes of the default on a stream with the temporal stage.
            from streamad.config import Settings
            from streamad.factory import build_detector, for_stream

            sensor = for_stream(Settings(), timed=True)
            detector, self.window_size = build_detector(sensor), sensor.window.size
        self.detector: Detector = make_detector(detector) if isinstance(detector, str) else detector
        if isinstance(scaler, str):
            scaler = make_scaler(self.detector.preferred_scaler if scaler == "auto" else scaler)
        self.scaler: Scaler = scaler
        if threshold is None:
            from streamad.config import ThresholdSettings
            from streamad.factory import build_threshold

            threshold = build_threshold(ThresholdSettings())
        # A detector with a model per key gets a threshold per key (streamad/judging.py).
        self.judging: Judging | PerKeyJudging = (
            PerKeyJudging(threshold, getattr(self.detector, "max_keys", 1024), adopt_after) if self.detector.scores_per_key else Judging(threshold, adopt_after)
        )
        # Independent of the detector's scaler: z-scores for the attribution of detectors
        # that cannot say which features made a score.
        self.stats = StandardScaler(half_life=10_000, constant_share=None)
        self.temporal: TemporalFeatures | None = TemporalFeatures() if temporal is True else (temporal or None)
        self._batches = MiniBatches()  # what learn_one holds, and the feature names
        # (the buffer, how many of its records, their context: its revision is the
        # temporal state's it was computed from)
        self._held_ctx: tuple[list[np.ndarray], int, Context] | None = None
        # score_one's last: (the held records' context it continued, the record, its context)
        self._next_ctx: tuple[Context | None, np.ndarray, Context] | None = None

    @property
    def threshold(self) -> Threshold:
        """The lane's threshold (with a threshold per key: the one of the key that has
        learned the most scores)."""
        return self.judging.threshold

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """The names records are read by: set by the first dict or DataFrame, or a lane's source."""
        return self._batches.names

    @feature_names.setter
    def feature_names(self, names: tuple[str, ...] | None) -> None:
        self._batches.names = names

    @classmethod
    def from_settings(cls, settings: Settings, temporal: bool | None = None) -> Model:
        """The model a pipeline lane runs for these settings; ``temporal`` decides the
        temporal stage when ``features.temporal`` is ``auto`` (default: off), and with it
        what ``detector.name: default`` is (``factory.for_stream``: the sensor default
        with the stage, ``loe-ae`` without)."""
        from streamad.factory import build_detector, build_scaler, build_threshold, for_stream, temporal_on

        f = settings.features
        on = temporal_on(settings, temporal)
        settings = for_stream(settings, on)
        detector = build_detector(settings)
        stage = TemporalFeatures(f.groups, f.max_keys, f.short_span, f.long_span, f.history) if on else None
        return cls(detector, build_scaler(settings, detector), build_threshold(settings.threshold), stage, settings.threshold.adopt_after)

    @property
    def columns(self) -> tuple[str, ...] | None:
        """The columns the detector sees: the features, then (with the temporal stage,
        once it has seen records) the derived ones such as ``pressure.jump``."""
        if self.temporal is not None and self.temporal.columns is not None:
            return self.temporal.names
        return self.feature_names

    # -- batches: what the pipeline calls ------------------------------------------------------

    def judge(self, X: np.ndarray, keys: np.ndarray | None = None, timestamps: np.ndarray | None = None) -> Verdict:
        """Score ``X`` (raw records, n × d, in order) by the state from before it;
        changes nothing. ``keys`` and ``timestamps`` (event times, seconds) feed the
        temporal stage: a record's context comes from its key's records before it."""
        X = _finite(np.asarray(X, dtype=np.float64))
        ctx = self._context(X, keys, timestamps)
        return self._verdict(X if ctx is None else ctx.features, X.shape[1], ctx, keys)

    def _verdict(self, F: np.ndarray, d: int, ctx: Context | None, keys: np.ndarray | None = None) -> Verdict:
        """The model's columns ``F`` (the ``d`` features, then any derived ones) scaled,
        scored and held against the threshold."""
        scaled = self._scale(F, d)
        k = self._keys(keys)
        scores = np.asarray(self.detector.score(scaled, k), dtype=np.float64)
        thr, alarms = self.judging.verdict(scores, k)
        return Verdict(scaled, scores, thr, alarms, F, ctx, keys)

    def learn(self, X: np.ndarray, scores: np.ndarray, keys: np.ndarray | None = None, timestamps: np.ndarray | None = None, *, verdict: Verdict | None = None) -> LearnReport:
        """Learn ``X`` after it was judged; ``scores`` are what ``judge`` gave it (and
        ``verdict``, when given, what it made of the records: not computed again)."""
        X = _finite(np.asarray(X, dtype=np.float64))
        d = X.shape[1]
        ctx: Context | None = None
        if self.temporal is not None:
            ctx = verdict.context if verdict is not None else None
            if ctx is None or ctx.revision != self.temporal.revision or len(ctx.features) != len(X):
                ctx = self._context(X, keys, timestamps)
        F = X if ctx is None else ctx.features
        # The scaler learns first, and the detector learns the records as the next ones
        # will be scaled: on the same statistics (the very first window would otherwise
        # be learned as all zeros, scaled by a scaler that had seen nothing).
        # LOE's lesson, applied to everything the model learns: of the records it
        # flagged it learns one in ``FLAGGED_EVERY``, so that a long anomaly does not
        # become normal (to the scaler, the detector, the temporal means) before it
        # ends, while a lasting change is still learned, slower.
        flagged = self.flagged(np.asarray(scores, dtype=np.float64), keys)
        keep = ~flagged | (np.arange(len(X)) % FLAGGED_EVERY == 0) if flagged.any() else None
        Xk, Fk = (X, F) if keep is None else (X[keep], F[keep])
        if len(Fk):
            # The scalers learn overlapping columns of the same records: their moments
            # are computed once.
            nb, mb, m2b = moments(Fk)
            if isinstance(self.scaler, StandardScaler):
                self.scaler.learn_moments(nb, mb[:d], m2b[:d], Xk)
            else:
                self.scaler.learn(Xk)
            if ctx is not None and self.temporal is not None and self.temporal.scaler is not None:
                self.temporal.scaler.learn_moments(nb, mb[d:], m2b[d:])
            self.stats.learn_moments(nb, mb, m2b)
        # The detector takes the records the model keeps, and those it asks for (a key's
        # detector in its warm-up learns its key's records, alarmed or not).
        rows, Fd = keep, Fk
        if keep is not None:
            wants = self.detector.learns_alarmed_rows(self._keys(keys), len(X))
            if wants is not False:
                rows = None if wants is True else keep | np.asarray(wants, dtype=bool)
                Fd = F if rows is None else F[rows]
        report = self.detector.learn(self._scale(Fd, d), self._keys(keys if rows is None or keys is None else keys[rows]))
        if ctx is not None and self.temporal is not None:
            if flagged.any():
                # Flagged records count little in their keys' long means.
                ctx = self.temporal.reweigh(ctx, X, flagged)
            self.temporal.commit(ctx)
        # Scores of a detector in its warm-up give a provisional threshold, which the
        # grown-up scores replace (streamad/threshold.py); a key's, while its own
        # detector warms up.
        lasting = self.judging.update(scores, self._keys(keys), self.detector.key_young if self.detector.scores_per_key else report.warmup)
        if lasting and ctx is not None and self.temporal is not None:
            # A frozen sensor is a fault that lasts, not a new operating point: its key's
            # run starts again, and it alarms until the sensor moves (on the demo scaled to
            # a million records, a flow sensor stuck for 5,000 was otherwise adopted after
            # 1,051 of them, and its repair alarmed on 1,076 records).
            frozen = self.temporal.stuck(ctx, self._scale(F, d), lasting)
            for k in frozen:
                self.judging.restart(k)
            lasting = [k for k in lasting if k not in frozen]
        if lasting:
            self.detector.on_lasting_state(lasting)
            report.lasting = [(k, self.judging.flagged_run(k)) for k in lasting]
        return report

    def flagged(self, scores: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
        """Records that ``learn`` learns only one in ``FLAGGED_EVERY`` of: alarms and
        suspects (``Judging.flagged``)."""
        return self.judging.flagged(np.asarray(scores, dtype=np.float64), self._keys(keys))

    def process(self, X: np.ndarray, keys: np.ndarray | None = None, timestamps: np.ndarray | None = None) -> tuple[Verdict, LearnReport]:
        """Judge ``X``, then learn it: one prequential step."""
        verdict = self.judge(X, keys, timestamps)
        return verdict, self.learn(X, verdict.scores, keys, timestamps, verdict=verdict)

    def _keys(self, keys: np.ndarray | None) -> np.ndarray | None:
        # Only a detector that uses keys gets them: the others compute the same without.
        return keys if self.detector.uses_keys else None

    def _context(self, X: np.ndarray, keys: np.ndarray | None, timestamps: np.ndarray | None) -> Context | None:
        if self.temporal is None:
            return None
        return self.temporal.transform(X, keys, timestamps, self.feature_names)

    def _scale(self, F: np.ndarray, d: int) -> np.ndarray:
        """The model's columns as the detector sees them: the features through the
        scaler, the derived columns through the temporal stage's own."""
        if self.temporal is None or F.shape[1] == d:
            return self.scaler.transform(F)
        sc, tsc = self.scaler, self.temporal.scaler
        if len(F) == 1 and tsc is not None and sc.name != "minmax":
            # One row (``score_one``): the two scalers' compiled one-record transforms, the
            # same values as the window's paths below, without their per-call cost.
            return np.concatenate((sc.transform_one(F[0, :d]), tsc.transform_one(F[0, d:])))[None]
        if isinstance(sc, StandardScaler) and tsc is not None and sc.clip == tsc.clip:
            # One affine map of all the columns, clipped alike, in one compiled pass.
            a, b = sc.affine(), tsc.affine()
            if a is not None and b is not None:
                from streamad.temporal_kernel import scale_columns

                return scale_columns(np.ascontiguousarray(F, dtype=np.float64), a[0], a[1], b[0], b[1], float(sc.clip))
        out = np.empty_like(F)
        out[:, :d] = self.scaler.transform(F[:, :d])
        out[:, d:] = self.temporal.scale(F[:, d:], unit=self.scaler.name == "minmax")
        return out

    def contributions(self, X: np.ndarray, scaled: np.ndarray | None = None, keys: np.ndarray | None = None) -> np.ndarray:
        """Non-negative per-column contributions to each record's score (n × columns):
        the detector's own when it can tell, else squared z-scores. ``X`` holds the
        model's columns (``Verdict.features``: with the temporal stage, the values and
        the derived columns)."""
        X = np.asarray(X, dtype=np.float64)
        if scaled is None:
            d = len(self.feature_names) if self.feature_names is not None else X.shape[1]
            scaled = self._scale(X, d)
        contrib = self.detector.contributions(scaled, self._keys(keys))
        if contrib is None:
            contrib = self.stats.transform(X) ** 2
        return np.asarray(contrib, dtype=np.float64)

    def explain(self, verdict: Verdict, rows: np.ndarray, k: int = 3) -> list[list[Explanation]]:
        """The ``k`` features contributing most to the score of each of ``rows`` (indices
        into the judged batch), with their share; with the temporal stage, contributions
        of derived columns count for their source feature, and each entry also says how
        the feature behaved (``level``, ``jump``, ``drift``, ``stuck``, ``flat``,
        ``noisy``, ``gap``) in a sentence with the record's numbers."""
        rows = np.asarray(rows, dtype=np.int64)
        F = verdict.scaled if verdict.features is None else verdict.features
        contrib = self.contributions(F[rows], verdict.scaled[rows], None if verdict.keys is None else verdict.keys[rows])
        ctx = verdict.context
        if ctx is None or self.temporal is None:
            names = self.columns or tuple(f"x{i}" for i in range(F.shape[1]))
            return [[(names[j], share) for j, share in top] for top in attribute(contrib, k)]
        d = len(self.temporal.sources)
        spread = self.stats.std
        center = None if self.stats.mean is None else self.stats.mean[:d]
        return self.temporal.explain(contrib, ctx, rows, k, center, None if spread is None else spread[:d], verdict.scaled[rows])  # type: ignore[return-value]

    def tail_probability(self, scores: np.ndarray, keys: np.ndarray | None = None) -> np.ndarray:
        """Estimated share of normal records (of each record's key, with a threshold per
        key) scoring at least this high."""
        return self.judging.tail_probability(np.asarray(scores, dtype=np.float64), self._keys(keys))

    @property
    def warming_up(self) -> bool:
        """True until the threshold has learned enough scores to raise alarms."""
        return self.threshold.warming_up

    # -- many records ---------------------------------------------------------------------------

    def score_many(self, X: Any) -> np.ndarray:
        """Scores of a batch (array, DataFrame or sequence of records), learning nothing."""
        return self.judge(self._matrix(X)).scores

    def predict_many(self, X: Any) -> np.ndarray:
        """Alarms (bool) for a batch, learning nothing."""
        return self.judge(self._matrix(X)).alarms

    def learn_many(self, X: Any) -> LearnReport:
        """Learn a batch (with any records ``learn_one`` holds before it)."""
        return self.process(self._batches.before(self._matrix(X)))[1]

    # -- one record at a time ---------------------------------------------------------------

    def score_one(self, x: Record) -> float:
        """The score of one record, by the model as of the last learned batch (through
        the detector's one-record path, which may round differently from a batch's);
        its temporal context also counts the records ``learn_one`` holds."""
        return self.detector.score_one(self._scaled_one(x))

    def predict_one(self, x: Record) -> bool:
        """Whether one record is an alarm, by the model as of the last learned batch."""
        return bool(self.judging.alarms(np.array([self.score_one(x)]))[0])

    def explain_one(self, x: Record, k: int = 3) -> list[Explanation]:
        """The ``k`` features contributing most to the record's score, with their share
        (and with the temporal stage, how each behaved: see ``explain``)."""
        row = self._row(x)
        if self.temporal is None:
            names = self.feature_names or tuple(f"x{i}" for i in range(row.shape[1]))
            return [(names[j], share) for j, share in attribute(self.contributions(row), k)[0]]
        ctx = self._context_one(row)
        return self.explain(self._verdict(ctx.features, row.shape[1], ctx), np.zeros(1, dtype=np.int64), k)[0]

    def _held_context(self) -> Context | None:
        """The temporal context of the records ``learn_one`` holds (None: none), as one
        window would give it. Kept between calls and extended by the records added since,
        so that ``score_one`` costs one record's context, not the buffer's again (up to
        a batch of 256 records: 112 µs a score on the demo)."""
        assert self.temporal is not None
        rows = self._batches.rows
        if not rows:
            return None
        revision = self.temporal.revision
        # The buffer is appended to until it is learned (a new list, a new revision of
        # the temporal state); a load replaces the list as well.
        kept = self._held_ctx
        covered, ctx = (kept[1], kept[2]) if kept is not None and kept[0] is rows and kept[2].revision == revision else (0, None)
        nxt, self._next_ctx = self._next_ctx, None
        if covered + 1 == len(rows) and nxt is not None and nxt[2].revision == revision and nxt[0] is ctx and nxt[1].tobytes() == rows[-1].tobytes():
            # The record score_one saw last was learned next: its context is known (compared
            # as bytes: np.array_equal's checks cost a tenth of a record).
            ctx = nxt[2]
        elif covered < len(rows):
            ctx = self.temporal.transform(np.stack(rows[covered:]), names=self.feature_names, after=ctx)
        assert ctx is not None
        self._held_ctx = (rows, len(rows), ctx)
        return ctx

    def _scaled_one(self, x: Record) -> np.ndarray:
        """One record as the detector sees it (d,)."""
        row = self._row(x)
        if self.temporal is None:
            return self.scaler.transform_one(row[0])
        return self._scale(self._context_one(row).features, row.shape[1])[0]

    def _context_one(self, row: np.ndarray) -> Context:
        """The temporal context of one record (1 × d) after the records ``learn_one`` holds."""
        assert self.temporal is not None
        held = self._held_context()
        ctx = self.temporal.transform(row, names=self.feature_names, after=held)
        # river's loop learns the record it scored next: then this is the held records' context
        self._next_ctx = (held, row[0].copy(), ctx)  # the caller may reuse its array
        return ctx

    def learn_one(self, x: Record) -> None:
        """Buffer one record; learn the buffer as one batch when it is full."""
        row = self._row(x)[0]  # refused now, not when its batch is learned
        X = self._batches.add(row, self.detector.minibatch_size)
        if X is not None:
            self.process(X)

    def flush(self) -> LearnReport | None:
        """Learn the records ``learn_one`` holds now (None when it holds none)."""
        X = self._batches.take(self.detector.minibatch_size)
        return None if X is None else self.process(X)[1]

    def _row(self, x: Record) -> np.ndarray:
        return _finite(self._batches.row(x))

    def _matrix(self, X: Any) -> np.ndarray:
        return self._batches.matrix(X)

    # -- checkpoints ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector.state_dict(),
            "scaler": self.scaler.state_dict(),
            "stats": self.stats.state_dict(),
            **self.judging.state_dict(),  # threshold, warmup_twin
            "one": self._batches.state_dict(),
            "temporal": None if self.temporal is None else self.temporal.state_dict(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_temporal(self.temporal, state.get("temporal"))
        self.detector.load_state_dict(state["detector"])
        self.scaler.load_state_dict(state["scaler"])
        self.stats.load_state_dict(state["stats"])
        self.judging.load_state_dict(state)
        self._batches.load_state_dict(state.get("one"))
        if self.temporal is not None and state.get("temporal") is not None:
            self.temporal.load_state_dict(state["temporal"])


def _finite(X: np.ndarray) -> np.ndarray:
    """``X``, if every value is a finite number: a NaN or an infinity would be learned as
    a value by one detector and break another's linear algebra. The pipeline's sources
    reject such records with a reason before they get here; a Model used directly says
    which record."""
    # A sum is finite when every value is (cheaper than a mask: a record at a time, this
    # was a tenth of a score); only a sum that overflowed needs the values looked at.
    if X.size and not math.isfinite(np.add.reduce(X, axis=None)) and not np.isfinite(X).all():
        row, col = np.argwhere(~np.isfinite(X))[0]
        raise ValueError(f"record {int(row)} has a non-finite value ({X[row, col]}) in column {int(col)}: drop or impute such records first")
    return X


def check_temporal(temporal: TemporalFeatures | None, state: Mapping[str, Any] | None) -> None:
    """Refuse a checkpoint made with the temporal stage on for a model without it, and
    the other way round: the detector learned other columns."""
    if (temporal is None) != (state is None):
        made, now = ("on", "off") if state is not None else ("off", "on")
        raise ValueError(f"checkpoint was made with temporal features {made}, they are {now} now (features.temporal)")


def attribute(contrib: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """Top ``k`` features of each row by share of its total contribution.

    >>> attribute(np.array([[1.0, 3.0, 0.0]]), 2)
    [[(1, 0.75), (0, 0.25)]]
    """
    contrib = np.nan_to_num(np.maximum(contrib, 0.0), nan=0.0, posinf=1e300)
    total = contrib.sum(axis=1, keepdims=True)
    share = np.divide(contrib, total, out=np.zeros_like(contrib), where=total > 0)
    k = min(k, contrib.shape[1])
    order = np.argsort(-share, axis=1, kind="stable")[:, :k]
    out = []
    for row, cols in zip(share, order):
        out.append([(int(c), float(row[c])) for c in cols if row[c] > 0])
    return out
