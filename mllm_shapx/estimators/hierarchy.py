"""Hierarchical (recursive group) attribution, ``hierarchical``.

Level 1 splits the players into at most ``k`` contiguous groups of balanced sizes that never straddle
a change of ``segments`` (turn or modality boundary): each segment gets at least one group, the
remaining groups go to the segments whose groups are largest. (A node holding more than ``k``
segments gets one group per segment: the boundary rule wins over ``k``.) The group-level game (a
group kept or removed as a whole) is explained with ``first_layer_type`` (or ``shap_type``) through
``estimate`` itself. Every group of two or more players with a non-zero attribution is then split
the same way and its subgroups explained in the group's conditional game (every player outside the
group kept) with ``shap_type``, recursively, until groups are single players; the subgroup
attributions are rescaled to sum to their group's (efficiency kept level by level; an inner sum of
0 splits the group's attribution equally). A group attributed 0 (up to rounding: 1e-12 of its
level's total absolute attribution) gives 0 to all its players and costs nothing. So every
explanation has at most ``k`` players (or segments), and exact inner explainers stay cheap;
single-player groups and two-player levels need no special case. Caveat (benchmarks/estimators.py
measures it): the rescaling factor phi_G / sum(psi) is unbounded when the inner attributions
nearly cancel, so games with strong interactions across a group can get large errors.

Budgets. The top level uses ``first_layer_num_samples`` / ``first_layer_fraction`` (default: the
inner spec), inner levels ``shap_num_samples`` / ``shap_fraction`` (none for ``exact``; none given for a sampling
explainer = the minimal budget, ``num_samples=-1``), each resolved on the explained game's own player
count. Importance sampling: a refined group's budget is that base
x max(``importance_min_fraction``, |phi_group| / max |phi_sibling|), never below the minimal budget of
its game. Every inner coalition is mapped to a coalition of the original game and evaluated through
the one counting game of the call, so coalitions shared by levels (v(N) in every conditional game,
N - G in both the group game and G's game) are evaluated once, and ``n_evaluations`` is the number of
distinct original-game coalitions. ``extras["num_levels"]`` is the depth reached (1 = only the top).

Standard error (approximate, first order): a player's value is phi_G * psi_i / sum(psi); its
variance is taken as (phi_G / sum psi)**2 Var(psi_i) + (psi_i / sum psi)**2 Var(phi_G), level by
level, with each level's variances those its explainer reports (none for exact); the sampling error
of sum(psi) and correlations are neglected. None when every level was explained exactly. The method
is not an unbiased Shapley estimator (the rescaled group split is an approximation); the error bar
covers sampling noise only.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .budget import minimal_budget, resolve_budget
from .result import Estimate, check_shapley_only

__all__ = ["hierarchical", "split_groups"]


def split_groups(players: np.ndarray, segments: np.ndarray, k: int) -> list[np.ndarray]:
    """At most k (or one per segment) contiguous, balanced groups of ``players`` (ascending ids)."""
    seg = segments[players]
    cuts = np.flatnonzero(seg[1:] != seg[:-1]) + 1
    runs = np.split(players, cuts)
    counts = [1] * len(runs)
    while sum(counts) < k:
        open_runs = [r for r in range(len(runs)) if counts[r] < len(runs[r])]
        if not open_runs:
            break
        widest = max(open_runs, key=lambda r: (len(runs[r]) / counts[r], -r))
        counts[widest] += 1
    return [chunk for run, c in zip(runs, counts) for chunk in np.array_split(run, c)]


def _budget_spec(prefix, num_samples, fraction):
    if num_samples is not None and fraction is not None:
        raise ValueError(f"hierarchical: set {prefix}_num_samples or {prefix}_fraction, not both")
    if num_samples is not None:
        return {"num_samples": num_samples}
    if fraction is not None:
        return {"fraction": fraction}
    return {}


class _Tree:
    def __init__(self, game, n, rng, segments, k, types, specs, min_fraction):
        self.game, self.n, self.rng = game, n, rng
        self.segments, self.k = segments, k
        self.types, self.specs, self.min_fraction = types, specs, min_fraction
        self.values = np.zeros(n)
        self.var = np.zeros(n)
        self.levels = 0
        self.sampled = False

    def _explain(self, groups, level, factor):
        from . import estimate  # the package entry point (recursion through estimate)

        method, spec = self.types[level == 1], self.specs[level == 1]
        g = len(groups)
        budget = {}
        if spec:
            base = resolve_budget(g, **spec)
            budget = {"num_samples": min(base, max(math.ceil(base * factor), minimal_budget(g)))}
        full = self.game

        def group_game(masks):
            masks = np.asarray(masks, dtype=bool)
            coalitions = np.ones((masks.shape[0], self.n), dtype=bool)
            for t, grp in enumerate(groups):
                coalitions[:, grp] = masks[:, [t]]
            return full(coalitions)

        seed = int(self.rng.integers(2**63))
        est = estimate(method, group_game, g, seed=seed, estimand="shapley", **budget)
        self.levels = max(self.levels, level)
        self.sampled |= est.stderr is not None
        se = np.zeros(g) if est.stderr is None else np.asarray(est.stderr, dtype=np.float64)
        return np.asarray(est.values, dtype=np.float64), se**2

    def refine(self, players, total, total_var, level, factor):
        """Attribute ``total`` (None at the top: whatever the game gives) to ``players``."""
        groups = split_groups(players, self.segments, self.k) if len(players) > 1 else [players]
        psi, psi_var = self._explain(groups, level, factor)
        if total is None:
            vals, vars_ = psi, psi_var
        else:
            inner = psi.sum()
            if abs(inner) <= 1e-12 * max(np.abs(psi).sum(), abs(total)):
                vals = np.full(len(groups), total / len(groups))
                vars_ = np.full(len(groups), total_var / len(groups) ** 2)
            else:
                vals = psi * (total / inner)
                vars_ = (total / inner) ** 2 * psi_var + (psi / inner) ** 2 * total_var
        strongest = np.abs(vals).max()
        vals = np.where(np.abs(vals) <= 1e-12 * np.abs(vals).sum(), 0.0, vals)  # rounding: 0
        for grp, val, var in zip(groups, vals, vars_):
            child_factor = max(self.min_fraction, abs(val) / strongest) if strongest > 0 else 1.0
            if len(grp) == 1 or val == 0:
                self.values[grp] = val / len(grp)
                self.var[grp] = var / len(grp) ** 2
            else:
                self.refine(grp, float(val), float(var), level + 1, child_factor)


def hierarchical(game, n: int, budget, rng: np.random.Generator, *, k=None, shap_type=None,
                 shap_num_samples=None, shap_fraction=None, first_layer_type=None,
                 first_layer_num_samples=None, first_layer_fraction=None,
                 importance_min_fraction=1.0, segments=None, estimand: str = "shapley") -> Estimate:
    """Budget-free at the top (``budget`` is ignored); see the module docstring for the options."""
    from . import BUDGET_FREE, ESTIMATORS

    check_shapley_only(estimand, "hierarchical")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 2:
        raise ValueError(f"hierarchical: k must be an integer >= 2, got {k!r}")
    inner_types = [t for t in ESTIMATORS if t != "hierarchical"]
    for key, value in (("shap_type", shap_type), ("first_layer_type", first_layer_type)):
        if value is None and key == "first_layer_type":
            continue
        if value not in inner_types:
            raise ValueError(f"hierarchical: {key} must be one of {', '.join(inner_types)}, got {value!r}")
    imp = importance_min_fraction
    if isinstance(imp, bool) or not isinstance(imp, numbers.Real) or not 0 < imp <= 1:
        raise ValueError(f"hierarchical: importance_min_fraction must be in (0, 1], got {imp!r}")
    if segments is None:
        segments = np.zeros(n, dtype=np.int64)
    segments = np.asarray(segments)
    if segments.shape != (n,):
        raise ValueError(f"hierarchical: segments must have one id per player ({n}), "
                         f"got shape {segments.shape}")
    inner = _budget_spec("shap", shap_num_samples, shap_fraction)
    first = _budget_spec("first_layer", first_layer_num_samples, first_layer_fraction) or inner
    first_type = first_layer_type or shap_type
    specs = {}
    for top, method, spec in ((False, shap_type, inner), (True, first_type, first)):
        if method in BUDGET_FREE:
            spec = {}  # exact ignores budgets
        elif not spec:
            spec = {"num_samples": -1}  # no budget given: the minimal one (empty + leave-one-outs)
        else:
            resolve_budget(k, **spec)  # range errors now, before any evaluation
        specs[top] = spec
    tree = _Tree(game, n, rng, segments, int(k), {True: first_type, False: shap_type}, specs,
                 float(imp))
    tree.refine(np.arange(n), None, 0.0, 1, 1.0)
    stderr = np.sqrt(tree.var) if tree.sampled else None
    return Estimate(tree.values, stderr, game.n_evaluations, {"num_levels": tree.levels})
