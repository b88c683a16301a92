"""A tiny random-weight ChatML chat model for fast, offline tests.

``build_tiny_chat_model(directory)`` writes a Llama causal LM (random weights, hidden 64, 2 layers by
default) and a byte-level BPE tokenizer into ``directory``; both load back with
``AutoTokenizer.from_pretrained(directory)`` / ``AutoModelForCausalLM.from_pretrained(directory)``.

* Tokenizer: byte-level BPE trained (in milliseconds) on the fixed corpus below, vocabulary
  at most ``TINY_VOCAB_SIZE`` (761 with this corpus: the merges run out); special tokens ``<|im_start|>`` (bos, id 0) and ``<|im_end|>`` (eos = pad, id 1).
  ``ByteLevel(add_prefix_space=False)`` pre-tokenizer and ``ByteLevel`` decoder, so any text round-trips
  exactly through encode/decode. No bos/eos is added by ``encode``. The ChatML chat template is
  SmolLM2's without its default system prompt (none is injected when the conversation has none).
* Model: ``LlamaForCausalLM`` with untied embeddings, fp32, ``initializer_range`` 0.2 (the usual 0.02
  gives near-flat logits, so greedy decoding collapses into repeating a single token).
* The ``lm_head`` rows of both special tokens are zeroed, so their logits are exactly 0 while the
  other logits are random with a spread of ~1.6 and a maximum of ~4-5: greedy decoding never picks
  them (and sampling almost never). Without this a random model that emits ``<|im_end|>`` first would
  give an empty answer, and every test that looks at answers would depend on luck. Answers therefore
  run to ``max_new_tokens``; a test that needs an early stop can pass its own ``eos_token_id``.
  The same is done for the tokens that do not decode to printable text on their own (the 128 lone
  non-ASCII bytes, which decode to U+FFFD, and the control characters, newline included), so answers
  are one line of printable text whose per-token decodes concatenate to the full decode.
* Left padding: greedy ``generate`` on a left-padded batch gives exactly the tokens of each prompt
  alone (``generate`` derives ``position_ids`` from the attention mask; logits differ only by ~1e-5,
  from reduction order over the longer, masked key length). A plain forward call does NOT derive
  ``position_ids`` from the mask, but this model cannot show it: RoPE depends only on relative
  positions, so a uniform shift of all positions changes logits by ~1e-5 too. A test meant to catch
  missing ``position_ids`` needs an absolute-position model (e.g. GPT-2).
* Deterministic: the same ``seed`` gives identical weights and an identical tokenizer. The global
  torch RNG state of the caller is left untouched.
"""

from __future__ import annotations

from pathlib import Path

from mllm_shapx.connectors.tiny_audio import printable

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
TINY_VOCAB_SIZE = 768

# SmolLM2-Instruct's ChatML template minus the default system prompt it injects.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CORPUS = [
    "Hello, world! How are you today?",
    "I am fine, thank you. And you?",
    "What is the capital of France? The capital of France is Paris.",
    "The quick brown fox jumps over the lazy dog.",
    "Please explain why the sky is blue during the day.",
    "Sunlight is scattered by the air, and blue light is scattered the most.",
    "Can you write a short poem about the sea and the moon?",
    "The movie was wonderful, but the ending was a little sad.",
    "I did not like the food at that restaurant; it was cold and bland.",
    "Translate this sentence into French, please.",
    "My favourite colours are green, red and yellow.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "She reads a new book every week and writes notes in the margins.",
    "They walked to the station in the rain and missed the last train.",
    "Summarise the following paragraph in one sentence.",
    "Is this review positive or negative? Answer with one word.",
    "The children played football in the park after school.",
    "A cat sat on the mat, and a dog slept by the door.",
    "Numbers: one, two, three, four, five, six, seven, eight, nine, ten.",
    "How many legs does a spider have? A spider has eight legs.",
    "You are a helpful assistant. Answer the question briefly and clearly.",
    "The weather will be sunny tomorrow, with a light wind from the west.",
    "Music helps me relax when I am tired after a long day of work.",
    "Who wrote this letter, and why was it never sent?",
    "Learning a language takes time, patience and a lot of practice.",
    "The train leaves at 9:45 and arrives at 12:30 (if it is on time).",
    "Shapley values share the credit for an answer among the words of the prompt.",
    "Which word in the question matters most for the model's answer?",
]


def _train_tokenizer(special_tokens=(IM_START, IM_END), chat_template=None, model_max_length=512, **extra):
    """Byte-level BPE on CORPUS with ``special_tokens`` first (ids 0, 1, ...), as a fast HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        min_frequency=1,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte, so any text encodes
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=IM_END,
        chat_template=chat_template or CHATML_TEMPLATE,
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
        **extra,
    )


def save_quietly(model, directory: Path) -> None:
    """save_pretrained without the "Writing model shards" bar in every test's output."""
    from transformers.utils import logging as hf_logging

    progress_bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(directory)
    finally:
        if progress_bars:
            hf_logging.enable_progress_bar()


def build_tiny_chat_model(
    directory: Path, *, seed: int = 0, hidden_size: int = 64, num_layers: int = 2
) -> Path:
    """Build and save a tiny random ChatML chat model (tokenizer + Llama LM) into ``directory``.

    Returns ``directory`` as a ``Path``. Same ``seed`` -> identical files' contents (weights and
    tokenizer). ``hidden_size`` must be a multiple of 4 (4 attention heads).
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    tokenizer = _train_tokenizer()
    bos_id = tokenizer.convert_tokens_to_ids(IM_START)
    eos_id = tokenizer.convert_tokens_to_ids(IM_END)

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        initializer_range=0.2,
        tie_word_embeddings=False,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        dtype="float32",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.eval()
    suppressed = [bos_id, eos_id] + [
        i for i in range(len(tokenizer)) if not printable(tokenizer.decode([i]))
    ]
    with torch.no_grad():
        # Logit exactly 0 for these (the rest spread over several units): see module docstring.
        model.lm_head.weight[suppressed] = 0.0
    model.generation_config = GenerationConfig(
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        do_sample=False,
    )
    save_quietly(model, directory)
    tokenizer.save_pretrained(directory)
    return directory
