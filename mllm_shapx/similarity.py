"""How similar an answer stays to the full-prompt answer: the value of a coalition.

A scorer compares a batch of answers (token id arrays) with the reference answer, one pair at a
time, so a score is a fixed function of the two answers and never depends on the batch.
Embedding-based similarities (CONTEXTUAL/STATIC modes, reducers) plug in behind the same
``score(reference, answers)`` call.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np


def tfidf_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of TF-IDF vectors over token ids, with the IDF fitted on these two answers only.

    Smooth IDF as in scikit-learn: idf(t) = ln((1 + 2) / (1 + df(t))) + 1. Two empty answers are
    identical (1.0); an empty answer against a non-empty one scores 0.0.
    """
    if len(a) == 0 and len(b) == 0:
        return 1.0
    if len(a) == 0 or len(b) == 0:
        return 0.0
    ca, cb = Counter(a.tolist()), Counter(b.tolist())
    if ca == cb:
        return 1.0  # exactly, not up to rounding: identical answers score the maximum
    idf = {t: np.log(3.0 / (1.0 + (t in ca) + (t in cb))) + 1.0 for t in ca.keys() | cb.keys()}
    dot = sum(ca[t] * cb[t] * idf[t] ** 2 for t in ca.keys() & cb.keys())
    norm_a = np.sqrt(sum((c * idf[t]) ** 2 for t, c in ca.items()))
    norm_b = np.sqrt(sum((c * idf[t]) ** 2 for t, c in cb.items()))
    return float(min(1.0, dot / (norm_a * norm_b)))


class TfIdfCosineScorer:
    def score(self, reference: np.ndarray, answers: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray([tfidf_cosine(reference, answer) for answer in answers], dtype=np.float64)


def make_scorer(shap_cfg, model=None):
    """The scorer for ``shap.similarity`` (``model`` serves the embedding modes)."""
    name = getattr(shap_cfg.similarity, "value", shap_cfg.similarity)
    if name == "TfIdfCosineSimilarity":
        return TfIdfCosineScorer()
    raise ValueError(f"shap.similarity: {name} is not available yet")
