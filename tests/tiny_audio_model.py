"""The tiny Qwen2-Audio test model: ``mllm_shapx.connectors.tiny_audio`` on the tiny BPE tokenizer.

``build_tiny_audio_model(directory)`` writes a random ``Qwen2AudioForConditionalGeneration`` and its
processor into ``directory`` in well under a second (the packaged ``embedded:Qwen2-Audio-tiny`` uses
SmolLM2's 49k-token tokenizer instead, which takes a few seconds to build). Special tokens (ids
0..4): ``<|im_start|>`` (bos), ``<|im_end|>`` (eos = pad), ``<|audio_bos|>``, ``<|AUDIO|>`` (the
audio placeholder, = ``config.audio_token_id``), ``<|audio_eos|>``.
"""

from __future__ import annotations

from pathlib import Path

from tiny_models import IM_END, IM_START, _train_tokenizer

from mllm_shapx.connectors import tiny_audio
from mllm_shapx.connectors.tiny_audio import AUDIO_BOS, AUDIO_CHAT_TEMPLATE, AUDIO_EOS, AUDIO_TOKEN

SPECIAL_TOKENS = [IM_START, IM_END, AUDIO_BOS, AUDIO_TOKEN, AUDIO_EOS]

__all__ = ["AUDIO_CHAT_TEMPLATE", "AUDIO_TOKEN", "SPECIAL_TOKENS", "build_tiny_audio_model"]


def build_tiny_audio_model(directory: Path, seed: int = 0, *, hidden_size: int = 64, num_layers: int = 2) -> Path:
    tokenizer = _train_tokenizer(SPECIAL_TOKENS, AUDIO_CHAT_TEMPLATE, 4096, padding_side="left",
                                 additional_special_tokens=[AUDIO_BOS, AUDIO_TOKEN, AUDIO_EOS])
    return tiny_audio.build_tiny_audio_model(directory, tokenizer, seed, hidden_size=hidden_size,
                                             num_layers=num_layers)
