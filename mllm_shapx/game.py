"""The cooperative game of one row: ``values(coalitions: bool[m, n]) -> float[m]``.

v(S) = similarity(answer to the prompt reduced to S, answer to the full prompt). Every model call
happens here: unseen coalitions are generated in batched ``generate`` calls (shortest prompts
together, to waste little padding), and each value is cached, so v is computed once per distinct
coalition. v(N) is the full answer compared with itself; v(empty) is really generated.

With audio output (LFM2-Audio) every answer is generated in the same interleaved text+speech mode and
v(S) compares the text streams; the spoken answer to the full prompt is kept (``full_audio``) for the
sample's audio artifacts.
"""

from __future__ import annotations

import hashlib
import time
from typing import Dict, Optional

import numpy as np
from tqdm.auto import tqdm

from .chat import Chat


class ChatGame:
    def __init__(self, model, chat: Chat, scorer, *, max_new_tokens: int, temperature: float = 0.0,
                 top_k: Optional[int] = None, batch_size: int = 16, seed: int = 0, progress: bool = False,
                 output_audio: bool = False):
        self.model = model
        self.chat = chat
        self.scorer = scorer
        self.n_players = chat.n_players
        self.batch_size = batch_size
        self.seed = seed
        self.progress = progress
        self._generation = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_k": top_k}
        if output_audio:
            self._generation["return_audio"] = True
        self.n_calls = 0
        self.model_seconds = 0.0
        self._cache: Dict[bytes, float] = {}
        full = self._key(np.ones(self.n_players, dtype=bool))
        (self.full_answer, self.full_audio), = self._generate([chat.full_prompt], [full])
        self._cache[full] = float(self.scorer.score(self.full_answer, [self.full_answer])[0])

    @staticmethod
    def _key(coalition: np.ndarray) -> bytes:
        return np.packbits(np.asarray(coalition, dtype=bool)).tobytes() + bytes([len(coalition) % 8])

    def _seed_of(self, key: bytes) -> int:
        """Sampling seed of one coalition: fixed by (row seed, coalition), never by the batch."""
        digest = hashlib.blake2b(key, digest_size=8, key=self.seed.to_bytes(8, "little")).digest()
        return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF

    def _generate(self, prompts, keys):
        """(answer token ids, spoken answer or None) per prompt."""
        start = time.perf_counter()
        answers = self.model.generate(prompts, seeds=[self._seed_of(k) for k in keys], **self._generation)
        self.model_seconds += time.perf_counter() - start
        self.n_calls += len(prompts)
        return answers if "return_audio" in self._generation else [(a, None) for a in answers]

    def values(self, coalitions: np.ndarray) -> np.ndarray:
        coalitions = np.atleast_2d(np.asarray(coalitions, dtype=bool))
        if coalitions.shape[1] != self.n_players:
            raise ValueError(f"coalitions have {coalitions.shape[1]} columns, the game has {self.n_players} players")
        keys = [self._key(c) for c in coalitions]
        todo = {k: c for k, c in zip(keys, coalitions) if k not in self._cache}
        if todo:
            self._evaluate(todo)
        return np.asarray([self._cache[k] for k in keys], dtype=np.float64)

    def _evaluate(self, todo: Dict[bytes, np.ndarray]) -> None:
        order = sorted(todo, key=lambda k: int(todo[k].sum()))
        bar = tqdm(total=len(order), desc="coalitions", unit="coal", leave=False, disable=not self.progress)
        for start in range(0, len(order), self.batch_size):
            keys = order[start:start + self.batch_size]
            answers = [ids for ids, _ in self._generate([self.chat.masked(todo[k]) for k in keys], keys)]
            for key, value in zip(keys, self.scorer.score(self.full_answer, answers)):
                self._cache[key] = float(value)
            bar.update(len(keys))
        bar.close()
