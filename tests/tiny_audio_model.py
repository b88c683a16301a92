"""A tiny random-weight Qwen2-Audio chat model (audio in, text out) for fast, offline tests.

``build_tiny_audio_model(directory)`` writes a ``Qwen2AudioForConditionalGeneration`` (random weights)
and a ``Qwen2AudioProcessor`` (``WhisperFeatureExtractor`` + byte-level BPE tokenizer + chat template)
into ``directory``; they load back with ``AutoProcessor.from_pretrained(directory)`` /
``Qwen2AudioForConditionalGeneration.from_pretrained(directory)`` (no network, no torchaudio).

* Tokenizer: the tiny text model's byte-level BPE (same corpus, see ``tiny_models``) with five special
  tokens: ``<|im_start|>`` (bos, id 0), ``<|im_end|>`` (eos = pad, id 1), ``<|audio_bos|>`` (2),
  ``<|AUDIO|>`` (3, the audio placeholder, = ``config.audio_token_id``), ``<|audio_eos|>`` (4).
* Chat template (``AUDIO_CHAT_TEMPLATE``): ChatML like Qwen2-Audio-7B-Instruct's, without its default
  system prompt. ``content`` is a string or a list of parts; a text part renders as its text, an
  audio part as ``Audio N: <|audio_bos|><|AUDIO|><|audio_eos|>\\n`` (N counts the clips of the
  conversation from 1, exactly as the real template does; the processor then expands each
  ``<|AUDIO|>`` into one token per 40 ms of audio).
* Feature extractor: ``WhisperFeatureExtractor`` with 80 mel bins, 16 kHz, hop 160 (10 ms), 30 s
  chunks (every clip is padded/truncated to 3000 frames, which the encoder requires:
  ``max_source_positions`` 1500 x conv stride 2), i.e. Qwen2-Audio's geometry except 80 instead of
  128 mel bins.
* Model: audio encoder d_model 64, 2 layers, 4 heads; projector; Qwen2 LM hidden 64, 2 layers,
  4 heads, untied embeddings, ``initializer_range`` 0.2 (as the tiny text model, so greedy answers
  are not one repeated token). The ``lm_head`` rows of the five special tokens and of the tokens
  that do not decode to printable text are zeroed (their logits are exactly 0, the others spread
  over several units), so answers never end early and are one line of printable text.
* Deterministic: the same ``seed`` gives identical weights and tokenizer; the caller's global torch
  RNG is left untouched. Builds in well under a second.
"""

from __future__ import annotations

from pathlib import Path

from tiny_models import IM_END, IM_START, _printable, _train_tokenizer, save_quietly

AUDIO_BOS = "<|audio_bos|>"
AUDIO_TOKEN = "<|AUDIO|>"
AUDIO_EOS = "<|audio_eos|>"
SPECIAL_TOKENS = [IM_START, IM_END, AUDIO_BOS, AUDIO_TOKEN, AUDIO_EOS]  # ids 0..4

# Qwen2-Audio-7B-Instruct's template minus the default system prompt it injects.
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


def build_tiny_audio_model(directory: Path, seed: int = 0, *, hidden_size: int = 64, num_layers: int = 2) -> Path:
    """Build and save a tiny random Qwen2-Audio model + processor into ``directory``; returns it as a Path."""
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    tokenizer = _train_tokenizer(SPECIAL_TOKENS, AUDIO_CHAT_TEMPLATE, 4096, padding_side="left",
                                 additional_special_tokens=[AUDIO_BOS, AUDIO_TOKEN, AUDIO_EOS])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    feature_extractor = WhisperFeatureExtractor(
        feature_size=80, sampling_rate=16000, hop_length=160, chunk_length=30, n_fft=400,
        padding_value=0.0, return_attention_mask=True,
    )
    processor = Qwen2AudioProcessor(
        feature_extractor=feature_extractor, tokenizer=tokenizer, chat_template=AUDIO_CHAT_TEMPLATE,
    )

    config = Qwen2AudioConfig(
        audio_config={
            "model_type": "qwen2_audio_encoder",
            "num_mel_bins": 80,
            "encoder_layers": num_layers,
            "encoder_attention_heads": 4,
            "encoder_ffn_dim": 2 * hidden_size,
            "d_model": hidden_size,
            "max_source_positions": 1500,
            "initializer_range": 0.2,
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": num_layers,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "max_position_embeddings": 4096,
            "initializer_range": 0.2,
            "tie_word_embeddings": False,
            "bos_token_id": ids[IM_START],
            "eos_token_id": ids[IM_END],
            "pad_token_id": ids[IM_END],
        },
        audio_token_index=ids[AUDIO_TOKEN],
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2AudioForConditionalGeneration(config)
    model.eval()
    suppressed = list(ids.values()) + [
        i for i in range(len(tokenizer)) if i not in ids.values() and not _printable(tokenizer.decode([i]))
    ]
    with torch.no_grad():
        model.lm_head.weight[suppressed] = 0.0
    model.generation_config = GenerationConfig(
        bos_token_id=ids[IM_START], eos_token_id=ids[IM_END], pad_token_id=ids[IM_END], do_sample=False,
    )
    save_quietly(model, directory)
    processor.save_pretrained(directory)
    return directory
