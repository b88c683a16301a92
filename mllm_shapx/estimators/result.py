"""The estimator result and the counting, caching wrapper every estimator evaluates through."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["Estimate", "CountingGame", "ESTIMANDS", "BANZHAF_METHODS", "check_estimand", "check_shapley_only",
           "check_sampled_budget"]

ESTIMANDS = ("shapley", "banzhaf")
BANZHAF_METHODS = ("exact", "limited_mc", "standard_mc")  # the others are built on Shapley's strata


def check_estimand(estimand: str) -> str:
    if estimand not in ESTIMANDS:
        raise ValueError(f"unknown estimand {estimand!r}; known: {', '.join(ESTIMANDS)}")
    return estimand


def check_shapley_only(estimand: str, method: str) -> str:
    """CC, Neyman and hierarchical target the Shapley value only: anything else is refused."""
    check_estimand(estimand)
    if estimand != "shapley":
        raise ValueError(f"estimand {estimand!r} is not offered by {method}, which estimates the Shapley "
                         f"value only ({estimand} is offered by {', '.join(BANZHAF_METHODS)})")
    return estimand


def check_sampled_budget(n: int, budget: int) -> None:
    """A budget covering all 2**n coalitions is exact enumeration, which ``estimate`` runs instead of
    a sampling estimator; a direct caller of one is refused rather than left to sample every row."""
    if budget >= 2**n:
        raise ValueError("a budget covering every coalition is exact enumeration")


@dataclass
class Estimate:
    """Raw (unnormalised) attributions of one explained row.

    ``stderr`` is None for ``exact``; a sampling estimator whose budget covered every coalition
    reports zeros. ``n_evaluations`` counts distinct coalitions evaluated, empty and full included.
    """

    values: np.ndarray
    stderr: np.ndarray | None
    n_evaluations: int
    extras: dict = field(default_factory=dict)


class CountingGame:
    """Wraps a batched game so each distinct coalition is evaluated once and counted.

    Rows are keyed by their packed bytes; a batch is deduplicated (against the cache and within
    itself) before the game sees it, so the game receives only new, distinct coalitions. The count of
    distinct evaluations is the number of model calls. Exceeding ``budget`` raises RuntimeError: that
    is an estimator bug, never a user error. ``progress`` (optional) is called with the number of new
    coalitions after each game call.
    """

    def __init__(self, game: Callable[[np.ndarray], np.ndarray], n_players: int,
                 budget: int | None = None, progress: Callable[[int], object] | None = None):
        self.game = game
        self.n_players = int(n_players)
        self.budget = budget
        self.progress = progress
        self._cache: dict[bytes, float] = {}

    @property
    def n_evaluations(self) -> int:
        return len(self._cache)

    def __call__(self, coalitions) -> np.ndarray:
        coalitions = np.asarray(coalitions, dtype=bool)
        if coalitions.ndim != 2 or coalitions.shape[1] != self.n_players:
            raise ValueError(
                f"coalitions must have shape [m, {self.n_players}], got {coalitions.shape}")
        keys = [row.tobytes() for row in np.packbits(coalitions, axis=1)]
        new: dict[bytes, int] = {}
        for row, key in enumerate(keys):
            if key not in self._cache and key not in new:
                new[key] = row
        if self.budget is not None and len(self._cache) + len(new) > self.budget:
            raise RuntimeError(
                f"estimator bug: {len(self._cache) + len(new)} distinct coalitions would exceed "
                f"the budget of {self.budget}")
        if new:
            batch = coalitions[list(new.values())]
            values = np.asarray(self.game(batch), dtype=np.float64).reshape(-1)
            if values.shape[0] != batch.shape[0]:
                raise ValueError(
                    f"the game returned {values.shape[0]} values for {batch.shape[0]} coalitions")
            self._cache.update(zip(new.keys(), values.tolist()))
            if self.progress is not None:
                self.progress(len(new))
        return np.fromiter((self._cache[key] for key in keys), dtype=np.float64, count=len(keys))
