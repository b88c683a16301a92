"""Monte Carlo Shapley with maximum sample reuse (``limited_mc``, ``standard_mc``).

Sampling. The empty and the full coalition are always evaluated (both count in the budget B).
``limited_mc`` then takes every leave-one-out coalition (as many as B allows, in a seeded random
order); ``standard_mc`` does not. The rest of B is drawn at random, all coalitions distinct: for
Shapley a uniformly random size among the sizes not yet exhausted, then a uniform coalition of that
size; for ``estimand="banzhaf"`` uniform masks (every untaken coalition equally likely).

Estimator. Stratum (i, k) is, on the "in" side, the coalitions of size k+1 containing i and, on the
"out" side, those of size k without i; each side has C(n-1, k) members. Every evaluated coalition
feeds one stratum of every player. With d_ik = mean(in) - mean(out),

    phi_i = sum_k w_k d_ik,   w_k = 1/n (Shapley)  or  C(n-1, k) / 2**(n-1) (Banzhaf).

Within a size the sample is a simple random sample without replacement, so each stratum mean is
unbiased given its count; the forced coalitions (empty, full, leave-one-outs) fill whole strata, so
they bias nothing. For Banzhaf this is the post-stratified form of the plain difference of means
mean(v | i in S) - mean(v | i not in S) of uniform masks (the two agree when strata are filled in
proportion), and unlike it, it stays unbiased although empty/full/leave-one-outs are forced in.

Empty strata. A side with no sample is imputed with the mean of all sampled coalitions of that size
(pooled across players); a size with no sample at all gets the linear interpolation of the pooled
means of the neighbouring sampled sizes (sizes 0 and n are always sampled). This is a small bias
that vanishes once the strata are filled.

Standard error. Per side, Var(mean) = s2 / c * (1 - c / C(n-1, k)) with the ddof=1 sample variance
s2 of the c sampled values (finite-population correction: a fully enumerated side contributes 0).
A side with one sample (population > 1) or none uses the pooled variance of its size instead
(ddof=1 over all sampled coalitions of that size, linearly interpolated between sizes with at least
two samples, or the variance of all sampled values when no size has two); an empty side counts as
one sample without correction. Var(d_ik) = Var(in) + Var(out) and SE_i = sqrt(sum_k w_k**2 Var(d_ik)),
i.e. (1/n) sqrt(sum_k Var(d_ik)) for Shapley. It is conditional on the realised stratum counts.
"""

from __future__ import annotations

import math

import numpy as np

from .result import Estimate, check_estimand, check_sampled_budget
from .sampling import CoalitionPool

__all__ = ["limited_mc", "standard_mc", "stratum_weights", "stratified_estimate", "player_moments",
           "inverse_populations"]


def stratum_weights(n: int, estimand: str) -> np.ndarray:
    if estimand == "banzhaf":
        return np.array([math.comb(n - 1, k) / 2 ** (n - 1) for k in range(n)])
    return np.full(n, 1.0 / n)


def _interpolate(known: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Values at every size 0..n from the sizes flagged ``known`` (ends held constant)."""
    idx = np.flatnonzero(known)
    return np.interp(np.arange(n + 1), idx, values[idx])


def inverse_populations(n: int) -> np.ndarray:
    """1 / C(n-1, k), k = 0..n-1: a stratum's inverse population (MC sides, CC strata alike)."""
    return np.array([1 / math.comb(n - 1, k) for k in range(n)])  # int / int: no overflow


def size_moments(sizes: np.ndarray, values: np.ndarray, n: int):
    """(count, mean, variance (ddof=1), centred sum of squares) of the values of each coalition size
    0..n, pooled over players.

    Sizes without a sample (or without two, for the variance) are interpolated from their
    neighbours; with no size holding two values, the variance of all values is used.
    """
    size_cnt = np.bincount(sizes, minlength=n + 1).astype(np.float64)
    size_sum = np.bincount(sizes, weights=values, minlength=n + 1)
    sampled = size_cnt > 0
    size_mean = _interpolate(sampled, np.divide(size_sum, size_cnt, where=sampled, out=np.zeros(n + 1)), n)
    size_sq = np.bincount(sizes, weights=(values - size_mean[sizes]) ** 2, minlength=n + 1)
    has_var = size_cnt >= 2
    if has_var.any():
        size_var = _interpolate(has_var, np.divide(size_sq, size_cnt - 1, where=has_var, out=np.zeros(n + 1)), n)
    else:
        size_var = np.full(n + 1, values.var(ddof=1) if len(values) >= 2 else 0.0)
    return size_cnt, size_mean, size_var, size_sq


def player_moments(masks: np.ndarray, values: np.ndarray):
    """What the MC sides and the CC strata are built from, for distinct coalitions ``masks`` [m, n]:
    (size_mean, size_var) [n + 1] from ``size_moments``; then the (count, sum, sum of squares) of the
    values' deviations from their size's mean, per size s ([3, n + 1]) and per (player i, size s)
    over the coalitions of size s containing i ([3, n, n + 1]). Centred per size: stable variances."""
    n = masks.shape[1]
    sizes = masks.sum(axis=1)
    size_cnt, size_mean, size_var, size_sq = size_moments(sizes, values, n)
    dev = values - size_mean[sizes]
    within = np.zeros((3, n, n + 1))
    for s in np.flatnonzero(size_cnt > 0):
        rows = sizes == s
        block = masks[rows].astype(np.float64)
        d = dev[rows]
        within[:, :, s] = block.sum(axis=0), block.T @ d, block.T @ (d * d)
    total = np.array([size_cnt, np.bincount(sizes, weights=dev, minlength=n + 1), size_sq])
    return size_mean, size_var, total, within


def stratified_estimate(masks: np.ndarray, values: np.ndarray, weights: np.ndarray):
    """(phi, stderr) from distinct coalitions ``masks`` [m, n] and their ``values`` [m]."""
    n = masks.shape[1]
    size_mean, size_var, total, within = player_moments(masks, values)
    without = total[:, None, :] - within  # per (player, size): the coalitions without the player
    inv_pop = inverse_populations(n)
    # stratum k: "in" side = size k + 1 containing i, "out" side = size k without i
    in_mean, in_var = _side(*within[:, :, 1:], size_mean[1:], size_var[1:], inv_pop)
    out_mean, out_var = _side(*without[:, :, :n], size_mean[:n], size_var[:n], inv_pop)
    phi = (in_mean - out_mean) @ weights
    stderr = np.sqrt((in_var + out_var) @ (weights**2))
    return phi, stderr


def _value_variance(cnt, dsum, dsq, base_var):
    """Per-value variance of each stratum (ddof=1 from its deviation sums; ``base_var``, the pooled
    one of its size, below two values)."""
    safe = np.maximum(cnt, 1.0)
    s2 = np.where(cnt >= 2, (dsq - dsum**2 / safe) / np.maximum(cnt - 1, 1.0), base_var)
    return np.maximum(s2, 0.0)


def _side(cnt, dsum, dsq, base_mean, base_var, inv_pop):
    """Mean and variance of the mean of one side of every stratum; arrays [n players, n sizes]."""
    safe = np.maximum(cnt, 1.0)
    mean = base_mean + np.where(cnt > 0, dsum / safe, 0.0)  # empty side -> pooled size mean
    s2 = _value_variance(cnt, dsum, dsq, base_var)
    fpc = np.where(cnt > 0, np.clip(1.0 - cnt * inv_pop, 0.0, 1.0), 1.0)
    return mean, s2 / safe * fpc


def _sample(n: int, budget: int, rng: np.random.Generator, *, leave_one_out: bool,
            estimand: str) -> np.ndarray:
    pool = CoalitionPool(n, rng)
    pool.add(np.zeros(n, dtype=bool))
    pool.add(np.ones(n, dtype=bool))
    if leave_one_out:
        for j in rng.permutation(n)[: max(budget - len(pool), 0)]:
            mask = np.ones(n, dtype=bool)
            mask[j] = False
            pool.add(mask)
    inner_sizes = range(1, n)
    while len(pool) < budget:
        if estimand == "banzhaf":
            pool.draw_uniform()
        else:
            pool.draw_uniform_size(inner_sizes)
    return pool.masks()


def _mc(game, n, budget, rng, leave_one_out, estimand):
    check_estimand(estimand)
    check_sampled_budget(n, budget)
    masks = _sample(n, budget, rng, leave_one_out=leave_one_out, estimand=estimand)
    values = game(masks)
    phi, stderr = stratified_estimate(masks, values, stratum_weights(n, estimand))
    return Estimate(phi, stderr, game.n_evaluations)


def limited_mc(game, n: int, budget: int, rng: np.random.Generator, *,
               estimand: str = "shapley") -> Estimate:
    """Empty, full and every leave-one-out coalition first, then random distinct coalitions."""
    return _mc(game, n, budget, rng, True, estimand)


def standard_mc(game, n: int, budget: int, rng: np.random.Generator, *,
                estimand: str = "shapley") -> Estimate:
    """Empty and full coalition, then random distinct coalitions."""
    return _mc(game, n, budget, rng, False, estimand)
