"""Which explainer is best at a given budget: MSE vs exact and Precision@5, ours vs shapiq.

    python benchmarks/estimators.py [--seeds 50] [--workers 2] [--games unanimity,llm]
                                    [--budgets 64,128,256,512,1024,2048,4096] [--no-shapiq]
                                    [--no-hierarchical]

Games (fixed, built from seed 0): closed-form ones on 14 players (``additive``, ``unanimity`` = a sum
of 20 random unanimity games of orders 1-4, weighted ``voting``, ``airport``, ``glove`` 6 left / 8
right gloves) and ``llm``, a recorded real game: v(S) of all 2**12 coalitions of one bundled row under
the embedded SmolLM2 (``benchmarks/data/llm_game_12.npz``, made by ``record_llm_game.py``). The truth
is exact enumeration (the tests check exact against brute force and closed forms).

Every sampling estimator of ours runs through ``estimate(method, game, n, num_samples=B, seed=s)``
(B distinct coalitions, empty and full included; defaults, so CC and Neyman with their additive
control variate); shapiq's ``PermutationSamplingSV``, ``KernelSHAP`` and ``SVARM`` (defaults;
shapiq is a benchmark-only dependency: ``pip install -c constraints-cpu.txt shapiq``) get
``approximate(budget=B, game)`` with ``random_state=s``, i.e. the same number of game evaluations in
shapiq's own counting (KernelSHAP and SVARM: B distinct coalitions, their sampler's border trick
included; permutation sampling: B rows asked, repeats included, as shapiq counts them: the footer
prints how many distinct coalitions each shapiq method really asked for). Budgets at or above 2**n
are capped (ours is then exact enumeration). Seeds 0..S-1 for every cell.

``hierarchical`` has no single budget (its cost follows from ``k`` and the inner explainer), so it
is listed apart: exact inner explainers at k = 2, 3, 4 (deterministic) and ``limited_mc`` inner at
8 coalitions (k = 4), importance_min_fraction 0.2, with the mean number of coalitions evaluated.

MSE = mean over seeds and players of (phi - phi_exact)**2. Precision@5 = |top-5 by |phi|| of the
estimate intersected with the true top-5 (tie-inclusive: every player tied with the true 5th counts
as top), / 5, averaged over seeds. ``ours/shapiq`` = our best MSE / shapiq's best MSE at that budget.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from games import additive, airport, glove, random_unanimity, weighted_voting  # noqa: E402

from mllm_shapx.estimators import BUDGET_FREE, ESTIMATORS, estimate  # noqa: E402

OURS = tuple(method for method in ESTIMATORS if method not in BUDGET_FREE)  # the sampling estimators
SHAPIQ = ("PermutationSamplingSV", "KernelSHAP", "SVARM")
GAMES = ("additive", "unanimity", "voting", "airport", "glove", "llm")
BUDGETS = (64, 128, 256, 512, 1024, 2048, 4096)
LLM_FILE = HERE / "data" / "llm_game_12.npz"
N_CLOSED = 14


def make_game(name: str):
    """(game, n, description); every closed-form game is built from seed 0."""
    rng = np.random.default_rng(0)
    n = N_CLOSED
    if name == "additive":
        return additive(rng.normal(size=n)), n, "v(S) = sum of N(0,1) weights"
    if name == "unanimity":
        return random_unanimity(n, 20, rng)[0], n, "20 unanimity terms, orders 1-4, N(0,1) weights"
    if name == "voting":
        weights = rng.integers(1, 11, size=n)
        return weighted_voting(weights, weights.sum() / 2), n, "weights 1-10, quota half"
    if name == "airport":
        return airport(rng.integers(1, 101, size=n).astype(float))[0], n, "costs 1-100"
    if name == "glove":
        return glove(range(6), range(6, n)), n, "6 left, 8 right"
    if name == "llm":
        data = np.load(LLM_FILE)
        table, n = data["values"], int(data["n_players"])
        powers = 1 << np.arange(n)
        game = lambda masks: table[np.asarray(masks, dtype=np.int64) @ powers]
        return game, n, f"row {int(data['row_index'])}: {str(data['prompt'])!r}"
    raise ValueError(f"unknown game {name!r}")


class _Asked:
    """Counts the rows shapiq asks for and the distinct coalitions among them."""

    def __init__(self, game):
        self.game, self.rows, self.distinct = game, 0, set()

    def __call__(self, masks):
        masks = np.atleast_2d(np.asarray(masks, dtype=bool))
        self.rows += len(masks)
        self.distinct.update(r.tobytes() for r in np.packbits(masks, axis=1))
        return self.game(masks)


def run_method(game, n, method, budget, seed):
    """(phi, distinct coalitions asked) of one run."""
    if method in OURS:
        est = estimate(method, game, n, num_samples=budget, seed=seed)
        return np.asarray(est.values), est.n_evaluations
    import shapiq

    asked = _Asked(game)
    approximator = getattr(shapiq, method)(n=n, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = approximator.approximate(budget=budget, game=asked)
    return np.asarray(values.get_n_order_values(1), dtype=np.float64), len(asked.distinct)


HIERARCHICAL = [("exact", 2, None), ("exact", 3, None), ("exact", 4, None), ("limited_mc", 4, 8)]


def hierarchical_cell(task):
    """Hierarchical settings on one game: (name, rows of (label, evaluations, MSE, P@5))."""
    name, seeds = task
    game, n, _ = make_game(name)
    truth = estimate("exact", game, n).values
    top = true_top(truth)
    rows = []
    for shap_type, k, ns in HIERARCHICAL:
        runs = [estimate("hierarchical", game, n, seed=s, k=k, shap_type=shap_type,
                         shap_num_samples=ns, importance_min_fraction=0.2)
                for s in (seeds if ns else seeds[:1])]
        rows.append((f"{shap_type} k={k}" + (f" ns={ns}" if ns else ""),
                     np.mean([r.n_evaluations for r in runs]),
                     np.mean([np.mean((r.values - truth) ** 2) for r in runs]),
                     np.mean([len(set(np.argsort(-np.abs(r.values), kind="stable")[:5]) & top) / 5
                              for r in runs])))
    return name, rows


def true_top(phi, k=5):
    mags = np.abs(phi)
    return set(np.flatnonzero(mags >= np.sort(mags)[-k] - 1e-12))


def cell(task):
    """All seeds of one (game, method, budget)."""
    name, method, budget, seeds = task
    game, n, _ = make_game(name)
    truth = estimate("exact", game, n).values
    top = true_top(truth)
    sq, prec, distinct, start = [], [], [], time.perf_counter()
    for seed in seeds:
        phi, asked = run_method(game, n, method, min(budget, 2**n), seed)
        sq.append(np.mean((phi - truth) ** 2))
        prec.append(len(set(np.argsort(-np.abs(phi), kind="stable")[:5]) & top) / 5)
        distinct.append(asked)
    return (name, method, budget, float(np.mean(sq)), float(np.mean(prec)), float(np.mean(distinct)),
            time.perf_counter() - start)


def fmt(x):
    return "0" if x == 0 else f"{x:.2e}" if x < 1e-2 or x >= 100 else f"{x:.4f}"


def report(results, games, budgets, methods):
    lines = []
    for name in games:
        _, n, desc = make_game(name)
        lines.append(f"\n### {name} (n = {n}; {desc})\n")
        head = "| budget | " + " | ".join(methods) + " | ours/shapiq |"
        lines += [head, "|" + "---|" * (len(methods) + 2)]
        for budget in budgets:
            b = min(budget, 2**n)
            row = [results[(name, m, budget)] for m in methods]
            ours = [r[0] for m, r in zip(methods, row) if m in OURS]
            theirs = [r[0] for m, r in zip(methods, row) if m in SHAPIQ]
            best = min(ours) if ours else np.nan
            ratio = (best / min(theirs) if theirs and min(theirs) > 0 else
                     (1.0 if theirs and best == 0 else np.nan))
            cells = []
            for m, (mse, p5, _) in zip(methods, row):
                mark = "**" if m in OURS and mse == best else ""
                cells.append(f"{mark}{fmt(mse)}{mark} / {p5:.2f}")
            lines.append(f"| {b} | " + " | ".join(cells) + f" | {ratio:.2f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--games", default=",".join(GAMES))
    parser.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    parser.add_argument("--methods", default=",".join(OURS + SHAPIQ))
    parser.add_argument("--no-shapiq", action="store_true")
    parser.add_argument("--no-hierarchical", action="store_true")
    args = parser.parse_args()
    games = args.games.split(",")
    budgets = [int(b) for b in args.budgets.split(",")]
    methods = [m for m in args.methods.split(",") if not (args.no_shapiq and m in SHAPIQ)]
    seeds = list(range(args.seeds))
    if any(m in SHAPIQ for m in methods):
        import shapiq

        print(f"shapiq {getattr(shapiq, '__version__', None) or 'installed'}")
    print(f"seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}) per cell; budgets {budgets}; "
          f"workers {args.workers}")
    tasks = [(g, m, b, seeds) for g in games for b in budgets for m in methods]
    tasks.sort(key=lambda t: -t[2])  # largest budgets first: better packing
    start = time.perf_counter()
    results, seconds = {}, {}
    with ProcessPoolExecutor(args.workers) as pool:
        hier = ([] if args.no_hierarchical else
                list(pool.map(hierarchical_cell, [(g, seeds) for g in games])))
        for name, method, budget, mse, p5, distinct, secs in pool.map(cell, tasks):
            results[(name, method, budget)] = (mse, p5, distinct)
            seconds[method] = seconds.get(method, 0.0) + secs
    print("\nEach cell: MSE vs exact / Precision@5 (mean over seeds); bold = our best.")
    print(report(results, games, budgets, methods))
    shapiq_methods = [m for m in methods if m in SHAPIQ]
    if shapiq_methods:
        print("\nDistinct coalitions shapiq asked for (mean over seeds), per game and budget:")
        for name in games:
            n = make_game(name)[1]
            parts = [f"{m} " + "/".join(f"{results[(name, m, b)][2]:.0f}" for b in budgets)
                     for m in shapiq_methods]
            print(f"  {name} (budgets {'/'.join(str(min(b, 2**n)) for b in budgets)}): "
                  + "; ".join(parts))
        for name in ("unanimity", "llm"):
            if name not in games:
                continue
            met = [b for b in budgets
                   if min(results[(name, m, b)][0] for m in methods if m in OURS)
                   <= min(results[(name, m, b)][0] for m in shapiq_methods) * (1 + 1e-9) + 1e-20]
            print(f"goal (our best MSE <= shapiq's best) on {name}: met at {len(met)}/{len(budgets)} "
                  f"budgets" + ("" if len(met) == len(budgets)
                                else f"; missed at {sorted(set(budgets) - set(met))}"))
    if hier:
        print("\nhierarchical (importance_min_fraction 0.2): mean coalitions evaluated, MSE / P@5")
        for name, rows in hier:
            print(f"  {name}: " + "; ".join(f"{label}: {ev:.0f} coalitions, {fmt(mse)} / {p5:.2f}"
                                           for label, ev, mse, p5 in rows))
    print("\nCPU seconds per method: " + ", ".join(f"{m} {s:.0f}" for m, s in seconds.items()))
    print(f"wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
