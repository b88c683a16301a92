"""Chats rendered with the model's own template: roles, players, removal masking."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from mllm_shapx.chat import SYSTEM, USER, build_chat
from mllm_shapx.tokens import is_explainable


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def decode(tokenizer, ids):
    return tokenizer.decode([int(i) for i in ids])


def test_roles_and_players(tokenizer):
    chat = build_chat(tokenizer, ["Hello, world! How are you?"], system_prompt="Be brief.")
    rendered = decode(tokenizer, chat.input_ids)
    assert rendered.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert rendered.endswith("<|im_start|>assistant\n")
    user_text = decode(tokenizer, chat.input_ids[chat.roles == USER])
    assert user_text == "Hello, world! How are you?"
    assert set(chat.roles[chat.roles != USER]) == {SYSTEM}
    players = [decode(tokenizer, [chat.input_ids[p]]) for p in chat.players]
    assert players and all(is_explainable(t) for t in players)
    assert "".join(players).replace(" ", "") == "HelloworldHowareyou"
    assert len(chat.turn_starts) == 3  # system, user, assistant


def test_masking_removes_unkept_players_only(tokenizer):
    chat = build_chat(tokenizer, ["Why is the sky blue?"])
    n = chat.n_players
    assert np.array_equal(chat.masked_ids(np.ones(n, bool)), chat.input_ids)
    empty = chat.masked_ids(np.zeros(n, bool))
    assert len(empty) == len(chat.input_ids) - n
    assert decode(tokenizer, empty).endswith("<|im_start|>user\n?<|im_end|>\n<|im_start|>assistant\n")
    keep_first = np.zeros(n, bool)
    keep_first[0] = True
    assert chat.input_ids[chat.players[0]] in chat.masked_ids(keep_first)
    assert len(chat.masked_ids(keep_first)) == len(empty) + 1


def test_multi_turn_user_players_span_every_turn(tokenizer):
    chat = build_chat(tokenizer, ["The cat sat.", "Where is it now?"])
    assert len(chat.turn_starts) == 3  # user, user, assistant
    assert decode(tokenizer, chat.input_ids[chat.roles == USER]) == "The cat sat.Where is it now?"


@pytest.mark.parametrize(
    "text, expected",
    [("hello", True), (" the", True), ("?", False), (" ,", False), ("...", False), ("\n", False),
     ("«", False), ("", False), ("3", True), ("é", True)],
)
def test_token_filter_on_decoded_text(text, expected):
    assert is_explainable(text) is expected
    assert is_explainable(text, "none") is True


def test_smollm2_template_and_players():
    """The real default tokenizer: SmolLM2 injects its default system prompt when none is given."""
    from mllm_shapx.connectors.embedded import resolve_embedded

    tok = AutoTokenizer.from_pretrained(resolve_embedded("embedded:SmolLM2-135M-Instruct"))
    chat = build_chat(tok, ["What is the capital of France?"])
    assert decode(tok, chat.input_ids).startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert [decode(tok, [chat.input_ids[p]]) for p in chat.players] == ["What", " is", " the", " capital", " of", " France"]


@pytest.mark.parametrize("text", ["You are a helpful", "system", "user"])
def test_user_text_that_also_appears_in_the_template_is_located_in_the_user_turn(text):
    """SmolLM2 injects "You are a helpful AI assistant..." and role names: never mistake them for the user's."""
    from mllm_shapx.connectors.embedded import resolve_embedded

    tok = AutoTokenizer.from_pretrained(resolve_embedded("embedded:SmolLM2-135M-Instruct"))
    chat = build_chat(tok, [text])
    user_turn_start, assistant_turn_start = chat.turn_starts[1], chat.turn_starts[2]
    assert np.all((chat.players > user_turn_start) & (chat.players < assistant_turn_start))
    assert decode(tok, chat.input_ids[chat.roles == USER]) == text
