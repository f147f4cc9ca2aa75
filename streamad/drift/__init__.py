"""Drift detection per lane: of each feature, and of the score stream.

- ``detectors``: the tests themselves (``FeatureDrift``, ``ScoreDrift``, ``PageHinkley``);
- ``monitor``: one lane's detectors and the events they raise (``DriftMonitor``, ``DriftEvent``);
- ``log``: what an operator reads of them (``DriftLog``); the files and topics events go
  to are connectors (``streamad.connectors.sinks.DriftEventsFile``, the Kafka drift sink).

Two questions, asked of every window after it has been scored and learned:

- **Has a feature's distribution moved?** Each feature is binned at the deciles (and
  the 1st, 5th, 95th and 99th percentiles) of a reference window (the first ``reference`` records, re-taken after an alarm) and the
  most recent ``recent`` records are compared with it by the population stability
  index (PSI) or a binned Kolmogorov-Smirnov statistic (the largest gap between the two
  CDFs at the bin edges). Counts are kept incrementally, so a window costs
  O(window × features), not O(recent × features).
- **Has the score stream moved up?** Each score becomes its rank among the reference
  scores (0..1, 0.5 on average while nothing changes), medians of ``chunk`` ranks are
  fed to a Page-Hinkley test, one-sided upwards: the model fitting the data
  worse is what matters; scores that fall as a model keeps learning are not drift.
  Medians of chunks make the test deaf to single spikes and short anomaly bursts.

Sensor streams are autocorrelated, so a window of a few thousand records holds far
fewer independent values than records, and the usual PSI rule of thumb (0.25) fires
on a stationary stream; the default alarm levels (PSI 1.0, KS 0.35) are set for that.
Everything is kept in numbers and arrays, so the state checkpoints without pickle.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> fd = FeatureDrift(2, reference=1000, recent=500)
>>> for i in range(10):
...     X = rng.normal(size=(250, 2))
...     if i >= 6:
...         X[:, 1] += 2.0  # the second feature shifts by two standard deviations
...     drifted = fd.update(X)
...     if len(drifted):
...         print(f"window {i}: features {drifted.tolist()} drifted, PSI {fd.fired[drifted[0]]:.1f}")
window 7: features [1] drifted, PSI 4.0
"""

from __future__ import annotations

from streamad.drift.detectors import FeatureDrift, PageHinkley, ScoreDrift
from streamad.drift.log import DriftLog, DriftSink
from streamad.drift.monitor import KINDS, DriftEvent, DriftMonitor, DriftStatus, exceeding

__all__ = ["KINDS", "DriftEvent", "DriftLog", "DriftMonitor", "DriftSink", "DriftStatus", "FeatureDrift", "PageHinkley", "ScoreDrift", "exceeding"]
