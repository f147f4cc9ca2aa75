"""river's HalfSpaceTrees behind the Detector contract."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from streamad.detectors.base import Detector, LearnReport
from streamad.minibatch import Keys


class RiverHST(Detector):
    """``river.anomaly.HalfSpaceTrees``, fed one record at a time.

    HST expects features in [0, 1], so the pipeline puts a min-max scaler in front.
    Its state is saved node by node (not pickled), so a checkpoint reloads exactly.
    ``learn_one`` learns each record at once, as river does.

    Parameters
    ----------
    n_trees : int, default 10
        Trees in the ensemble.
    height : int, default 8
        Height of each tree.
    window_size : int, default 250
        Records per reference window (HST scores 0 until one has passed).
    seed : int, optional, default 0
        Seed of the random splits.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> det = RiverHST(n_trees=10, height=6, window_size=50, seed=1)
    >>> for _ in range(3):
    ...     _ = det.learn(rng.uniform(0.4, 0.6, size=(50, 2)))
    >>> normal, odd = det.score(np.array([[0.5, 0.5], [0.95, 0.02]]))
    >>> bool(odd > normal)
    True
    """

    name = "river-hst"
    preferred_scaler = "minmax"
    first_minibatch = 1

    n_trees: int
    height: int
    window_size: int
    seed: int | None

    def __init__(
        self,
        n_trees: Annotated[int, Field(ge=1)] = 10,
        height: Annotated[int, Field(ge=1)] = 8,
        window_size: Annotated[int, Field(ge=1)] = 250,
        seed: int | None = 0,
    ) -> None:
        self._set_params(RiverHST, locals())
        self.model = self._model()

    def _model(self) -> Any:
        from streamad.errors import require

        require("river", "river", "the river-hst detector")
        from river.anomaly import HalfSpaceTrees

        return HalfSpaceTrees(n_trees=self.n_trees, height=self.height, window_size=self.window_size, seed=self.seed)

    @property
    def minibatch_size(self) -> int:
        return 1

    def score(self, X: np.ndarray, keys: Keys = None) -> np.ndarray:
        score_one = self.model.score_one
        return np.fromiter((score_one(dict(enumerate(row))) for row in X.tolist()), dtype=np.float64, count=len(X))

    def learn(self, X: np.ndarray, keys: Keys = None) -> LearnReport:
        warmup = self.model._first_window  # its scores were all 0: HST had no reference mass yet
        learn_one = self.model.learn_one
        for row in X.tolist():
            learn_one(dict(enumerate(row)))
        return LearnReport(n_learned=len(X), warmup=warmup)

    def state_dict(self) -> dict[str, Any]:
        m = self.model
        trees = []
        for nodes in m._tree_nodes:
            trees.append(
                {
                    "feature": np.array([getattr(n, "feature", -1) for n in nodes], dtype=np.int64),
                    "threshold": np.array([getattr(n, "threshold", np.nan) for n in nodes], dtype=np.float64),
                    "l_mass": np.array([n.l_mass for n in nodes], dtype=np.int64),
                    "r_mass": np.array([n.r_mass for n in nodes], dtype=np.int64),
                }
            )
        version, internal, gauss = m.rng.getstate()
        return {
            "name": self.name,
            "params": self.get_params(),
            "trees": trees,
            "counter": m.counter,
            "first_window": m._first_window,
            "rng": {"version": version, "internal": np.array(internal, dtype=np.uint64), "gauss": gauss},
            "one": self._one_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        from river.tree.padded import PaddedBranch, PaddedLeaf

        self._check_params(state["params"])
        self.model = m = self._model()

        def build(t: Mapping[str, np.ndarray], pos: list[int]) -> Any:
            i = pos[0]
            pos[0] += 1
            if int(t["feature"][i]) < 0:
                return PaddedLeaf(l_mass=int(t["l_mass"][i]), r_mass=int(t["r_mass"][i]))
            left = build(t, pos)
            right = build(t, pos)
            return PaddedBranch(left, right, int(t["feature"][i]), float(t["threshold"][i]), int(t["l_mass"][i]), int(t["r_mass"][i]))

        m.trees = [build(t, [0]) for t in state["trees"]]
        m._tree_nodes = [list(t.iter_dfs()) for t in m.trees]
        m.counter = int(state["counter"])
        m._first_window = bool(state["first_window"])
        rng = state["rng"]
        m.rng.setstate((int(rng["version"]), tuple(int(v) for v in rng["internal"]), rng["gauss"]))
        self._load_one_state(state.get("one"))
