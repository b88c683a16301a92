"""Shapley estimators: a batched game and a budget in, attributions and standard errors out.

A game is any callable ``bool[m, n] -> float[m]``. Every estimator evaluates it through a
``CountingGame`` (cache per distinct coalition, exact call count, budget guard), always in batches.
Budgets (``resolve_budget``) count distinct coalitions, empty and full included; a budget covering
all 2**n coalitions means exact enumeration for every method (stderr then zeros, not None).
``exact`` and ``hierarchical`` (whose inner levels carry their own budgets) ignore budget arguments.
Every method targets the Shapley value; ``estimand="banzhaf"`` is offered by exact and the MC
methods only (``BANZHAF_METHODS``), the others refuse it.
"""

from __future__ import annotations

import numbers

import numpy as np

from .budget import minimal_budget, resolve_budget
from .cc import limited_cc, standard_cc
from .exact import MAX_EXACT_PLAYERS, check_exact_players, exact, exact_values
from .hierarchy import hierarchical
from .montecarlo import limited_mc, standard_mc
from .neyman import limited_neyman, standard_neyman
from .result import BANZHAF_METHODS, ESTIMANDS, CountingGame, Estimate, check_estimand

__all__ = [
    "estimate", "Estimate", "CountingGame", "resolve_budget", "minimal_budget", "ESTIMATORS",
    "BUDGET_FREE", "ESTIMANDS", "BANZHAF_METHODS", "MAX_EXACT_PLAYERS", "exact_values",
]

# name -> fn(counting_game, n, budget, rng, **options) -> Estimate; budget is None for BUDGET_FREE
# methods and always < 2**n for the others (estimate() enumerates exactly otherwise).
ESTIMATORS = {
    "exact": exact,
    "limited_mc": limited_mc,
    "standard_mc": standard_mc,
    "limited_cc": limited_cc,
    "standard_cc": standard_cc,
    "limited_neyman": limited_neyman,
    "standard_neyman": standard_neyman,
    "hierarchical": hierarchical,
}
BUDGET_FREE = frozenset({"exact", "hierarchical"})


def estimate(method: str, game, n_players: int, *, num_samples=None, fraction=None, linear=None,
             seed=0, progress=None, **options) -> Estimate:
    """Explain ``game`` over ``n_players`` with ``method``; see the module docstring.

    ``options``: ``estimand`` ("shapley" default, or "banzhaf" for ``BANZHAF_METHODS``) and the
    method's own keywords (hierarchical: ``k``, ``shap_type``, ...), passed on to the estimator.
    ``progress``: optional callable(int) told how many new coalitions each game call evaluated.
    """
    if method not in ESTIMATORS:
        raise ValueError(f"unknown estimator {method!r}; known: {', '.join(ESTIMATORS)}")
    if isinstance(n_players, bool) or not isinstance(n_players, numbers.Integral) or n_players < 1:
        raise ValueError(f"n_players must be an integer >= 1, got {n_players!r}")
    n = int(n_players)
    estimand = check_estimand(options.get("estimand", "shapley"))
    if estimand != "shapley" and method not in BANZHAF_METHODS:
        raise ValueError(f"estimand {estimand!r} is offered by {', '.join(BANZHAF_METHODS)} only, "
                         f"not by {method} (it estimates the Shapley value)")
    if method in BUDGET_FREE:
        budget = None
        if method == "exact":
            check_exact_players(n)
    else:
        budget = resolve_budget(n, num_samples=num_samples, fraction=fraction, linear=linear)
    counted = CountingGame(game, n, budget=2**n if budget is None else budget, progress=progress)
    if budget is not None and budget >= 2**n:
        values = exact_values(counted, n, estimand)
        return Estimate(values, np.zeros(n), counted.n_evaluations)
    rng = np.random.default_rng(seed)
    return ESTIMATORS[method](counted, n, budget, rng, **options)
