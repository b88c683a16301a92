"""Exact Shapley (or Banzhaf) values by enumerating all 2**n coalitions in bounded batches.

phi_i = sum_S w(|S|) (v(S u i) - v(S)) over S not containing i, with w(s) = s!(n-s-1)!/n! for
Shapley and 1/2**(n-1) for Banzhaf. Rewritten per coalition: each v(S) enters phi_i with
+w(|S|-1) when i is in S and -w(|S|) when not, so one pass over the coalitions suffices.
"""

from __future__ import annotations

import math

import numpy as np

from .result import Estimate, check_estimand

__all__ = ["MAX_EXACT_PLAYERS", "check_exact_players", "coalitions_range", "exact_values", "exact"]

MAX_EXACT_PLAYERS = 24
BATCH_ROWS = 1 << 16


def coalitions_range(n: int, start: int, stop: int) -> np.ndarray:
    """Coalitions numbered start..stop-1 (bit j of the number = player j is kept), bool [m, n]."""
    ints = np.arange(start, stop, dtype=np.int64)
    return ((ints[:, None] >> np.arange(n, dtype=np.int64)) & 1).astype(bool)


def marginal_weights(n: int, estimand: str) -> np.ndarray:
    """w[k] = weight of the marginal contribution to a coalition of size k (k = 0..n-1)."""
    if estimand == "banzhaf":
        return np.full(n, 1.0 / 2 ** (n - 1))
    return np.array([1.0 / (n * math.comb(n - 1, k)) for k in range(n)])


def check_exact_players(n: int) -> None:
    if n > MAX_EXACT_PLAYERS:
        raise ValueError(
            f"exact enumeration needs 2**{n} coalitions; it is limited to n <= {MAX_EXACT_PLAYERS} "
            "players, use a sampling estimator")


def exact_values(game, n: int, estimand: str = "shapley", batch_rows: int = BATCH_ROWS) -> np.ndarray:
    check_estimand(estimand)
    check_exact_players(n)
    w = marginal_weights(n, estimand)
    w_in = np.concatenate([[0.0], w])   # size s containing i: marginal to size s-1
    w_out = np.concatenate([w, [0.0]])  # size s without i: marginal to size s
    phi = np.zeros(n)
    for start in range(0, 2**n, batch_rows):
        masks = coalitions_range(n, start, min(start + batch_rows, 2**n))
        values = game(masks)
        sizes = masks.sum(axis=1)
        phi += masks.T @ (values * w_in[sizes]) - (~masks).T @ (values * w_out[sizes])
    return phi


def exact(game, n: int, budget, rng, *, estimand: str = "shapley") -> Estimate:
    """Budget-free: any budget given is ignored (exact always evaluates 2**n coalitions)."""
    return Estimate(exact_values(game, n, estimand), None, game.n_evaluations)
