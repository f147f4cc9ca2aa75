"""Quality metrics, computed only at the end and only from labels the model never saw.

>>> import numpy as np
>>> y = np.array([0, 0, 1, 1]); s = np.array([0.1, 0.4, 0.35, 0.8])
>>> roc_auc(y, s), round(average_precision(y, s), 4)
(0.75, 0.8333)
"""

from __future__ import annotations

import numpy as np


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half), as scikit-learn computes it."""
    y = np.asarray(y).astype(bool)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    import pandas as pd

    r = pd.Series(np.asarray(s, dtype=np.float64)).rank(method="average").to_numpy()  # ties share their mean rank
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision, the step-wise area under the precision-recall curve
    (scikit-learn's ``average_precision_score``, ties handled as one threshold)."""
    y = np.asarray(y).astype(bool)
    n1 = int(y.sum())
    if n1 == 0:
        return float("nan")
    order = np.argsort(-np.asarray(s, dtype=np.float64), kind="mergesort")
    s_sorted = np.asarray(s, dtype=np.float64)[order]
    tp = np.cumsum(y[order])
    # Keep the last index of every run of equal scores: one threshold per distinct score.
    last = np.r_[np.flatnonzero(np.diff(s_sorted) != 0), len(s_sorted) - 1]
    tp = tp[last].astype(np.float64)
    precision = tp / (last + 1)
    recall = tp / n1
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def precision_recall_f1(y: np.ndarray, alarms: np.ndarray) -> tuple[float, float, float]:
    y = np.asarray(y).astype(bool)
    a = np.asarray(alarms).astype(bool)
    tp = float(np.sum(y & a))
    p = tp / a.sum() if a.sum() else 0.0
    r = tp / y.sum() if y.sum() else float("nan")
    f1 = 2 * p * r / (p + r) if (p + r) > 0 else 0.0
    return p, r, f1


def quality(labels: np.ndarray, scores: np.ndarray, alarms: np.ndarray) -> dict[str, float] | None:
    """ROC-AUC, AP and the alarms' precision/recall/F1 over the records with a known
    label (-1 is unknown); ``None`` when there is nothing to rank."""
    known = np.asarray(labels) >= 0
    y = np.asarray(labels)[known] == 1
    s, a = np.asarray(scores)[known], np.asarray(alarms)[known].astype(bool)
    if len(y) == 0 or y.all() or not y.any():
        return None
    p, r, f1 = precision_recall_f1(y, a)
    return {
        "labelled": int(len(y)),
        "anomalies": int(y.sum()),
        "roc_auc": roc_auc(y, s),
        "average_precision": average_precision(y, s),
        "precision": p,
        "recall": r,
        "f1": f1,
    }
