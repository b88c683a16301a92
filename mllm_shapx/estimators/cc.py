"""Complementary contributions (``limited_cc``, ``standard_cc``; Zhang et al., SIGMOD 2023).

A sample is a pair (S, N - S) worth CC(S) = v(S) - v(N - S). Stratum (i, j), j = 1..n, holds the
coalitions S of size j that contain i (population C(n-1, j-1)); the pair feeds stratum |S| of every
i in S with +CC(S) and stratum n - |S| of every i outside S with -CC(S) = CC(N - S). Because
v(S) - v(N - S) averaged over stratum j and summed over j telescopes to the Shapley formula,

    phi_i = (1/n) sum_{j=1..n} mean of stratum (i, j).

Stratum (i, n) is the pair (N, empty), always evaluated (it is the first sample), so it is exact.

Sampling. Every sample costs its two coalitions (an odd budget leaves one coalition unused: half a
pair is worth nothing). ``standard_cc`` draws pairs at random, all distinct: a uniformly random size
1..n-1 among those with untaken pairs, then a uniform untaken coalition of that size with its
complement. ``limited_cc`` first seeds, for each player in a seeded random order that no earlier seed
covers yet, one pair whose coalition of size ceil(n/3) contains that player, then samples as
standard. Within a stratum the draws are uniform, so each stratum mean is unbiased given its count
(the seeds of other players land in a stratum uniformly on average).

Empty strata. A stratum with no sample is imputed with the mean CC of every sampled coalition of its
size (pooled across players; sizes never sampled get the linear interpolation between the sampled
sizes, and sizes 0 and n always are). The pooled mean over players of the stratum means of a size is
exactly that size's mean CC, so this imputation keeps efficiency (sum phi = v(N) - v(empty)) in
expectation; it is a small bias that vanishes once strata are filled.

Standard error. From the sample itself, per stratum: Var(mean) = s2 / c * (1 - c / C(n-1, j-1)) with
the ddof=1 variance s2 of its c CC values (finite-population corrected, so an enumerated stratum
contributes 0); a stratum with fewer than two values (population > 1) uses the pooled variance of
its size instead (as ``montecarlo`` does). SE_i = (1/n) sqrt(sum_j Var_ij): the strata of one player
are fed by different pairs. Conditional on the realised stratum counts.

Control variate (default; ``control_variate=False`` gives the plain estimator above). The estimator
is applied to v - a, a(S) = sum_{j in S} b_j with slopes b fitted on the sample (``control``), and b is
added back: phi_i = b_i + (1/n) sum_j mean of stratum (i, j) of CC values of v - a. Size effects
cancel inside the strata, so only the players' slopes matter; an additive game is then estimated
exactly, and games close to additive (low-order interactions) gain most. Fitting b on the same
sample adds a bias of order 1/m (m coalitions), small next to the standard error once strata are
filled. The standard error is that of the residual strata, inflated by the degrees of freedom of the
fit (it neglects the fit's own sampling error: slightly optimistic at small budgets).

Null players get no exact 0 here (CC(S) is not a marginal contribution of i), only in expectation;
a constant game gets exactly 0 for everyone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .control import additive_fit
from .montecarlo import _side, _value_variance, inverse_populations, player_moments
from .result import Estimate, check_sampled_budget, check_shapley_only
from .sampling import CoalitionPool

__all__ = ["limited_cc", "standard_cc", "Strata", "CCFit", "cc_strata", "cc_fit", "complementary_values"]


def complementary_values(masks: np.ndarray, values: np.ndarray) -> np.ndarray:
    """c(T) = v(T) - v(N - T) for every row of a set of coalitions closed under complement."""
    index = {row.tobytes(): k for k, row in enumerate(np.packbits(masks, axis=1))}
    comp = [index[row.tobytes()] for row in np.packbits(~masks, axis=1)]
    return values - values[comp]


@dataclass
class Strata:
    """Moments of the CC strata (i, j); arrays [n players, n sizes], column j - 1 = size j.

    Values are kept as deviations from their size's pooled mean ``base_mean`` (stable variances);
    ``base_var`` is the pooled per-value variance of each size (the fallback of thin strata).
    """

    count: np.ndarray
    dev_sum: np.ndarray
    dev_sq: np.ndarray
    base_mean: np.ndarray
    base_var: np.ndarray
    inv_pop: np.ndarray

    def mean_and_variance(self):
        """Stratum means (empty -> pooled) and variances of those means, both [n, n]."""
        return _side(self.count, self.dev_sum, self.dev_sq, self.base_mean, self.base_var,
                     self.inv_pop)

    def value_variance(self) -> np.ndarray:
        """Per-value variance of each stratum (ddof=1; the pooled one below two values)."""
        return _value_variance(self.count, self.dev_sum, self.dev_sq, self.base_var)


def cc_strata(masks: np.ndarray, values: np.ndarray) -> Strata:
    """The strata of CC values of distinct, complement-closed coalitions ``masks`` [m, n]."""
    size_mean, size_var, _, within = player_moments(masks, complementary_values(masks, values))
    # size 0 (the empty coalition) holds no player: strata are sizes 1..n
    return Strata(*within[:, :, 1:], size_mean[1:], size_var[1:], inverse_populations(masks.shape[1]))


@dataclass
class CCFit:
    """The control variate's slopes and inflation (zeros and 1 without it) and the strata of the
    residual CC values: what the estimate needs, and what Neyman allocation weighs sizes by."""

    slopes: np.ndarray
    inflation: float
    strata: Strata

    def estimate(self):
        """(phi, stderr) of the CC estimator."""
        n = len(self.slopes)
        mean, var = self.strata.mean_and_variance()
        return mean.sum(axis=1) / n + self.slopes, np.sqrt(var.sum(axis=1) * self.inflation) / n


def cc_fit(masks: np.ndarray, values: np.ndarray, control_variate: bool = True) -> CCFit:
    """Fit the additive control variate (unless disabled) and build the strata of its residuals."""
    n = masks.shape[1]
    slopes, inflation = additive_fit(masks, values) if control_variate else (np.zeros(n), 1.0)
    return CCFit(slopes, inflation, cc_strata(masks, values - masks @ slopes))


def full_pair_pool(n: int, rng: np.random.Generator) -> CoalitionPool:
    """A pool holding the first sample, the pair (N, empty)."""
    pool = CoalitionPool(n, rng)
    pool.add_pair(np.ones(n, dtype=bool))
    return pool


def draw_random_pairs(pool: CoalitionPool, budget: int) -> None:
    """Standard CC sampling: uniform size among those with untaken pairs, then a uniform pair."""
    while len(pool) + 2 <= budget:
        size = pool.open_size(range(1, pool.n))
        if size is None:
            return
        pool.draw_pair(size)


def _cc(game, n, budget, rng, coverage, method, estimand, control_variate):
    check_shapley_only(estimand, method)
    check_sampled_budget(n, budget)
    pool = full_pair_pool(n, rng)
    if coverage and n >= 2:
        size = math.ceil(n / 3)
        for player in rng.permutation(n):
            if len(pool) + 2 > budget:
                break
            if pool.taken_with(player, size) == 0:  # so C(n-1, size-1) >= 1 remain
                pool.draw_pair(size, containing=int(player))
    draw_random_pairs(pool, budget)
    masks = pool.masks()
    phi, stderr = cc_fit(masks, game(masks), control_variate).estimate()
    return Estimate(phi, stderr, game.n_evaluations)


def limited_cc(game, n: int, budget: int, rng: np.random.Generator, *, estimand: str = "shapley",
               control_variate: bool = True) -> Estimate:
    """(N, empty), a size-ceil(n/3) pair covering each player, then random distinct pairs."""
    return _cc(game, n, budget, rng, True, "limited_cc", estimand, control_variate)


def standard_cc(game, n: int, budget: int, rng: np.random.Generator, *, estimand: str = "shapley",
                control_variate: bool = True) -> Estimate:
    """(N, empty), then random distinct pairs."""
    return _cc(game, n, budget, rng, False, "standard_cc", estimand, control_variate)
