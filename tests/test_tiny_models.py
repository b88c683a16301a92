"""The tiny random ChatML model used by fast tests: loading, template, round-trip, batching, seeds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

try:  # works under pytest's default "prepend" import mode (tests/ has no __init__.py)
    from tiny_models import IM_END, IM_START, build_tiny_chat_model
except ImportError:  # importlib mode / run from the repo root
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tiny_models import IM_END, IM_START, build_tiny_chat_model

from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def tokenizer(tiny_dir):
    tok = AutoTokenizer.from_pretrained(tiny_dir)
    tok.padding_side = "left"
    return tok


@pytest.fixture(scope="module")
def model(tiny_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_dir).eval()


def test_special_tokens_and_generation_config(tokenizer, model):
    assert 500 <= len(tokenizer) <= 1000
    bos, eos = tokenizer.convert_tokens_to_ids([IM_START, IM_END])
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (IM_START, IM_END, IM_END)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (bos, eos, eos)
    gc = model.generation_config
    assert (gc.bos_token_id, gc.eos_token_id, gc.pad_token_id) == (bos, eos, eos)
    assert model.config.vocab_size == len(tokenizer)
    assert next(model.parameters()).dtype == torch.float32
    # encode adds no bos/eos of its own
    assert tokenizer("Hi")["input_ids"] == tokenizer.convert_tokens_to_ids(tokenizer.tokenize("Hi"))


def test_chat_template(tokenizer):
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # No default system prompt is injected; without add_generation_prompt nothing is appended.
    user_only = tokenizer.apply_chat_template(messages[1:], tokenize=False)
    assert user_only == "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
    # The special tokens are single tokens in the encoded prompt.
    ids = tokenizer(rendered)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert ids.count(tokenizer.bos_token_id) == 3 and ids.count(tokenizer.eos_token_id) == 2


@pytest.mark.parametrize(
    "text", ["Hello, world! How are you?", "  two  spaces, tabs\tand\nnewlines ", "Héllo — naïve café ✓ 日本"]
)
def test_decode_round_trip(tokenizer, text):
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    if text == "Hello, world! How are you?":
        assert len(ids) < len(text)  # BPE merges learned, not one token per byte


def _prompt(tokenizer, question: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )


def _greedy(model, enc, n=8):
    with torch.no_grad():
        return model.generate(**enc, max_new_tokens=n, do_sample=False)


def test_batched_greedy_with_left_padding_matches_single(tokenizer, model):
    questions = ["What is the capital of France?", "Hello"]
    prompts = [_prompt(tokenizer, q) for q in questions]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    assert lengths[0] != lengths[1]  # really padded
    assert batch["attention_mask"][1, 0] == 0  # on the left

    out = _greedy(model, batch)
    width = batch["input_ids"].shape[1]
    assert out.shape == (2, width + 8)

    answers = []
    for i, prompt in enumerate(prompts):
        alone = tokenizer(prompt, return_tensors="pt")
        single = _greedy(model, alone)
        assert single.shape == (1, alone["input_ids"].shape[1] + 8)
        # Exact token equality. (Logits differ by ~1e-5 between the padded batch and the prompt alone,
        # far below the gap between the top two logits of this model.)
        assert out[i, width:].tolist() == single[0, alone["input_ids"].shape[1]:].tolist()
        answers.append(tokenizer.decode(single[0, alone["input_ids"].shape[1]:], skip_special_tokens=True))

    # Answers are non-empty, printable, and differ between prompts.
    assert all(a.strip() and a.isprintable() and "\ufffd" not in a for a in answers)
    assert answers[0] != answers[1]
    assert tokenizer.eos_token_id not in out[:, width:].tolist()


def test_same_seed_same_model(tmp_path, tiny_dir):
    again = build_tiny_chat_model(tmp_path / "again", seed=0)
    other = build_tiny_chat_model(tmp_path / "other", seed=1)
    w0 = load_file(tiny_dir / "model.safetensors")
    w1 = load_file(again / "model.safetensors")
    w2 = load_file(other / "model.safetensors")
    assert w0.keys() == w1.keys() == w2.keys()
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    assert not all(torch.equal(w0[k], w2[k]) for k in w0)
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json", "generation_config.json"):
        assert (tiny_dir / name).read_bytes() == (again / name).read_bytes()
    assert (tiny_dir / "tokenizer.json").read_bytes() == (other / "tokenizer.json").read_bytes()


def test_build_leaves_global_rng_alone(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_chat_model(tmp_path / "m")
    assert torch.equal(torch.rand(3), expected)
