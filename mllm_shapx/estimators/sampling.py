"""Drawing distinct coalitions, grouped by size, without ever enumerating 2**n rows.

A size whose untaken coalitions are still the majority is sampled by rejection (fewer than two
tries expected). Once at least half of a size is taken, its population is at most twice the number
of coalitions already drawn, so the remaining ones are enumerated once and drawn from directly: this
terminates even when the budget is 2**n - 1 (the original hung there in rejection sampling). The same
rule holds for draws restricted to the coalitions of a size that contain a given player (CC and
Neyman strata), which is why the pool counts, per player and size, the coalitions containing it.
Pairs (a coalition with its complement) keep the pool closed under complement, as CC needs.
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
        self._leftover: dict = {}  # size or (size, player) -> list; may hold stale (taken) entries
        self._taken_by = np.zeros((n, n + 1), dtype=np.int64)  # [player, size]: taken containing it

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
        size = int(mask.sum())
        self._taken[size] += 1
        self._taken_by[mask, size] += 1
        return True

    def add_pair(self, mask) -> bool:
        """Take ``mask`` and its complement (a CC sample); True when the pair was new."""
        mask = np.asarray(mask, dtype=bool)
        new = self.add(mask)
        return self.add(~mask) or new

    def remaining(self, size: int) -> int:
        return self._population[size] - self._taken[size]

    def taken_with(self, player: int, size: int) -> int:
        """Taken coalitions of ``size`` that contain ``player``."""
        return int(self._taken_by[player, size])

    def remaining_with(self, player: int, size: int) -> int:
        if not 1 <= size <= self.n:
            return 0
        return math.comb(self.n - 1, size - 1) - int(self._taken_by[player, size])

    def remaining_pairs(self, size: int) -> int:
        """Untaken pairs (S, N - S) with |S| = size, in a pool closed under complement."""
        left = self.remaining(size)
        return left // 2 if 2 * size == self.n else left

    def masks(self) -> np.ndarray:
        return np.array(self._masks, dtype=bool).reshape(len(self._masks), self.n)

    def draw_of_size(self, size: int, containing: int | None = None) -> np.ndarray:
        """Take a coalition of ``size`` uniformly among the untaken ones of that size (that contain
        player ``containing`` when given)."""
        if containing is None:
            taken, left, key = self._taken[size], self.remaining(size), size
        else:
            taken, left = self.taken_with(containing, size), self.remaining_with(containing, size)
            key = (size, containing)
        if left <= 0:
            raise ValueError(f"every coalition of size {size} is already taken"
                             + ("" if containing is None else f" with player {containing}"))
        others = np.delete(np.arange(self.n), containing) if containing is not None else None
        if key not in self._leftover and taken < left:  # untaken still the majority: rejection
            while True:
                mask = np.zeros(self.n, dtype=bool)
                if others is None:
                    mask[self.rng.choice(self.n, size, replace=False)] = True
                else:
                    mask[containing] = True
                    mask[others[self.rng.choice(self.n - 1, size - 1, replace=False)]] = True
                if self.add(mask):
                    return mask
        leftover = self._leftover.get(key)
        if leftover is None:
            leftover = []
            pick_from = range(self.n) if others is None else others.tolist()
            for combo in itertools.combinations(pick_from, size if others is None else size - 1):
                mask = np.zeros(self.n, dtype=bool)
                mask[list(combo)] = True
                if others is not None:
                    mask[containing] = True
                if self._key(mask) not in self._keys:
                    leftover.append(mask)
            self._leftover[key] = leftover
        while True:  # swap-remove a uniform entry; skip entries taken meanwhile via add()
            pick = int(self.rng.integers(len(leftover)))
            leftover[pick], leftover[-1] = leftover[-1], leftover[pick]
            mask = leftover.pop()
            if self.add(mask):
                return mask

    def draw_pair(self, size: int, containing: int | None = None) -> np.ndarray:
        """Take a new pair (S, N - S): S uniform among the untaken coalitions of ``size`` (containing
        ``containing`` when given). Returns S. The pool must be closed under complement."""
        mask = self.draw_of_size(size, containing)
        self.add(~mask)
        return mask

    def open_size(self, sizes) -> int | None:
        """A uniformly random size among ``sizes`` that still have untaken coalitions (None when
        none has); one draw from the pool's generator. In a pool closed under complement a size
        with untaken coalitions has untaken pairs."""
        open_sizes = [s for s in sizes if self.remaining(s) > 0]
        if not open_sizes:
            return None
        return open_sizes[int(self.rng.integers(len(open_sizes)))]

    def draw_uniform_size(self, sizes) -> np.ndarray:
        """A uniform untaken coalition of a size picked by ``open_size``."""
        size = self.open_size(sizes)
        if size is None:
            raise ValueError("every coalition of the allowed sizes is already taken")
        return self.draw_of_size(size)

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
