"""Normalizers applied to attributions after estimation (the raw values are kept as well)."""

from __future__ import annotations

import numpy as np


def abs_sum(phi: np.ndarray, power: float = 1.0) -> np.ndarray:
    total = np.abs(phi).sum()
    return phi / total if total > 0 else phi.copy()


def identity(phi: np.ndarray, power: float = 1.0) -> np.ndarray:
    return phi.copy()


def min_max(phi: np.ndarray, power: float = 1.0) -> np.ndarray:
    """(phi - min) / (max - min), then divided by its sum; all equal -> 1/n each."""
    spread = phi.max() - phi.min() if len(phi) else 0.0
    if spread == 0:
        return np.full_like(phi, 1.0 / len(phi)) if len(phi) else phi.copy()
    scaled = (phi - phi.min()) / spread
    return scaled / scaled.sum()


def power_shift(phi: np.ndarray, power: float = 1.0) -> np.ndarray:
    """(phi - min)^p / sum (phi - min)^p; all equal -> 1/n each."""
    shifted = (phi - phi.min()) ** power if len(phi) else phi.copy()
    total = shifted.sum()
    if total == 0:
        return np.full_like(phi, 1.0 / len(phi)) if len(phi) else phi.copy()
    return shifted / total


NORMALIZERS = {
    "AbsSumNormalizer": abs_sum,
    "IdentityNormalizer": identity,
    "MinMaxNormalizer": min_max,
    "PowerShiftNormalizer": power_shift,
}


def normalize(name: str, phi: np.ndarray, power: float = 1.0) -> np.ndarray:
    return NORMALIZERS[name](np.asarray(phi, dtype=np.float64), power)
