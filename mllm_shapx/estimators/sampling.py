"""Drawing distinct coalitions, grouped by size, without ever enumerating 2**n rows.

A size whose untaken coalitions are still the majority is sampled by rejection (fewer than two
tries expected). Once at least half of a size is taken, its population is at most twice the number
of coalitions already drawn, so the remaining ones are enumerated once and drawn from directly: this
terminates even when the budget is 2**n - 1 (the original hung there in rejection sampling).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["CoalitionPool"]


class CoalitionPool:
    """The distinct coalitions chosen so far, in order, with per-size bookkeeping."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n = n
        self.rng = rng
        self._keys: set[bytes] = set()
        self._masks: list[np.ndarray] = []
        self._taken = [0] * (n + 1)
        self._population = [math.comb(n, s) for s in range(n + 1)]
        self._leftover: dict[int, list[np.ndarray]] = {}  # may hold stale (taken) entries

    def __len__(self) -> int:
        return len(self._masks)

    @staticmethod
    def _key(mask: np.ndarray) -> bytes:
        return np.packbits(mask).tobytes()

    def add(self, mask) -> bool:
        """Take ``mask`` if it is new; True when it was added."""
        mask = np.asarray(mask, dtype=bool)
        key = self._key(mask)
        if key in self._keys:
            return False
        self._keys.add(key)
        self._masks.append(mask)
        self._taken[int(mask.sum())] += 1
        return True

    def remaining(self, size: int) -> int:
        return self._population[size] - self._taken[size]

    def masks(self) -> np.ndarray:
        return np.array(self._masks, dtype=bool).reshape(len(self._masks), self.n)

    def draw_of_size(self, size: int) -> np.ndarray:
        """Take a coalition of ``size`` uniformly among the untaken ones of that size."""
        if self.remaining(size) <= 0:
            raise ValueError(f"every coalition of size {size} is already taken")
        if size not in self._leftover and 2 * self._taken[size] < self._population[size]:
            while True:
                mask = np.zeros(self.n, dtype=bool)
                mask[self.rng.choice(self.n, size, replace=False)] = True
                if self.add(mask):
                    return mask
        leftover = self._leftover.get(size)
        if leftover is None:
            leftover = []
            for combo in itertools.combinations(range(self.n), size):
                mask = np.zeros(self.n, dtype=bool)
                mask[list(combo)] = True
                if self._key(mask) not in self._keys:
                    leftover.append(mask)
            self._leftover[size] = leftover
        while True:  # swap-remove a uniform entry; skip entries taken meanwhile via add()
            pick = int(self.rng.integers(len(leftover)))
            leftover[pick], leftover[-1] = leftover[-1], leftover[pick]
            mask = leftover.pop()
            if self.add(mask):
                return mask

    def draw_uniform_size(self, sizes) -> np.ndarray:
        """A uniformly random size among ``sizes`` that still have untaken coalitions, then a
        uniform untaken coalition of that size."""
        open_sizes = [s for s in sizes if self.remaining(s) > 0]
        if not open_sizes:
            raise ValueError("every coalition of the allowed sizes is already taken")
        return self.draw_of_size(open_sizes[int(self.rng.integers(len(open_sizes)))])

    def draw_uniform(self) -> np.ndarray:
        """A coalition uniform among all untaken ones (uniform masks, without repeats)."""
        total = 2**self.n
        if len(self) >= total:
            raise ValueError("every coalition is already taken")
        if 2 * len(self) < total:
            while True:
                mask = self.rng.random(self.n) < 0.5
                if self.add(mask):
                    return mask
        # 2**n <= 2 * len(self): small enough to weigh sizes by their exact remaining counts.
        counts = np.array([self.remaining(s) for s in range(self.n + 1)], dtype=np.float64)
        size = int(self.rng.choice(self.n + 1, p=counts / counts.sum()))
        return self.draw_of_size(size)
