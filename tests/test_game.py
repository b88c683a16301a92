"""The row game on a real (tiny) transformers model: batching, caching, fixed values."""

from __future__ import annotations

import numpy as np
import pytest

from mllm_shapx.chat import build_chat
from mllm_shapx.connectors.hf_text import load_text_model
from mllm_shapx.game import ChatGame
from mllm_shapx.similarity import TfIdfCosineScorer, tfidf_cosine


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_text_model(str(tiny_model_dir))


def make_game(model, batch_size=8, temperature=0.0, seed=0, text="Why is the sky blue and the grass green?"):
    chat = build_chat(model.tokenizer, [text])
    return ChatGame(model, chat, TfIdfCosineScorer(), max_new_tokens=6, temperature=temperature,
                    top_k=20, batch_size=batch_size, seed=seed)


def random_coalitions(n, m, seed=0):
    return np.random.default_rng(seed).random((m, n)) < 0.5


def test_model_is_loaded_once_per_process(model, tiny_model_dir):
    assert load_text_model(str(tiny_model_dir)) is model


def test_full_coalition_is_one_and_costs_no_extra_call(model):
    game = make_game(model)
    assert game.n_calls == 1  # the full-prompt answer
    assert game.values(np.ones((1, game.n_players), bool))[0] == pytest.approx(1.0)
    assert game.n_calls == 1


def test_each_distinct_coalition_is_generated_once(model):
    game = make_game(model)
    coalitions = random_coalitions(game.n_players, 10)
    first = game.values(np.concatenate([coalitions, coalitions]))
    assert game.n_calls == 1 + len({c.tobytes() for c in coalitions})
    calls = game.n_calls
    again = game.values(coalitions[::-1])
    assert game.n_calls == calls
    assert np.array_equal(again, first[:10][::-1])


def test_empty_coalition_is_really_evaluated(model):
    game = make_game(model)
    value = game.values(np.zeros((1, game.n_players), bool))[0]
    assert game.n_calls == 2
    assert 0.0 <= value <= 1.0


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_value_does_not_depend_on_batch_company(model, temperature):
    coalitions = random_coalitions(make_game(model).n_players, 12, seed=1)
    batched = make_game(model, batch_size=12, temperature=temperature, seed=5).values(coalitions)
    alone_game = make_game(model, batch_size=1, temperature=temperature, seed=5)
    alone = np.concatenate([alone_game.values(c[None]) for c in coalitions[::-1]])[::-1]
    assert np.array_equal(batched, alone)


def test_sampling_is_seeded_per_row(model):
    coalitions = random_coalitions(make_game(model).n_players, 12, seed=2)
    a = make_game(model, temperature=1.0, seed=1)
    b = make_game(model, temperature=1.0, seed=2)
    assert not np.array_equal(a.full_answer, b.full_answer)
    assert not np.array_equal(a.values(coalitions), b.values(coalitions))
    assert np.array_equal(make_game(model, temperature=1.0, seed=1).values(coalitions), a.values(coalitions))


def test_tfidf_cosine_closed_form():
    a, b = np.array([1, 2, 2]), np.array([2, 3])
    # idf: token 2 in both -> 1; tokens 1, 3 in one -> ln(3/2) + 1
    w = np.log(1.5) + 1
    va, vb = np.array([w, 2.0, 0.0]), np.array([0.0, 1.0, w])
    expected = va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb))
    assert tfidf_cosine(a, b) == pytest.approx(expected)
    assert tfidf_cosine(a, a) == pytest.approx(1.0)
    assert tfidf_cosine(a, np.array([7, 8])) == 0.0
    assert tfidf_cosine(np.array([], int), np.array([], int)) == 1.0
    assert tfidf_cosine(a, np.array([], int)) == 0.0
