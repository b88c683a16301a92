"""Closed-form test games (batched: bool[m, n] -> float[m]) and independent brute-force truths."""

from __future__ import annotations

import itertools
import math

import numpy as np


def additive(weights):
    """v(S) = sum of the weights of S; Shapley = Banzhaf = the weights."""
    weights = np.asarray(weights, dtype=float)
    return lambda masks: np.asarray(masks, dtype=float) @ weights


def unanimity_sum(n, terms):
    """v(S) = sum of c_T over the T contained in S; terms = [(players, c_T), ...]."""
    def game(masks):
        masks = np.asarray(masks, dtype=bool)
        out = np.zeros(masks.shape[0])
        for players, c in terms:
            out += c * masks[:, list(players)].all(axis=1)
        return out
    shapley = np.zeros(n)
    banzhaf = np.zeros(n)
    for players, c in terms:
        for i in players:
            shapley[i] += c / len(players)
            banzhaf[i] += c / 2 ** (len(players) - 1)
    return game, shapley, banzhaf


def random_unanimity(n, n_terms, rng):
    terms = []
    for _ in range(n_terms):
        size = int(rng.integers(1, min(n, 4) + 1))
        terms.append((tuple(rng.choice(n, size, replace=False)), float(rng.normal())))
    return unanimity_sum(n, terms)


def weighted_voting(weights, quota):
    weights = np.asarray(weights, dtype=float)
    return lambda masks: (np.asarray(masks, dtype=float) @ weights >= quota).astype(float)


def glove(left, right):
    left, right = list(left), list(right)
    return lambda masks: np.minimum(np.asarray(masks)[:, left].sum(1),
                                    np.asarray(masks)[:, right].sum(1)).astype(float)


def table_game(n, rng):
    """A random value for every coalition (the hardest case for sampling)."""
    table = rng.normal(size=2**n)
    powers = 1 << np.arange(n)
    return lambda masks: table[np.asarray(masks, dtype=np.int64) @ powers]


def brute_shapley(game, n):
    """Average marginal contribution over all n! orderings (one coalition at a time)."""
    v = lambda players: float(game(np.isin(np.arange(n), list(players))[None, :])[0])
    phi = np.zeros(n)
    for order in itertools.permutations(range(n)):
        before = []
        for i in order:
            phi[i] += v(before + [i]) - v(before)
            before.append(i)
    return phi / math.factorial(n)


def brute_banzhaf(game, n):
    v = lambda players: float(game(np.isin(np.arange(n), list(players))[None, :])[0])
    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for r in range(n):
            for subset in itertools.combinations(others, r):
                phi[i] += v(list(subset) + [i]) - v(list(subset))
    return phi / 2 ** (n - 1)


class Recorder:
    """Wraps a game and records every row it is asked to evaluate."""

    def __init__(self, game):
        self.game = game
        self.rows: list[bytes] = []
        self.calls = 0
        self.batches: list[int] = []  # rows per call

    def __call__(self, masks):
        masks = np.asarray(masks, dtype=bool)
        self.calls += 1
        self.batches.append(len(masks))
        self.rows.extend(np.packbits(row).tobytes() for row in masks)
        return self.game(masks)

    def saw(self, mask) -> bool:
        return np.packbits(np.asarray(mask, dtype=bool)).tobytes() in self.rows

    def masks(self, n: int) -> np.ndarray:
        """Every recorded row as a bool [rows, n] array, in the order asked."""
        if not self.rows:
            return np.zeros((0, n), dtype=bool)
        packed = np.frombuffer(b"".join(self.rows), dtype=np.uint8).reshape(len(self.rows), -1)
        return np.unpackbits(packed, axis=1)[:, :n].astype(bool)


def airport(costs):
    """v(S) = max cost in S (0 for the empty set); Shapley = Littlechild-Owen closed form."""
    costs = np.asarray(costs, dtype=float)

    def game(masks):
        masks = np.asarray(masks, dtype=bool)
        return np.where(masks, costs, 0.0).max(axis=1, initial=0.0)

    order = np.argsort(costs, kind="stable")
    steps = np.diff(np.concatenate([[0.0], costs[order]]))
    shares = np.cumsum(steps / (len(costs) - np.arange(len(costs))))
    shapley = np.empty(len(costs))
    shapley[order] = shares
    return game, shapley

