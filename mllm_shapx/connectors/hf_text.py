"""``hf_text``: any transformers causal chat LM, generating for many prompts in one batched call.

Prompts are left-padded into one ``generate`` call with per-row seeded sampling (``common.py``), so an
answer depends only on its prompt and seed, not on the other prompts of the batch.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
from transformers import AutoModelForCausalLM, AutoTokenizer

from .common import DTYPES, generate_padded, load_once, resolve_device, stop_ids
from .embedded import is_embedded, resolve_embedded


def load_text_model(model: str, *, revision: Optional[str] = None, dtype: str = "float32",
                    device: Optional[str] = None, trust_remote_code: bool = False) -> "HFTextModel":
    """Load once per process: every job of a sweep running in this process reuses the same model."""
    return load_once(HFTextModel, model, revision=revision, dtype=dtype, device=resolve_device(device),
                     trust_remote_code=trust_remote_code)


class HFTextModel:
    def __init__(self, model: str, *, revision: Optional[str], dtype: str, device: str, trust_remote_code: bool):
        path = resolve_embedded(model) if is_embedded(model) else model
        hub = {"revision": revision, "trust_remote_code": trust_remote_code}
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(path, **hub)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype], **hub).to(device).eval()
        self.eos_ids, self.pad_id = stop_ids(self.tokenizer, self.tokenizer.eos_token_id,
                                             self.model.generation_config.eos_token_id)

    def generate(self, prompts: Sequence[np.ndarray], *, max_new_tokens: int, temperature: float = 0.0,
                 top_k: Optional[int] = None, seeds: Optional[Sequence[int]] = None) -> List[np.ndarray]:
        """Answer token ids per prompt (generation stops at, and excludes, the end-of-turn token)."""
        return generate_padded(self.model, prompts, pad_id=self.pad_id, eos_ids=self.eos_ids, device=self.device,
                               max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, seeds=seeds)
