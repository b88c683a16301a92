"""What every connector shares: device and dtype, stop tokens, the load-once cache, padded batched ``generate``.

Sampling (``temperature > 0``) draws each row's tokens from its own seeded generator, so an answer
depends only on its prompt and seed, not on the other prompts of the batch.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import torch
from transformers import GenerationConfig, LogitsProcessor

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}
_LOADED: Dict[Tuple, Any] = {}


def resolve_device(device: Optional[str]) -> str:
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was requested but torch sees no CUDA device; use device=cpu or null")
    return device


def load_once(cls, *args, **kwargs):
    """``cls(*args, **kwargs)``, built once per process: every job of a sweep in this process reuses it."""
    key = (cls, args, tuple(sorted(kwargs.items())))
    if key not in _LOADED:
        _LOADED[key] = cls(*args, **kwargs)
    return _LOADED[key]


def stop_ids(tokenizer, *candidates) -> Tuple[Set[int], int]:
    """``(eos_ids, pad_id)``: every token named as an end (ints or lists; None skipped) and the pad id.

    A chat model may name its end of turn only in its generation config (Qwen2-Audio-Instruct, Gemma-2-it,
    some Llama-3-Instruct), so callers pass the tokenizer's eos and the generation config's: stop at any.
    """
    eos_ids: Set[int] = set()
    for eos in candidates:
        if eos is not None:
            eos_ids.update(int(e) for e in (eos if isinstance(eos, (list, tuple, set)) else [eos]))
    if not eos_ids:
        raise ValueError("neither the tokenizer nor the generation config names an eos token")
    pad = tokenizer.pad_token_id
    return eos_ids, pad if pad is not None else min(eos_ids)


def padded(rows: Sequence[Sequence[int]], pad_id: int, side: str = "left") -> Tuple[torch.Tensor, torch.Tensor]:
    """``(ids, attention mask)`` [rows, longest]: left for ``generate``, right for a plain forward pass."""
    width = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
        ids[i, span] = torch.as_tensor(row, dtype=torch.long)
        mask[i, span] = 1
    return ids, mask


class _SeededSampler(LogitsProcessor):
    """Samples each row with its own generator and forces that token, so greedy search emits it."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_k: Optional[int], device: str):
        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        self.temperature = temperature
        self.top_k = top_k

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float() / self.temperature
        if self.top_k:
            kth = torch.topk(logits, min(self.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        chosen = torch.stack([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, self.generators)])
        forced = torch.full_like(scores, float("-inf"))
        return forced.scatter(1, chosen, 0.0)


def generation_args(*, pad_id: int, eos_ids, device: str, n_rows: int, max_new_tokens: int,
                    temperature: float, top_k: Optional[int], seeds: Optional[Sequence[int]]) -> dict:
    """``generate`` keyword arguments: greedy, or per-row seeded sampling."""
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id,
                              eos_token_id=sorted(eos_ids))
    processors = []
    if temperature > 0:
        seeds = seeds if seeds is not None else [0] * n_rows
        processors.append(_SeededSampler(seeds, temperature, top_k, device))
    return {"generation_config": config, "logits_processor": processors}


def trim_at_eos(tokens: np.ndarray, eos_ids) -> np.ndarray:
    """Answer ids up to (excluding) the first end-of-turn token."""
    for i, token in enumerate(tokens):
        if int(token) in eos_ids:
            return tokens[:i].astype(np.int64)
    return tokens.astype(np.int64)


def generate_padded(model, rows: Sequence[Sequence[int]], *, pad_id: int, eos_ids, device: str,
                    max_new_tokens: int, temperature: float, top_k: Optional[int], seeds: Optional[Sequence[int]],
                    embed: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> List[np.ndarray]:
    """Answer ids per row from ONE left-padded ``generate`` call; ``embed(input_ids)`` gives ``inputs_embeds``."""
    if not rows:
        return []
    ids, mask = padded(rows, pad_id, "left")
    ids, mask = ids.to(device), mask.to(device)
    args = generation_args(pad_id=pad_id, eos_ids=eos_ids, device=device, n_rows=len(rows),
                           max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, seeds=seeds)
    with torch.inference_mode():
        if embed is not None:
            args["inputs_embeds"] = embed(ids)
        out = model.generate(input_ids=ids, attention_mask=mask, **args)
    return [trim_at_eos(row, eos_ids) for row in out[:, ids.shape[1]:].cpu().numpy()]
