"""CC with Neyman allocation (``limited_neyman``, ``standard_neyman``; Zhang et al., SIGMOD 2023).

The estimator, its empty-stratum imputation, its control variate and its standard error are those of
``cc`` (per-stratum ddof=1 variances of the CC values, finite-population corrected); only the
sampling differs. With the control variate the pilot's variances are those of the residual CC values
(slopes fitted on the pilot), since those are what the final estimate averages.

Step 1, pilot. After the pair (N, empty), the cells (player i, size j), j = 1..n-1, are visited
round-robin over players: in each pass every player is visited once per size, in a diagonal order
(player t of a seeded permutation gets size 1 + (t + d) mod (n-1) at step d), so a small budget
spreads over players and sizes instead of going to player 0 first (the original walked row-major). A
visited cell with fewer than ``pass + 1`` values gets one pair of size j: drawn to contain player i
(``limited_neyman``) or uniform among the untaken pairs of that size (``standard_neyman``; the cell
is then filled only by chance). ``pilot`` passes (default max(2, ceil(B / (2 n**2)))), never more
than ``pilot_share`` (default half) of the budget beyond (N, empty), but at least one pair.

Step 2, allocation. A pair of size s (and n - s) gives stratum (i, s) a value with probability s/n
and stratum (i, n-s) one with probability (n-s)/n, so sum_i Var(phi_i) is about sum_s A_s / (n m_s)
for m_s pairs of class s, with A_s = sum_i s2_{i,s} / s + sum_i s2_{i,n-s} / (n-s) over the classes
n/2 <= s <= n-1 (for s = n/2 both halves fall in the same strata, so that class counts its strata
once: A = sum_i s2_{i,n/2} / n). The rest of the budget, in pairs, goes to the classes in proportion
to sqrt(A_s) (water-filling: a class never gets more pairs than it has left, the excess is
redistributed); if every A_s is 0 (a constant game), uniformly. Strata already enumerated count with
zero variance. Pairs are then drawn uniformly within their class. ``neyman_steps`` = 2 when step 2
drew at least one pair, else 1 (the budget ended inside the pilot: no pair was left for step 2, as
with budgets below 6 or ``pilot_share=1``). The game is called once per step.
"""

from __future__ import annotations

import math

import numpy as np

from .cc import cc_fit, full_pair_pool
from .result import Estimate, check_sampled_budget, check_shapley_only

__all__ = ["limited_neyman", "standard_neyman", "allocate", "default_pilot", "pilot_cells"]


def default_pilot(n: int, budget: int) -> int:
    return max(2, math.ceil(budget / (2 * n * n)))


def allocate(total: int, weights: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Integers <= caps summing to min(total, sum caps), proportional to ``weights`` (water-filling:
    an entry that would exceed its cap gets the cap and the rest is shared again; largest remainders
    round). When no weight is left where there is room, the rest is shared uniformly."""
    caps = np.asarray(caps, dtype=np.int64)
    weights = np.where(caps > 0, np.asarray(weights, dtype=np.float64), 0.0)
    total = int(min(max(total, 0), caps.sum()))
    fixed = np.zeros(len(caps), dtype=bool)
    share = np.zeros(len(caps))
    while True:
        free = ~fixed & (caps > 0)
        if not free.any():
            break
        w = np.where(free, weights, 0.0)
        if w.sum() <= 0:
            w = free.astype(np.float64)
        share = (total - caps[fixed].sum()) * w / w.sum()
        over = free & (share > caps)
        if not over.any():
            break
        fixed |= over
    target = np.where(fixed, caps, share)
    out = np.minimum(np.floor(target + 1e-9).astype(np.int64), caps)
    order = np.argsort(-(target - out), kind="stable")
    while out.sum() < total:  # one pass suffices but for rounding; total <= caps.sum() ends it
        for k in order:
            if out.sum() < total and out[k] < caps[k]:
                out[k] += 1
    return out


def pilot_cells(n: int, passes: int, players: np.ndarray):
    """The pilot's visiting order: (pass, player, size), round-robin over players, sizes diagonal."""
    for rep in range(passes):
        for d in range(n - 1):
            for t, player in enumerate(players):
                yield rep, int(player), 1 + (t + d) % (n - 1)


def _pilot(pool, n, budget, passes, share, contain):
    limit = min(budget, 2 + 2 * max(1, int(share * (budget - 2)) // 2))
    for rep, player, size in pilot_cells(n, passes, pool.rng.permutation(n)):
        if len(pool) + 2 > limit:
            return
        if pool.taken_with(player, size) > rep:
            continue
        if contain:
            if pool.remaining_with(player, size) > 0:
                pool.draw_pair(size, containing=player)
        elif pool.remaining(size) > 0:
            pool.draw_pair(size)


def _class_weights(strata, n):
    """sqrt(A_s) for the classes s = ceil(n/2) .. n-1 (see the module docstring)."""
    s2 = strata.value_variance()
    s2 = np.where(strata.count * strata.inv_pop >= 1.0, 0.0, s2)  # enumerated strata: nothing to gain
    total = s2.sum(axis=0)  # per size j (column j - 1)
    classes = np.arange(math.ceil(n / 2), n)
    a = np.array([total[s - 1] / n if 2 * s == n else total[s - 1] / s + total[n - s - 1] / (n - s)
                  for s in classes])
    return classes, np.sqrt(a)


def _neyman(game, n, budget, rng, contain, method, estimand, pilot, pilot_share, control_variate):
    check_shapley_only(estimand, method)
    check_sampled_budget(n, budget)
    if pilot is not None and (isinstance(pilot, bool) or int(pilot) != pilot or pilot < 1):
        raise ValueError(f"pilot must be an integer >= 1, got {pilot!r}")
    if not 0 < pilot_share <= 1:
        raise ValueError(f"pilot_share must be in (0, 1], got {pilot_share!r}")
    pool = full_pair_pool(n, rng)
    passes = default_pilot(n, budget) if pilot is None else int(pilot)
    _pilot(pool, n, budget, passes, pilot_share, contain)
    masks = pool.masks()
    fit = cc_fit(masks, game(masks), control_variate)
    classes, weights = _class_weights(fit.strata, n)
    total = (budget - len(pool)) // 2
    caps = np.array([min(pool.remaining_pairs(s), total) for s in classes], dtype=np.int64)
    counts = allocate(total, weights, caps)
    steps = 2 if counts.sum() > 0 else 1
    if steps == 2:
        for size, count in zip(classes, counts):
            for _ in range(int(count)):
                pool.draw_pair(int(size))
        masks = pool.masks()
        fit = cc_fit(masks, game(masks), control_variate)  # only the new pairs reach the model
    phi, stderr = fit.estimate()  # without step 2, the pilot's fit is the final one
    return Estimate(phi, stderr, game.n_evaluations, {"neyman_steps": steps})


def limited_neyman(game, n: int, budget: int, rng: np.random.Generator, *, estimand: str = "shapley",
                   pilot: int | None = None, pilot_share: float = 0.5,
                   control_variate: bool = True) -> Estimate:
    """Pilot pairs drawn to contain their cell's player, then Neyman allocation across sizes."""
    return _neyman(game, n, budget, rng, True, "limited_neyman", estimand, pilot, pilot_share,
                   control_variate)


def standard_neyman(game, n: int, budget: int, rng: np.random.Generator, *, estimand: str = "shapley",
                    pilot: int | None = None, pilot_share: float = 0.5,
                    control_variate: bool = True) -> Estimate:
    """Pilot pairs uniform within their size, then Neyman allocation across sizes."""
    return _neyman(game, n, budget, rng, False, "standard_neyman", estimand, pilot, pilot_share,
                   control_variate)
