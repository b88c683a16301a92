"""``hf_text``: any transformers causal chat LM, generating for many prompts in one batched call.

Prompts are left-padded into one ``generate`` call. Sampling (``temperature > 0``) draws each row's
tokens from its own seeded generator, so an answer depends only on its prompt and seed, not on the
other prompts of the batch.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LogitsProcessor

from .embedded import is_embedded, resolve_embedded

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": "auto"}
_LOADED: Dict[Tuple, "HFTextModel"] = {}


def resolve_device(device: Optional[str]) -> str:
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was requested but torch sees no CUDA device; use device=cpu or null")
    return device


def load_text_model(model: str, *, revision: Optional[str] = None, dtype: str = "float32",
                    device: Optional[str] = None, trust_remote_code: bool = False) -> "HFTextModel":
    """Load once per process: every job of a sweep running in this process reuses the same model."""
    device = resolve_device(device)
    key = (model, revision, dtype, device, trust_remote_code)
    if key not in _LOADED:
        _LOADED[key] = HFTextModel(model, revision=revision, dtype=dtype, device=device,
                                   trust_remote_code=trust_remote_code)
    return _LOADED[key]


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
    """``generate`` keyword arguments shared by the connectors: greedy, or per-row seeded sampling."""
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


class HFTextModel:
    def __init__(self, model: str, *, revision: Optional[str], dtype: str, device: str, trust_remote_code: bool):
        path = resolve_embedded(model) if is_embedded(model) else model
        common = {"revision": revision, "trust_remote_code": trust_remote_code}
        self.name = model
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(path, **common)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=_DTYPES[dtype], **common).to(device).eval()
        eos = self.tokenizer.eos_token_id
        if eos is None:
            eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)

    def generate(self, prompts: Sequence[np.ndarray], *, max_new_tokens: int, temperature: float = 0.0,
                 top_k: Optional[int] = None, seeds: Optional[Sequence[int]] = None) -> List[np.ndarray]:
        """Answer token ids per prompt (generation stops at, and excludes, the end-of-turn token)."""
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt):] = torch.as_tensor(prompt)
            attention[row, width - len(prompt):] = 1
        args = generation_args(pad_id=self.pad_id, eos_ids=self.eos_ids, device=self.device,
                               n_rows=len(prompts), max_new_tokens=max_new_tokens, temperature=temperature,
                               top_k=top_k, seeds=seeds)
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids.to(self.device),
                                      attention_mask=attention.to(self.device), **args)
        return [trim_at_eos(row, self.eos_ids) for row in out[:, width:].cpu().numpy()]
