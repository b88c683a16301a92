"""How similar an answer stays to the full-prompt answer: the value of a coalition.

A scorer compares answers (token id arrays) with the reference answer one pair at a time, so a score
is a fixed function of the two answers. Rules shared by every similarity:

- identical answers (same token ids) score exactly 1, without being embedded;
- ``TfIdfCosineSimilarity`` works on token ids (``shap.mode`` and ``shap.reducer`` do not apply);
- the embedding similarities represent an answer by its token vectors (``shap.mode`` or an external
  model, see ``embeddings``), reduced to one vector by ``shap.reducer``; an empty answer reduces to
  the zero vector;
- ``CosineSimilarity`` of a zero vector with a non-zero one is 0 (two zero vectors: 1); ``EuclideanSimilarity`` is
  1 / (1 + distance), so it lies in (0, 1] and never divides by zero;
- ``ZeroReducer`` keeps the token sequence: the shorter answer is padded with zero vectors to the
  longer one's length and the flattened sequences are compared, so extra or missing tokens lower
  the score (cosine: as orthogonal zeros; Euclidean: by their vectors' norms).
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Dict, Sequence

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


def cosine(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
    if nu == 0.0 or nv == 0.0:
        return 1.0 if nu == nv else 0.0
    return float(np.clip(np.dot(u.ravel(), v.ravel()) / (nu * nv), -1.0, 1.0))


def euclidean(u: np.ndarray, v: np.ndarray) -> float:
    return float(1.0 / (1.0 + np.linalg.norm(u.ravel() - v.ravel())))


SIMILARITIES: Dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "CosineSimilarity": cosine,
    "EuclideanSimilarity": euclidean,
}


def _pooled(fn):
    def reduce(vectors: np.ndarray) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float64)
        return fn(vectors) if len(vectors) else np.zeros(vectors.shape[-1])
    return reduce


REDUCERS: Dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "MeanReducer": _pooled(lambda x: x.mean(axis=0)),
    "MaxReducer": _pooled(lambda x: x.max(axis=0)),
    "MinReducer": _pooled(lambda x: x.min(axis=0)),
    "SumReducer": _pooled(lambda x: x.sum(axis=0)),
    "FirstReducer": _pooled(lambda x: x[0]),
    "ZeroReducer": lambda x: np.asarray(x, dtype=np.float64),
}


def _zero_padded(u: np.ndarray, v: np.ndarray):
    """Sequences (ZeroReducer) padded with zero vectors to a common length."""
    if u.ndim == 1:
        return u, v
    width = max(len(u), len(v))
    pad = lambda x: np.vstack([x, np.zeros((width - len(x), x.shape[1]))]) if len(x) < width else x
    return pad(u), pad(v)


class TfIdfCosineScorer:
    def score(self, reference: np.ndarray, answers: Sequence[np.ndarray]) -> np.ndarray:
        return np.asarray([tfidf_cosine(reference, answer) for answer in answers], dtype=np.float64)


class EmbeddingScorer:
    """Reduced answer representations compared by cosine or Euclidean similarity.

    Representations are cached per distinct answer, so an answer that many coalitions produce is
    embedded once; the reference answer too.
    """

    def __init__(self, encoder, reducer: str, similarity: str):
        self.encoder = encoder
        self.reduce = REDUCERS[reducer]
        self.similarity = SIMILARITIES[similarity]
        self._cache: Dict[bytes, np.ndarray] = {}

    def _representations(self, answers: Sequence[np.ndarray]):
        todo = {}
        for answer in answers:
            key = np.asarray(answer, dtype=np.int64).tobytes()
            if key not in self._cache:
                todo[key] = np.asarray(answer, dtype=np.int64)
        for key, vectors in zip(todo, self.encoder.encode(list(todo.values()))):
            self._cache[key] = self.reduce(vectors)
        return [self._cache[np.asarray(a, dtype=np.int64).tobytes()] for a in answers]

    def score(self, reference: np.ndarray, answers: Sequence[np.ndarray]) -> np.ndarray:
        out = np.ones(len(answers), dtype=np.float64)
        different = [i for i, answer in enumerate(answers) if not np.array_equal(answer, reference)]
        if different:
            ref, *reps = self._representations([reference] + [answers[i] for i in different])
            for i, rep in zip(different, reps):
                out[i] = self.similarity(*_zero_padded(ref, rep))
        return out


def make_scorer(shap_cfg, chat_model=None, embedding_cfg=None):
    """The scorer for ``shap.similarity`` (+ ``shap.mode``/``shap.reducer``/``embedding.*``)."""
    name = getattr(shap_cfg.similarity, "value", shap_cfg.similarity)
    if name == "TfIdfCosineSimilarity":
        return TfIdfCosineScorer()
    if name not in SIMILARITIES:
        raise ValueError(f"shap.similarity: unknown similarity {name!r}")
    from .embeddings import make_encoder

    mode = getattr(shap_cfg.mode, "value", shap_cfg.mode)
    reducer = getattr(shap_cfg.reducer, "value", shap_cfg.reducer)
    return EmbeddingScorer(make_encoder(mode, embedding_cfg, chat_model), reducer, name)
