"""Estimators against closed-form and brute-force truths, budgets, counting and termination."""

from __future__ import annotations

import time

import numpy as np
import pytest

from games import (Recorder, additive, brute_banzhaf, brute_shapley, glove, random_unanimity,
                   table_game, unanimity_sum, weighted_voting)
from mllm_shapx.estimators import (BANZHAF_METHODS, CountingGame, Estimate, estimate, exact_values,
                                   resolve_budget)

SAMPLED = ("limited_mc", "standard_mc")


# ---------------------------------------------------------------- exact
def test_exact_matches_brute_force_permutations():
    rng = np.random.default_rng(1)
    game = table_game(5, rng)
    est = estimate("exact", game, 5)
    np.testing.assert_allclose(est.values, brute_shapley(game, 5), atol=1e-12)
    assert est.stderr is None
    assert est.n_evaluations == 32


@pytest.mark.parametrize("game, n", [
    (weighted_voting([4, 3, 2, 1, 1], 6), 5),
    (glove([0, 1], [2, 3, 4]), 5),
    (additive([0.5, -2.0, 3.0, 0.0]), 4),
])
def test_exact_classic_games(game, n):
    est = estimate("exact", game, n)
    np.testing.assert_allclose(est.values, brute_shapley(game, n), atol=1e-12)
    v_full, v_empty = game(np.ones((1, n), bool))[0], game(np.zeros((1, n), bool))[0]
    assert est.values.sum() == pytest.approx(v_full - v_empty)  # efficiency


def test_exact_unanimity_closed_form_and_banzhaf():
    game, shapley, banzhaf = random_unanimity(7, 6, np.random.default_rng(2))
    np.testing.assert_allclose(estimate("exact", game, 7).values, shapley, atol=1e-12)
    np.testing.assert_allclose(estimate("exact", game, 7, estimand="banzhaf").values, banzhaf,
                               atol=1e-12)
    rnd = table_game(4, np.random.default_rng(3))
    np.testing.assert_allclose(estimate("exact", rnd, 4, estimand="banzhaf").values,
                               brute_banzhaf(rnd, 4), atol=1e-12)


def test_exact_one_player_and_limits():
    game = lambda m: np.where(m[:, 0], 5.0, 2.0)
    est = estimate("exact", game, 1)
    np.testing.assert_allclose(est.values, [3.0])
    assert est.n_evaluations == 2
    with pytest.raises(ValueError, match="n <= 24"):
        estimate("exact", lambda m: pytest.fail("must not evaluate"), 25)


def test_exact_batches_are_bounded_and_distinct():
    rec = Recorder(additive(np.arange(12.0)))
    values = exact_values(CountingGame(rec, 12), 12, batch_rows=1000)
    np.testing.assert_allclose(values, np.arange(12.0))
    assert rec.calls == 5 and len(rec.rows) == len(set(rec.rows)) == 4096


# ---------------------------------------------------------------- full budget = exact
@pytest.mark.parametrize("method", BANZHAF_METHODS)  # the others: test_estimators_suite.py
@pytest.mark.parametrize("n", [1, 2, 3, 6])
@pytest.mark.parametrize("estimand", ["shapley", "banzhaf"])
def test_full_budget_is_exact(method, n, estimand):
    game = table_game(n, np.random.default_rng(n))
    truth = estimate("exact", game, n, estimand=estimand).values
    for budget in ({"num_samples": 2**n}, {"num_samples": 10**6}, {"fraction": 1.0}):
        rec = Recorder(game)
        est = estimate(method, rec, n, estimand=estimand, **budget)
        np.testing.assert_allclose(est.values, truth, atol=1e-12)
        assert est.n_evaluations == 2**n == len(set(rec.rows)) == len(rec.rows)
        if method != "exact":
            np.testing.assert_array_equal(est.stderr, np.zeros(n))


# ---------------------------------------------------------------- statistics
@pytest.mark.parametrize("method", SAMPLED)
def test_mc_unbiased_and_stderr_calibrated(method):
    n, budget, seeds = 8, 100, 200
    unanimity, _, _ = unanimity_sum(n, [((0, 1), 2.0), ((2, 3, 4), -1.5), ((5,), 0.7),
                                        ((1, 6, 7), 1.2), ((0, 3, 5, 7), 0.9)])
    wiggle = np.random.default_rng(7).normal(size=n) * 3
    game = lambda m: unanimity(m) + 0.3 * np.sin(np.asarray(m, float) @ wiggle)  # no zero strata
    truth = estimate("exact", game, n).values  # exact is checked against brute force above
    runs = [estimate(method, game, n, num_samples=budget, seed=s) for s in range(seeds)]
    values = np.array([r.values for r in runs])
    reported = np.array([r.stderr for r in runs])
    assert all(r.n_evaluations == budget for r in runs)
    sem = values.std(axis=0, ddof=1) / np.sqrt(seeds)
    assert np.all(np.abs(values.mean(axis=0) - truth) < 4 * sem + 1e-9), (values.mean(0), truth)
    ratio = reported.mean(axis=0) / values.std(axis=0, ddof=1)
    assert np.all((ratio > 0.5) & (ratio < 2.0)), ratio


@pytest.mark.parametrize("method", SAMPLED)
def test_mc_banzhaf_unbiased(method):
    n, budget, seeds = 7, 60, 150
    game, _, banzhaf = random_unanimity(n, 6, np.random.default_rng(11))
    runs = np.array([estimate(method, game, n, num_samples=budget, seed=s,
                              estimand="banzhaf").values for s in range(seeds)])
    sem = runs.std(axis=0, ddof=1) / np.sqrt(seeds)
    assert np.all(np.abs(runs.mean(axis=0) - banzhaf) < 4 * sem + 1e-9)


# ---------------------------------------------------------------- budget and counting
@pytest.mark.parametrize("method", SAMPLED)
@pytest.mark.parametrize("estimand", ["shapley", "banzhaf"])
def test_budget_respected_distinct_and_counted(method, estimand):
    n = 6
    game = table_game(n, np.random.default_rng(0))
    empty, full = np.zeros(n, bool), np.ones(n, bool)
    for budget in range(1, 2**n + 3):
        rec = Recorder(game)
        est = estimate(method, rec, n, num_samples=budget, seed=budget, estimand=estimand)
        expected = min(max(budget, 2), 2**n)
        assert est.n_evaluations == expected == len(rec.rows) == len(set(rec.rows))
        assert rec.saw(empty) and rec.saw(full)
        assert rec.calls <= 2  # batched, never one coalition at a time
        assert np.all(np.isfinite(est.values)) and np.all(np.isfinite(est.stderr))


def test_limited_mc_seeds_leave_one_outs():
    n = 6
    loos = [np.arange(n) != j for j in range(n)]
    rec = Recorder(table_game(n, np.random.default_rng(0)))
    estimate("limited_mc", rec, n, num_samples=-1)
    assert len(rec.rows) == n + 2 and all(rec.saw(m) for m in loos)
    rec = Recorder(table_game(n, np.random.default_rng(0)))
    estimate("limited_mc", rec, n, num_samples=5, seed=1)  # room for three leave-one-outs
    assert sum(rec.saw(m) for m in loos) == 3


@pytest.mark.parametrize("method", SAMPLED)
def test_minimal_budget(method):
    for n in range(2, 9):
        est = estimate(method, table_game(n, np.random.default_rng(n)), n, num_samples=-1)
        assert est.n_evaluations == min(n + 2, 2**n)


def test_large_n_never_enumerates():
    n = 300
    w = np.random.default_rng(0).normal(size=n)
    start = time.perf_counter()
    for method in SAMPLED:
        est = estimate(method, additive(w), n, num_samples=400)
        assert est.n_evaluations == 400
    assert time.perf_counter() - start < 5


def test_counting_game_caches_dedupes_and_guards():
    rec = Recorder(additive([1.0, 2.0, 4.0]))
    counted = CountingGame(rec, 3, budget=3)
    masks = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0]], bool)
    np.testing.assert_allclose(counted(masks), [1, 1, 2])
    np.testing.assert_allclose(counted(masks[::-1]), [2, 1, 1])
    assert counted.n_evaluations == 2 and len(rec.rows) == 2 and rec.calls == 1
    counted(np.array([[0, 0, 1], [1, 0, 0]], bool))
    assert counted.n_evaluations == 3
    with pytest.raises(RuntimeError, match="budget"):
        counted(np.array([[1, 1, 1]], bool))
    with pytest.raises(ValueError, match="shape"):
        counted(np.zeros((2, 4), bool))


def test_progress_reports_new_evaluations():
    seen = []
    estimate("standard_mc", additive(np.ones(7)), 7, num_samples=20, progress=seen.append)
    assert sum(seen) == 20


# ---------------------------------------------------------------- budget rules
@pytest.mark.parametrize("n, kwargs, expected", [
    (10, {"num_samples": 100}, 100),
    (10, {"num_samples": -1}, 12),
    (2, {"num_samples": -1}, 4),
    (1, {"num_samples": -1}, 2),
    (10, {"num_samples": 1}, 2),
    (10, {"num_samples": 5000}, 1024),
    (10, {"fraction": 0.1}, 104),     # ceil(102.3) + 1
    (10, {"fraction": 1.0}, 1024),
    (4, {"fraction": 0.2}, 4),        # 0.2 * 15 = 3 exactly, not 3.0000000000000004
    (10, {"linear": 0.3}, 30),        # 0.3 * 100 = 30 exactly, already even
    (10, {"linear": 0.55}, 56),       # 55 rounded up to even
    (5, {"linear": 1}, 26),           # 25 -> 26
    (3, {"linear": 10}, 8),           # capped at 2**3
    (200, {"fraction": 1e-50}, 2**200 // 10**50 + 2),
])
def test_resolve_budget(n, kwargs, expected):
    assert resolve_budget(n, **kwargs) == expected


@pytest.mark.parametrize("kwargs, match", [
    ({"fraction": 0}, "fraction"),
    ({"fraction": 1.5}, "fraction"),
    ({"fraction": -0.1}, "fraction"),
    ({"linear": 11}, "linear"),
    ({"linear": 0}, "linear"),
    ({"num_samples": 0}, "num_samples"),
    ({"num_samples": -2}, "num_samples"),
    ({"num_samples": 2.5}, "num_samples"),
    ({}, "exactly one"),
    ({"num_samples": 10, "fraction": 0.5}, "exactly one"),
])
def test_resolve_budget_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resolve_budget(6, **kwargs)


def test_estimate_errors():
    game = additive(np.ones(4))
    with pytest.raises(ValueError, match="'nope'.*exact.*limited_mc.*standard_mc"):
        estimate("nope", game, 4, num_samples=5)
    with pytest.raises(ValueError, match="exactly one"):
        estimate("standard_mc", game, 4)
    with pytest.raises(ValueError, match="estimand"):
        estimate("standard_mc", game, 4, num_samples=5, estimand="owen")
    with pytest.raises(ValueError, match="n_players"):
        estimate("exact", game, 0)
    with pytest.raises(ValueError, match="returned"):
        estimate("exact", lambda m: np.zeros(1), 4)
    est = estimate("exact", game, 4, num_samples=3)  # exact ignores budgets
    assert isinstance(est, Estimate) and est.n_evaluations == 16 and est.extras == {}
