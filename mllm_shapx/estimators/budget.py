"""Budget resolution: how many distinct coalitions (= model calls) an estimator may evaluate.

The budget B always counts the empty and the full coalition. Exactly one of three spellings:

- ``num_samples=N``: B = N; ``N == -1`` is the minimal budget min(n + 2, 2**n) (empty, full and every
  leave-one-out coalition).
- ``fraction=f`` with 0 < f <= 1: B = ceil(f * (2**n - 1)) + 1 (f of the non-full coalitions, plus the
  full one), so ``fraction=1`` is exact enumeration.
- ``linear=c`` with 0 < c <= 10: B = ceil(c * n**2), rounded up to an even number.

B is then clamped to [2, 2**n]; a budget of 2**n means exact enumeration. Arithmetic is done with
Python integers and fractions, so huge n neither overflows nor suffers float rounding
(``fraction=0.3`` of 10 coalitions is 3, not 4).
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

__all__ = ["resolve_budget", "minimal_budget"]


def minimal_budget(n: int) -> int:
    """Empty + full + every leave-one-out, or every coalition when that is fewer."""
    return min(n + 2, 2**n)


def _exact_number(value, name: str) -> Fraction:
    """The decimal the user wrote (str(0.1) -> 1/10), not the binary float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if isinstance(value, numbers.Integral):
        return Fraction(int(value))
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return Fraction(str(float(value)))


def resolve_budget(n: int, num_samples=None, fraction=None, linear=None) -> int:
    """Number of distinct coalitions (empty and full included) a sampling estimator may evaluate."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"the number of players must be an integer >= 1, got {n!r}")
    n = int(n)
    given = {k: v for k, v in (("num_samples", num_samples), ("fraction", fraction), ("linear", linear))
             if v is not None}
    if len(given) != 1:
        which = ", ".join(given) if given else "none"
        raise ValueError(
            "a sampling estimator needs exactly one budget: num_samples (int, -1 = minimal), "
            f"fraction in (0, 1] or linear in (0, 10]; got {which}")
    total = 2**n
    if num_samples is not None:
        if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral):
            raise ValueError(f"num_samples must be an integer (-1 = minimal), got {num_samples!r}")
        num_samples = int(num_samples)
        if num_samples == -1:
            budget = minimal_budget(n)
        elif num_samples < 1:
            raise ValueError(f"num_samples must be >= 1 or -1 (minimal), got {num_samples}")
        else:
            budget = num_samples
    elif fraction is not None:
        f = _exact_number(fraction, "fraction")
        if not 0 < f <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        budget = math.ceil(f * (total - 1)) + 1
    else:
        c = _exact_number(linear, "linear")
        if not 0 < c <= 10:
            raise ValueError(f"linear must be in (0, 10], got {linear!r}")
        budget = math.ceil(c * n * n)
        budget += budget % 2
    return min(max(budget, 2), total)
