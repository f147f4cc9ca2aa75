"""The real ``streamad`` command line plus one test-only detector that reports a
learning state, so that a replay exports the learning metrics the dashboard plots
(loss, LOE flag rate, importance-weight ESS) before the LOE detectors exist on this
branch. Run as ``python tests/observability/stub_cli.py replay ...``.

``gaussian-reporting`` scores exactly like ``gaussian``; its figures are computed from
each window it learns, LOE-style, without labels: records scoring above the running
(1 − alpha) quantile of earlier unflagged scores are flagged, the rest weigh 1
(flagged ones 0), the loss is the mean log score of the unflagged records.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from streamad.detectors import available, register  # noqa: E402
from streamad.detectors.base import LearnReport  # noqa: E402
from streamad.detectors.gaussian import Gaussian  # noqa: E402
from streamad.histogram import DecayedHistogram  # noqa: E402


class ReportingGaussian(Gaussian):
    name = "gaussian-reporting"

    def __init__(self, alpha: float = 0.05, **params: Any) -> None:
        super().__init__(**params)
        self.alpha = alpha
        self.normal_scores = DecayedHistogram(bins=64, decay=0.98)

    def learn(self, X: np.ndarray) -> LearnReport:
        scores = self.score(X)  # the model this window trains, before it does
        report = super().learn(X)
        if report.warmup or len(X) == 0:
            return report
        cut = self.normal_scores.quantile(1.0 - self.alpha) if self.normal_scores.ready else np.inf
        flagged = scores > cut
        w = (~flagged).astype(np.float64)
        ess = float(w.sum() ** 2 / max(float((w**2).sum()), 1e-12)) / len(w)
        self.normal_scores.update(scores[~flagged])
        loss = float(np.mean(np.log1p(np.maximum(scores[~flagged], 0.0)))) if (~flagged).any() else None
        return LearnReport(report.n_learned, loss=loss, loe_flag_rate=float(flagged.mean()), ess=ess)


if __name__ == "__main__":
    available()  # load the built-in detectors first: registering before that would hide them
    register(ReportingGaussian.name, ReportingGaussian)
    from streamad.cli import main

    main()
