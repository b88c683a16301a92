"""The CC, Neyman and hierarchical explainers: truth, unbiasedness, error bars, budgets, termination.

Exact zeros for null players are guaranteed by ``exact`` and by ``hierarchical`` with exact
explainers at every level (a null group is attributed 0, a null player inside a group gets 0 from
the exact inner game, and rescaling keeps 0). The sampling estimators guarantee it only in
expectation (checked by the unbiasedness test, whose game has a null player), and exactly for every
player of a constant game.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from games import Recorder, additive, airport, brute_shapley, table_game, unanimity_sum
from mllm_shapx.estimators import hierarchy as hier_module
from mllm_shapx.estimators.sampling import CoalitionPool
from mllm_shapx.estimators import (BANZHAF_METHODS, BUDGET_FREE, ESTIMATORS, CountingGame, estimate,
                                   minimal_budget)
from mllm_shapx.estimators.neyman import allocate, pilot_cells

CC = ("limited_cc", "standard_cc")
NEYMAN = ("limited_neyman", "standard_neyman")
NEW = CC + NEYMAN
SEED_EXPLAINERS = ("exact", "limited_mc", "standard_mc", "limited_cc", "standard_cc",
                   "limited_neyman", "standard_neyman", "hierarchical")


def hier(**overrides):
    """Hierarchical options as the app passes them (every key present)."""
    options = dict(k=2, shap_type="exact", shap_num_samples=None, shap_fraction=None,
                   first_layer_type=None, first_layer_num_samples=None, first_layer_fraction=None,
                   importance_min_fraction=1.0, segments=None, estimand="shapley")
    options.update(overrides)
    return options


def null_player_game(n=8):
    """Unanimity terms plus a smooth wiggle: no zero-variance strata; player n-1 is null."""
    terms = [((0, 1), 2.0), ((2, 3, 4), -1.5), ((5,), 0.7), ((1, 6), 1.2), ((0, 3, 5, 6), 0.9)]
    unanimity, _, _ = unanimity_sum(n, terms)
    wiggle = np.random.default_rng(7).normal(size=n) * 3
    wiggle[n - 1] = 0.0
    return lambda m: unanimity(m) + 0.3 * np.sin(np.asarray(m, float) @ wiggle)


# ---------------------------------------------------------------- registry and estimand
def test_every_explainer_of_the_seed_is_registered():
    assert set(ESTIMATORS) == set(SEED_EXPLAINERS)
    assert BUDGET_FREE == {"exact", "hierarchical"}
    assert set(BANZHAF_METHODS) == {"exact", "limited_mc", "standard_mc"}


@pytest.mark.parametrize("method", NEW + ("hierarchical",))
def test_banzhaf_is_refused_before_any_evaluation(method):
    never = lambda m: pytest.fail("must not evaluate")  # noqa: E731
    options = hier() if method == "hierarchical" else {}
    options["estimand"] = "banzhaf"
    for budget in ({"num_samples": 10}, {"num_samples": 2**5}):  # sampled and exact paths
        with pytest.raises(ValueError, match="banzhaf"):
            estimate(method, never, 5, **budget, **options)
    with pytest.raises(ValueError, match="banzhaf"):  # the estimator function itself refuses too
        ESTIMATORS[method](CountingGame(never, 5), 5, 10, np.random.default_rng(0), **options)
    with pytest.raises(ValueError, match="owen"):
        ESTIMATORS[method](CountingGame(never, 5), 5, 10, np.random.default_rng(0),
                           **{**options, "estimand": "owen"})


# ---------------------------------------------------------------- full budget = exact
@pytest.mark.parametrize("method", NEW)
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_full_budget_matches_brute_force(method, n):
    game = table_game(n, np.random.default_rng(10 + n))
    truth = brute_shapley(game, n)
    for budget in ({"num_samples": 2**n}, {"num_samples": 10**6}, {"fraction": 1.0}):
        rec = Recorder(game)
        est = estimate(method, rec, n, seed=1, **budget)
        np.testing.assert_allclose(est.values, truth, atol=1e-12)
        np.testing.assert_array_equal(est.stderr, np.zeros(n))
        assert est.n_evaluations == 2**n == len(rec.rows) == len(set(rec.rows))


# ---------------------------------------------------------------- statistics
@pytest.mark.parametrize("method, options", [(m, {}) for m in NEW] + [
    ("standard_cc", {"control_variate": False}), ("limited_neyman", {"control_variate": False})])
def test_unbiased_and_error_bars_calibrated(method, options):
    n, budget, seeds = 8, 120, 200
    game = null_player_game(n)
    truth = estimate("exact", game, n).values
    assert truth[n - 1] == pytest.approx(0.0, abs=1e-12)
    runs = [estimate(method, game, n, num_samples=budget, seed=s, **options) for s in range(seeds)]
    values = np.array([r.values for r in runs])
    stderr = np.array([r.stderr for r in runs])
    assert all(r.n_evaluations == budget for r in runs)
    sem = values.std(axis=0, ddof=1) / np.sqrt(seeds)
    assert np.all(np.abs(values.mean(axis=0) - truth) < 4 * sem + control_bias(options, values))
    covered = np.abs(values - truth) <= 1.96 * stderr
    assert 0.85 <= covered.mean() <= 0.99, covered.mean()
    ratio = stderr.mean(axis=0) / values.std(axis=0, ddof=1)
    assert np.all((ratio > 0.6) & (ratio < 1.6)), ratio


def control_bias(options, values):
    """Allowance for the control variate's O(1/m) bias (its slopes are fitted on the sample itself):
    a fifth of one estimate's spread; the plain estimators get none."""
    return 0.0 if options.get("control_variate") is False else 0.2 * values.std(axis=0)


@pytest.mark.parametrize("method, options", [(m, {}) for m in NEW] + [
    (m, {"control_variate": False}) for m in NEW])
def test_unbiased_on_closed_form_games(method, options):
    n, seeds = 9, 150
    unanimity, shapley, _ = unanimity_sum(n, [((0, 1), 2.0), ((2, 3, 4), -1.5), ((5,), 0.7),
                                              ((1, 6, 7), 1.2), ((0, 3, 5, 7), 0.9), ((8,), -0.4)])
    costs = np.array([3.0, 7.0, 7.0, 1.0, 10.0, 4.0, 2.0, 8.0, 5.0])
    airport_game, airport_shapley = airport(costs)
    np.testing.assert_allclose(estimate("exact", airport_game, n).values, airport_shapley, atol=1e-12)
    for game, truth in ((unanimity, shapley), (airport_game, airport_shapley)):
        values = np.array([estimate(method, game, n, num_samples=200, seed=s, **options).values
                           for s in range(seeds)])
        sem = values.std(axis=0, ddof=1) / np.sqrt(seeds)
        bias = np.abs(values.mean(axis=0) - truth)
        assert np.all(bias < 4 * sem + control_bias(options, values) + 1e-9), (values.mean(0), truth)


def test_control_variate_is_exact_on_additive_games_and_helps():
    n = 10
    weights = np.random.default_rng(3).normal(size=n)
    for method in NEW:
        est = estimate(method, additive(weights), n, num_samples=40, seed=2)
        np.testing.assert_allclose(est.values, weights, atol=1e-10)
        plain = estimate(method, additive(weights), n, num_samples=40, seed=2, control_variate=False)
        assert np.abs(plain.values - weights).max() > 1e-3


@pytest.mark.parametrize("method", NEW + ("limited_mc", "standard_mc"))
def test_constant_game_gives_exact_zeros(method):
    for n in (1, 2, 5, 9):
        est = estimate(method, lambda m: np.full(len(m), 0.25), n, num_samples=max(4, 2**n // 3))
        np.testing.assert_array_equal(est.values, np.zeros(n))
        np.testing.assert_array_equal(est.stderr, np.zeros(n))


def test_null_player_exact_zero_where_guaranteed():
    n = 8
    game = null_player_game(n)
    assert estimate("exact", game, n).values[n - 1] == pytest.approx(0.0, abs=1e-12)
    for k in (2, 3):
        est = estimate("hierarchical", game, n, **hier(k=k))
        assert est.values[n - 1] == pytest.approx(0.0, abs=1e-12)
    # a whole null group: 0 for each of its players, and its conditional game is never played
    terms = [((0, 1), 1.0), ((2,), 0.5), ((1, 3), -0.7)]
    rec = Recorder(unanimity_sum(8, terms)[0])
    est = estimate("hierarchical", rec, 8, **hier(k=2, shap_type="standard_cc", shap_num_samples=6))
    np.testing.assert_array_equal(est.values[4:], np.zeros(4))
    assert not any(rec.saw(np.arange(8) != j) for j in range(4, 8))  # no leave-one-out inside it


def test_seeding_is_reproducible():
    game = table_game(9, np.random.default_rng(5))
    for method in ("limited_mc", "standard_mc", *NEW):
        a = estimate(method, game, 9, num_samples=70, seed=4)
        b = estimate(method, game, 9, num_samples=70, seed=4)
        c = estimate(method, game, 9, num_samples=70, seed=5)
        np.testing.assert_array_equal(a.values, b.values)
        np.testing.assert_array_equal(a.stderr, b.stderr)
        assert a.extras == b.extras
        assert not np.array_equal(a.values, c.values)
    options = hier(k=3, shap_type="standard_mc", shap_num_samples=6)
    a = estimate("hierarchical", game, 9, seed=4, **options)
    b = estimate("hierarchical", game, 9, seed=4, **options)
    c = estimate("hierarchical", game, 9, seed=5, **options)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.n_evaluations == b.n_evaluations and not np.array_equal(a.values, c.values)


# ---------------------------------------------------------------- budgets, counting, batching
@pytest.mark.parametrize("method", NEW)
def test_budget_respected_distinct_counted_and_batched(method):
    n = 6
    game = table_game(n, np.random.default_rng(0))
    empty, full = np.zeros(n, bool), np.ones(n, bool)
    for budget in range(1, 2**n + 3):
        rec = Recorder(game)
        est = estimate(method, rec, n, num_samples=budget, seed=budget)
        allowed = min(max(budget, 2), 2**n)
        expected = allowed if allowed == 2**n else allowed - allowed % 2  # pairs: an odd one is left
        assert est.n_evaluations == expected == len(rec.rows) == len(set(rec.rows))
        assert rec.saw(empty) and rec.saw(full)
        assert rec.calls <= (1 if method in CC or allowed == 2**n else 2)
        assert np.all(np.isfinite(est.values)) and np.all(np.isfinite(est.stderr))


@pytest.mark.parametrize("method", NEW)
def test_every_sample_is_a_complementary_pair(method):
    n = 7
    rec = Recorder(table_game(n, np.random.default_rng(1)))
    estimate(method, rec, n, num_samples=50, seed=3)
    rows = {bytes(r) for r in rec.rows}
    for mask in rec.masks(n):
        assert rec.saw(~mask)
    assert len(rows) == 50


def test_limited_cc_seeds_a_covering_pair_per_player():
    n = 9
    size = 3  # ceil(n / 3)
    rec = Recorder(table_game(n, np.random.default_rng(2)))
    estimate("limited_cc", rec, n, num_samples=2 + 2 * n, seed=0)
    masks = rec.masks(n)
    seeds = masks[masks.sum(axis=1) == size]
    assert seeds.any(axis=0).all()  # every player is in a seeded coalition of size ceil(n/3)


@pytest.mark.parametrize("method", [*BANZHAF_METHODS, *NEW])
@pytest.mark.parametrize("n", [1, 2])
def test_tiny_games_every_budget_kind(method, n):
    game = table_game(n, np.random.default_rng(0))
    truth = estimate("exact", game, n).values
    budgets = [{"num_samples": k} for k in (-1, 1, 2, 3, 4, 100)]
    budgets += [{"fraction": f} for f in (1e-9, 0.3, 0.5, 1.0)]
    budgets += [{"linear": c} for c in (1e-9, 0.1, 1, 10)]
    estimands = ("shapley", "banzhaf") if method in BANZHAF_METHODS else ("shapley",)
    for budget in budgets:
        for estimand in estimands:
            est = estimate(method, game, n, estimand=estimand, **budget)
            assert 2 <= est.n_evaluations <= 2**n
            assert est.values.shape == (n,) and np.all(np.isfinite(est.values))
            if estimand == "shapley" and (n == 1 or est.n_evaluations == 2**n):
                np.testing.assert_allclose(est.values, truth)


@pytest.mark.parametrize("method", ("limited_mc", "standard_mc") + NEW)
def test_budget_one_short_of_all_terminates_fast(method):
    n = 10
    rec = Recorder(table_game(n, np.random.default_rng(0)))
    start = time.perf_counter()
    est = estimate(method, rec, n, num_samples=2**n - 1)
    paired = method in NEW  # CC/Neyman draw complementary pairs: every pair but one
    assert time.perf_counter() - start < (10 if paired else 5)
    assert est.n_evaluations == (2**n - 2 if paired else 2**n - 1) == len(set(rec.rows))


def test_large_n_never_enumerates():
    n = 200
    w = np.random.default_rng(0).normal(size=n)
    start = time.perf_counter()
    for method in NEW:
        est = estimate(method, additive(w), n, num_samples=400)
        assert est.n_evaluations == 400
    est = estimate("hierarchical", additive(w), n, **hier(k=4, shap_type="standard_cc",
                                                          shap_num_samples=10))
    np.testing.assert_allclose(est.values.sum(), w.sum(), rtol=1e-9)
    assert time.perf_counter() - start < 20


# ---------------------------------------------------------------- Neyman
def test_pilot_visits_players_round_robin():
    n = 7
    players = np.random.default_rng(0).permutation(n)
    cells = list(pilot_cells(n, 2, players))
    assert len(cells) == 2 * n * (n - 1)
    first = cells[:n]
    assert {p for _, p, _ in first} == set(range(n))  # every player before any player twice
    assert len({s for _, _, s in cells[: n - 1]}) == n - 1  # and the sizes spread too
    one_pass = [(p, s) for r, p, s in cells if r == 0]
    assert sorted(one_pass) == sorted((p, s) for p in range(n) for s in range(1, n))


def test_small_budget_pilot_serves_every_player(monkeypatch):
    served = []
    real = CoalitionPool.draw_pair

    def spy(pool, size, containing=None):
        served.append((size, containing))
        return real(pool, size, containing)

    monkeypatch.setattr(CoalitionPool, "draw_pair", spy)
    n = 8
    # room for n pilot pairs and nothing else: row-major (the original) would serve player 0's
    # cells (0, 1), ..., (0, n-1) first; round-robin spreads them (a cell an earlier pair already
    # filled is skipped, so a player may come twice)
    for seed in range(5):
        served.clear()
        est = estimate("limited_neyman", table_game(n, np.random.default_rng(4)), n,
                       num_samples=2 + 2 * n, seed=seed, pilot_share=1.0)
        assert est.extras == {"neyman_steps": 1} and len(served) == n
        players = [player for _, player in served]
        assert len(set(players)) > n // 2 and max(players.count(p) for p in players) <= 2


@pytest.mark.parametrize("method", NEYMAN)
def test_neyman_steps(method):
    n = 6
    game = table_game(n, np.random.default_rng(3))
    assert estimate(method, game, n, num_samples=4).extras == {"neyman_steps": 1}
    assert estimate(method, game, n, num_samples=5).extras == {"neyman_steps": 1}
    assert estimate(method, game, n, num_samples=30).extras == {"neyman_steps": 2}
    assert estimate(method, game, n, num_samples=30, pilot_share=1.0).extras == {"neyman_steps": 1}
    assert estimate(method, game, n, num_samples=30, pilot=1).extras == {"neyman_steps": 2}
    with pytest.raises(ValueError, match="pilot_share"):
        estimate(method, game, n, num_samples=30, pilot_share=0)
    with pytest.raises(ValueError, match="pilot"):
        estimate(method, game, n, num_samples=30, pilot=0)


@pytest.mark.parametrize("method", NEYMAN)
def test_neyman_allocates_to_the_noisy_size_and_its_complement(method):
    n = 8
    noise = np.random.default_rng(0).normal(size=2**n)
    powers = 1 << np.arange(n)

    def game(masks):  # noisy only at sizes 2 and n - 2: one pair class
        masks = np.asarray(masks, bool)
        sizes = masks.sum(axis=1)
        return sizes + np.where((sizes == 2) | (sizes == n - 2), noise[masks @ powers], 0.0)

    rec = Recorder(game)
    est = estimate(method, rec, n, num_samples=80, seed=1, control_variate=False)
    assert est.extras == {"neyman_steps": 2} and rec.calls == 2 and est.n_evaluations == 80
    first_call = rec.batches[0]
    assert len(rec.rows) - first_call > 10
    assert set(rec.masks(n)[first_call:].sum(axis=1).tolist()) == {2, n - 2}


def test_allocate():
    np.testing.assert_array_equal(allocate(10, np.array([1.0, 1.0, 2.0]), np.array([9, 9, 9])), [3, 2, 5])
    np.testing.assert_array_equal(allocate(10, np.array([1.0, 0.0, 9.0]), np.array([9, 9, 2])), [8, 0, 2])
    np.testing.assert_array_equal(allocate(6, np.zeros(3), np.array([5, 5, 5])), [2, 2, 2])
    np.testing.assert_array_equal(allocate(6, np.array([1.0, 0.0]), np.array([2, 9])), [2, 4])
    np.testing.assert_array_equal(allocate(50, np.array([1.0, 3.0]), np.array([4, 5])), [4, 5])
    np.testing.assert_array_equal(allocate(0, np.array([1.0]), np.array([4])), [0])
    rng = np.random.default_rng(0)
    for _ in range(200):
        caps = rng.integers(0, 20, size=5)
        weights = rng.random(5) * (rng.random(5) < 0.7)
        total = int(rng.integers(0, 80))
        out = allocate(total, weights, caps)
        assert out.sum() == min(total, caps.sum()) and np.all(out <= caps) and np.all(out >= 0)


# ---------------------------------------------------------------- hierarchical
def test_split_groups_respects_segments_and_balances():
    split = hier_module.split_groups
    players = np.arange(10)
    groups = split(players, np.zeros(10, int), 4)
    assert [len(g) for g in groups] == [3, 3, 2, 2]
    segments = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    groups = split(players, segments, 3)
    assert len(groups) == 3 and all(len(set(segments[g])) == 1 for g in groups)
    assert [len(g) for g in groups] == [4, 3, 3]
    many = np.array([0, 1, 1, 2, 3, 3, 4, 4, 4, 5])
    groups = split(players, many, 2)  # more segments than k: one group per segment
    assert [g.tolist() for g in groups] == [[0], [1, 2], [3], [4, 5], [6, 7, 8], [9]]
    assert split(np.array([4, 5]), np.zeros(10, int), 5)[1].tolist() == [5]
    for k in (2, 3, 5):
        groups = split(players, segments, k)
        assert np.array_equal(np.concatenate(groups), players)


def test_hierarchical_never_groups_across_segments(monkeypatch):
    seen = []
    real = hier_module.split_groups
    monkeypatch.setattr(hier_module, "split_groups",
                        lambda p, s, k: seen.append(real(p, s, k)) or seen[-1])
    segments = np.array([0, 0, 0, 1, 1, 1, 1, 1, 3, 2, 2])
    game = table_game(11, np.random.default_rng(8))
    est = estimate("hierarchical", game, 11, seed=0,
                   **hier(k=2, shap_type="standard_neyman", shap_num_samples=6, segments=segments))
    assert len(seen) >= 5 and est.extras["num_levels"] >= 2
    for groups in seen:
        assert all(len(set(segments[g])) == 1 for g in groups)


def test_hierarchical_with_exact_inner_is_exact_on_additive_games():
    n = 11
    weights = np.random.default_rng(9).normal(size=n)
    for k, segments in ((2, None), (3, None), (3, [0] * 4 + [1] * 7), (4, [0, 1] * 5 + [2])):
        est = estimate("hierarchical", additive(weights), n, **hier(k=k, segments=segments))
        np.testing.assert_allclose(est.values, weights, atol=1e-12)
        assert est.stderr is None
    est = estimate("hierarchical", additive(weights), n,
                   **hier(k=3, shap_type="standard_cc", shap_num_samples=5, first_layer_type="exact"))
    assert est.stderr is not None and est.values.sum() == pytest.approx(weights.sum())


def test_hierarchical_is_efficient_level_by_level():
    n = 10
    game = table_game(n, np.random.default_rng(4))
    v_full, v_empty = game(np.ones((1, n), bool))[0], game(np.zeros((1, n), bool))[0]
    for shap_type, budget in (("exact", {}), ("limited_mc", {"shap_num_samples": 6}),
                              ("standard_neyman", {"shap_fraction": 0.5})):
        est = estimate("hierarchical", game, n, seed=2,
                       **hier(k=3, shap_type=shap_type, first_layer_type="exact", **budget))
        assert est.values.sum() == pytest.approx(v_full - v_empty, abs=1e-9)


@pytest.mark.parametrize("n, k, levels", [(8, 2, 3), (9, 3, 2), (5, 5, 1), (6, 9, 1), (1, 2, 1),
                                          (2, 2, 1), (4, 2, 2), (16, 4, 2), (17, 4, 3)])
def test_hierarchical_num_levels(n, k, levels):
    est = estimate("hierarchical", table_game(n, np.random.default_rng(n)), n, **hier(k=k))
    assert est.extras == {"num_levels": levels}


@pytest.mark.parametrize("shap_type, budget", [
    ("exact", {}), ("limited_mc", {"shap_num_samples": -1}), ("standard_cc", {"shap_num_samples": 3}),
    ("limited_neyman", {"shap_fraction": 0.1}), ("standard_neyman", {"shap_num_samples": 1000})])
def test_hierarchical_tiny_games_and_single_player_groups(shap_type, budget):
    options = hier(k=2, shap_type=shap_type, **budget)
    game = lambda m: np.where(np.asarray(m)[:, 0], 5.0, 2.0)  # noqa: E731
    est = estimate("hierarchical", game, 1, **options)
    np.testing.assert_allclose(est.values, [3.0])
    assert est.n_evaluations == 2 and est.extras == {"num_levels": 1}
    two = table_game(2, np.random.default_rng(1))
    est = estimate("hierarchical", two, 2, **options)
    if est.n_evaluations == 4:  # every coalition: exact
        np.testing.assert_allclose(est.values, brute_shapley(two, 2), atol=1e-12)
    assert est.extras == {"num_levels": 1} and 2 <= est.n_evaluations <= 4
    segments = np.array([0, 1, 1, 2, 2, 2, 3])  # single-player groups at the top, 2-player levels below
    game7 = table_game(7, np.random.default_rng(2))
    start = time.perf_counter()
    est = estimate("hierarchical", game7, 7, **{**options, "segments": segments})
    assert time.perf_counter() - start < 5
    assert np.all(np.isfinite(est.values)) and est.extras["num_levels"] == 3


def test_hierarchical_counts_distinct_coalitions_of_the_original_game():
    n = 12
    rec = Recorder(table_game(n, np.random.default_rng(6)))
    est = estimate("hierarchical", rec, n, seed=1,
                   **hier(k=3, shap_type="standard_mc", shap_num_samples=10))
    assert est.n_evaluations == len(rec.rows) == len(set(rec.rows))  # shared coalitions: once
    assert sum(row == np.packbits(np.ones(n, bool)).tobytes() for row in rec.rows) == 1
    seen = []
    estimate("hierarchical", additive(np.ones(n)), n, seed=1, progress=seen.append,
             **hier(k=3, shap_type="standard_mc", shap_num_samples=10))
    assert sum(seen) == est.n_evaluations


def test_importance_sampling_shrinks_weak_groups_budgets():
    n = 16
    weights = np.r_[np.linspace(1, 2, 4), np.linspace(0.01, 0.02, 4), np.linspace(1, 3, 4),
                    np.linspace(2, 1, 4)]
    weak = np.arange(4, 8)

    def weak_group_rows(rec):  # its conditional game's coalitions but N and N - weak
        masks = rec.masks(n)
        outside = np.delete(masks, weak, axis=1).all(axis=1)
        return int((outside & ~masks[:, weak].all(axis=1) & masks[:, weak].any(axis=1)).sum())

    counts = {}
    for fraction in (1.0, 0.1):
        rec = Recorder(additive(weights))
        estimate("hierarchical", rec, n, seed=0, **hier(k=4, shap_type="standard_mc",
                                                         shap_num_samples=14,
                                                         importance_min_fraction=fraction))
        counts[fraction] = weak_group_rows(rec)
    assert counts[1.0] == 14 - 2  # its 14-coalition game (of 16) but N and N - weak
    assert counts[0.1] == minimal_budget(4) - 2  # shrunk to the floor: a 4-player game's minimum


def test_hierarchical_first_layer_settings():
    n = 12
    counts = {}
    for first in ("exact", "standard_cc"):
        rec = Recorder(table_game(n, np.random.default_rng(0)))
        est = estimate("hierarchical", rec, n, seed=0, **hier(
            k=4, shap_type="exact", first_layer_type=first, first_layer_num_samples=6))
        assert est.extras["num_levels"] == 2
        grouped = rec.masks(n).reshape(-1, 4, 3)
        counts[first] = int((grouped.all(axis=2) | ~grouped.any(axis=2)).all(axis=1).sum())
    # rows where every top group is whole: the top level's, plus N and N - G of the inner games
    assert counts["exact"] == 16 and 6 <= counts["standard_cc"] <= 6 + 4
    est = estimate("hierarchical", table_game(n, np.random.default_rng(0)), n, seed=0, **hier(
        k=4, shap_type="standard_mc", shap_fraction=0.5, first_layer_fraction=1.0))
    assert est.extras["num_levels"] == 2 and est.stderr is not None


def test_hierarchical_without_an_inner_budget_uses_the_minimal_one():
    n = 9
    game = table_game(n, np.random.default_rng(1))
    implicit = estimate("hierarchical", game, n, seed=3, **hier(k=3, shap_type="standard_mc"))
    explicit = estimate("hierarchical", game, n, seed=3, **hier(k=3, shap_type="standard_mc", shap_num_samples=-1))
    assert np.array_equal(implicit.values, explicit.values)
    assert implicit.n_evaluations == explicit.n_evaluations
    larger = estimate("hierarchical", game, n, seed=3, **hier(k=3, shap_type="standard_mc", shap_num_samples=6))
    assert larger.n_evaluations > implicit.n_evaluations


@pytest.mark.parametrize("bad, match", [
    ({"k": 1}, "k must"), ({"k": None}, "k must"), ({"k": 2.5}, "k must"),
    ({"shap_type": "hierarchical"}, "shap_type"), ({"shap_type": None}, "shap_type"),
    ({"first_layer_type": "nope"}, "first_layer_type"),
    ({"shap_type": "standard_mc", "shap_num_samples": 5, "shap_fraction": 0.5}, "not both"),
    ({"shap_type": "standard_mc", "shap_num_samples": 0}, "num_samples"),
    ({"shap_type": "standard_mc", "shap_fraction": 1.5}, "fraction"),
    ({"importance_min_fraction": 0}, "importance_min_fraction"),
    ({"importance_min_fraction": 1.5}, "importance_min_fraction"),
    ({"segments": [0, 0, 1]}, "segments"),
])
def test_hierarchical_option_errors(bad, match):
    never = lambda m: pytest.fail("must not evaluate")  # noqa: E731
    with pytest.raises(ValueError, match=match):
        estimate("hierarchical", never, 6, **hier(**bad))
