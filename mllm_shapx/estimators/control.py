"""An additive control variate for the CC estimators (regression estimator).

A stratified estimator is linear in the values, so for any additive game a(S) = sum_{j in S} b_j
(whose Shapley value is b, known exactly) estimate(v) - estimate(a) + b is again an estimator of
phi(v): the classic survey-sampling regression estimator. It is unbiased for every fixed b and
gains when a tracks v inside the strata, since the strata then only hold v - a. Players' slopes b
are fitted on the sample itself: least squares of v on the coalition masks within each size (values
and masks centred per size, because the strata are sizes and size effects cancel there), ridge-
regularised with the penalty chosen by generalised cross-validation (GCV) over a fixed grid, so a
sample too small to fit shrinks b towards 0, i.e. towards the plain estimator. Fitting on the same
sample adds a bias of order 1/m (m coalitions) that the tests bound; no fold splitting is needed.

The strata variances of the residuals v - a underestimate the noise by the degrees of freedom the
fit used (df = trace of the ridge hat matrix); ``inflation`` = m' / (m' - df), m' = m - number of
sizes sampled, corrects them, as an unbiased regression residual variance would.
"""

from __future__ import annotations

import numpy as np

__all__ = ["additive_fit"]

_GRID = np.concatenate([[0.0], np.logspace(-4, 6, 41)])  # x mean squared singular value


def additive_fit(masks: np.ndarray, values: np.ndarray):
    """(slopes b [n], inflation >= 1) of the within-size ridge fit chosen by GCV."""
    m, n = masks.shape
    sizes = masks.sum(axis=1)
    x = masks.astype(np.float64)
    y = np.asarray(values, dtype=np.float64).copy()
    present = np.unique(sizes)
    for s in present:
        rows = sizes == s
        x[rows] -= x[rows].mean(axis=0)
        y[rows] -= y[rows].mean()
    free = m - len(present)
    if free < 2 or not np.any(x):
        return np.zeros(n), 1.0
    u, d, vt = np.linalg.svd(x, full_matrices=False)
    keep = d > 1e-10 * d.max()
    u, d, vt = u[:, keep], d[keep], vt[keep]
    uy = u.T @ y
    outside = float(y @ y - uy @ uy)  # the part of y no slope can fit
    best = None
    for lam in _GRID * float(np.mean(d**2)):
        shrink = d**2 / (d**2 + lam)
        df = float(shrink.sum())
        if df >= free:
            continue
        rss = outside + float((((1.0 - shrink) * uy) ** 2).sum())
        gcv = rss / (1.0 - df / free) ** 2
        if best is None or gcv < best[0]:
            best = (gcv, shrink, df)
    if best is None:
        return np.zeros(n), 1.0
    _, shrink, df = best
    return vt.T @ (shrink * uy / d), free / (free - df)
