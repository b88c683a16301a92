"""Answer representations: token vectors of an answer, for the embedding similarities.

- ``STATIC``: the chat model's input-embedding vectors of the answer tokens.
- ``CONTEXTUAL``: the chat model's last hidden states over the answer tokens, the answer encoded on
  its own (without the prompt, as in the original), so v(S) depends only on the answer.
- external (``embedding.model_id`` set, replaces the mode): a sentence-embedding model over the
  decoded answer text, mean-pooled (optionally L2-normalised) into one vector.

Encoders run ``batch_size`` answers per forward pass. With 1 (the default) every answer is encoded
alone, so its vectors are bit-for-bit independent of which other answers were evaluated; larger
batches are faster but change the floats in about the 5th significant digit (measured 2.6e-5 on the
hidden states of SmolLM2), i.e. v(S) then depends on its batch at that level.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from .connectors.common import padded
from .connectors.embedded import is_embedded, resolve_embedded


class _Encoder:
    """Counts forward passes (``n_forward``) so tests can check that answers are encoded once."""

    def __init__(self, batch_size: int = 1):
        self.batch_size = max(1, int(batch_size))
        self.n_forward = 0

    def encode(self, answers: Sequence[np.ndarray]) -> List[np.ndarray]:
        out: List[np.ndarray] = []
        for start in range(0, len(answers), self.batch_size):
            out += self._encode_batch(answers[start:start + self.batch_size])
        return out

    def _encode_batch(self, answers: Sequence[np.ndarray]) -> List[np.ndarray]:
        raise NotImplementedError


def _text_model(chat_model):
    """The connector's language model (LFM2-Audio keeps it apart from its audio modules)."""
    return getattr(chat_model, "text_model", chat_model.model)


class StaticEncoder(_Encoder):
    def __init__(self, chat_model, batch_size: int = 1):
        super().__init__(batch_size)
        self.table = _text_model(chat_model).get_input_embeddings()

    def _encode_batch(self, answers):
        with torch.inference_mode():
            return [self.table(torch.as_tensor(a, dtype=torch.long).to(self.table.weight.device))
                    .float().cpu().numpy() for a in answers]


class ContextualEncoder(_Encoder):
    def __init__(self, chat_model, batch_size: int = 1):
        super().__init__(batch_size)
        self.model = _text_model(chat_model)
        self.pad_id = chat_model.pad_id
        self.device = chat_model.device

    def _encode_batch(self, answers):
        nonempty = [a for a in answers if len(a)]
        states = iter([])
        if nonempty:
            ids, mask = padded(nonempty, self.pad_id, "right")
            with torch.inference_mode():
                out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                                 output_hidden_states=True)
            self.n_forward += 1
            last = out.hidden_states[-1].float().cpu().numpy()
            states = iter([last[row, :len(a)] for row, a in enumerate(nonempty)])
        width = self.model.get_input_embeddings().embedding_dim
        return [next(states) if len(a) else np.zeros((0, width), np.float32) for a in answers]


class ExternalEncoder(_Encoder):
    """A sentence-embedding model (e.g. all-MiniLM-L6-v2) over the decoded answer text."""

    def __init__(self, model, tokenizer, decode, *, max_length: int, l2_normalize: bool, batch_size: int,
                 device: str):
        super().__init__(batch_size)
        self.model, self.tokenizer, self.decode = model, tokenizer, decode
        self.max_length, self.l2_normalize, self.device = max_length, l2_normalize, device

    def _encode_batch(self, answers):
        texts = [self.decode(a.tolist()) for a in answers]
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(self.device)
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
        self.n_forward += 1
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        if self.l2_normalize:
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return [row[None, :] for row in pooled.float().cpu().numpy()]


_EXTERNAL: Dict[tuple, tuple] = {}


def load_external(model_id: str, *, revision: Optional[str], local_files_only: bool, device: str):
    """(model, tokenizer), loaded once per process like the chat model."""
    from transformers import AutoModel, AutoTokenizer

    key = (model_id, revision, local_files_only, device)
    if key not in _EXTERNAL:
        path = resolve_embedded(model_id) if is_embedded(model_id) else model_id
        kwargs = {"revision": revision, "local_files_only": local_files_only}
        tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        model = AutoModel.from_pretrained(path, **kwargs).to(device).eval()
        _EXTERNAL[key] = (model, tokenizer)
    return _EXTERNAL[key]


def make_encoder(mode: str, embedding_cfg, chat_model) -> _Encoder:
    if embedding_cfg is not None and embedding_cfg.model_id:
        model, tokenizer = load_external(embedding_cfg.model_id, revision=embedding_cfg.revision,
                                         local_files_only=embedding_cfg.local_files_only,
                                         device=chat_model.device)
        return ExternalEncoder(model, tokenizer, chat_model.tokenizer.decode,
                               max_length=embedding_cfg.max_length, l2_normalize=embedding_cfg.l2_normalize,
                               batch_size=embedding_cfg.batch_size, device=chat_model.device)
    batch_size = embedding_cfg.batch_size if embedding_cfg is not None else 1
    if mode == "STATIC":
        return StaticEncoder(chat_model, batch_size)
    if mode == "CONTEXTUAL":
        return ContextualEncoder(chat_model, batch_size)
    raise ValueError(f"shap.mode: unknown mode {mode!r}")
