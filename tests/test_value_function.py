"""The value function: similarities, reducers, modes, external embeddings, normalizers, the grid."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mllm_shapx.chat import build_chat
from mllm_shapx.config import check_config
from mllm_shapx.connectors.hf_text import load_text_model
from mllm_shapx.embeddings import ContextualEncoder, load_external, make_encoder
from mllm_shapx.game import ChatGame
from mllm_shapx.normalizers import normalize
from mllm_shapx.similarity import REDUCERS, SIMILARITIES, EmbeddingScorer, cosine, euclidean

REPO = Path(__file__).resolve().parents[1]
MINILM = "embedded:all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    return load_text_model(str(tiny_model_dir))


class FakeEmbedding:
    """embedding.* as the config gives it."""

    def __init__(self, model_id=None, batch_size=1, l2_normalize=True):
        self.model_id, self.revision, self.local_files_only = model_id, None, False
        self.max_length, self.batch_size, self.l2_normalize = 64, batch_size, l2_normalize


def test_similarities_on_known_vectors():
    u, v = np.array([1.0, 0.0]), np.array([1.0, 1.0])
    assert cosine(u, v) == pytest.approx(1 / np.sqrt(2))
    assert cosine(u, -u) == pytest.approx(-1.0)
    assert cosine(np.zeros(2), v) == 0.0 and cosine(np.zeros(2), np.zeros(2)) == 1.0
    assert euclidean(u, v) == pytest.approx(1 / (1 + 1.0))
    assert euclidean(u, u) == 1.0


def test_reducers_on_known_vectors():
    x = np.array([[1.0, -2.0], [3.0, 4.0]])
    expected = {"MeanReducer": [2, 1], "MaxReducer": [3, 4], "MinReducer": [1, -2], "SumReducer": [4, 2],
                "FirstReducer": [1, -2]}
    for name, value in expected.items():
        assert REDUCERS[name](x).tolist() == value
        assert REDUCERS[name](np.zeros((0, 2))).tolist() == [0, 0]  # empty answer -> zero vector
    assert np.array_equal(REDUCERS["ZeroReducer"](x), x)


def test_zero_reducer_pads_the_shorter_answer_with_zero_vectors():
    class Table:
        n_forward = 0

        def encode(self, answers):
            return [np.ones((len(a), 2)) for a in answers]

    scorer = EmbeddingScorer(Table(), "ZeroReducer", "CosineSimilarity")
    # [1,1,1,1] vs [1,1,0,0] flattened: cosine = 2 / (2 * sqrt(2))
    assert scorer.score(np.array([5, 6]), [np.array([7])])[0] == pytest.approx(1 / np.sqrt(2))
    euclid = EmbeddingScorer(Table(), "ZeroReducer", "EuclideanSimilarity")
    assert euclid.score(np.array([5, 6]), [np.array([7])])[0] == pytest.approx(1 / (1 + np.sqrt(2)))


@pytest.mark.parametrize("mode", ["STATIC", "CONTEXTUAL"])
def test_modes_on_real_model_outputs(model, mode):
    answer = np.asarray(model.tokenizer("the sky is blue", add_special_tokens=False)["input_ids"])
    (vectors,) = make_encoder(mode, FakeEmbedding(), model).encode([answer])
    with torch.inference_mode():
        if mode == "STATIC":
            expected = model.model.get_input_embeddings()(torch.as_tensor(answer)).numpy()
        else:
            expected = model.model(input_ids=torch.as_tensor(answer)[None], output_hidden_states=True
                                   ).hidden_states[-1][0].numpy()
    assert vectors.shape == (len(answer), model.model.config.hidden_size)
    assert np.array_equal(vectors, expected)


def test_external_model_mean_pools_and_normalises(model):
    encoder = make_encoder("CONTEXTUAL", FakeEmbedding(MINILM), model)
    answer = np.asarray(model.tokenizer("the sky is blue", add_special_tokens=False)["input_ids"])
    (vector,) = encoder.encode([answer])
    ext_model, ext_tok = load_external(MINILM, revision=None, local_files_only=False, device="cpu")
    batch = ext_tok([model.tokenizer.decode(answer.tolist())], return_tensors="pt")
    with torch.inference_mode():
        hidden = ext_model(**batch).last_hidden_state[0]
    expected = hidden.mean(0) / hidden.mean(0).norm()
    assert vector.shape == (1, 384)
    assert np.allclose(vector[0], expected.numpy(), atol=1e-6)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-6)


def test_identical_answers_are_embedded_once(model):
    encoder = ContextualEncoder(model, batch_size=1)
    scorer = EmbeddingScorer(encoder, "MeanReducer", "CosineSimilarity")
    ref, a, b = np.array([5, 6, 7]), np.array([5, 6]), np.array([9])
    values = scorer.score(ref, [ref, a, b, a, ref])
    assert values[0] == values[4] == 1.0 and values[1] == values[3]
    assert encoder.n_forward == 3  # reference, a, b
    scorer.score(ref, [b, a])
    assert encoder.n_forward == 3


@pytest.mark.parametrize("mode, reducer, similarity", list(itertools.product(
    ["STATIC", "CONTEXTUAL"], sorted(REDUCERS), sorted(SIMILARITIES))))
def test_empty_one_token_and_unequal_answers_are_finite(model, mode, reducer, similarity):
    scorer = EmbeddingScorer(make_encoder(mode, FakeEmbedding(), model), reducer, similarity)
    ref = np.arange(10, 18)
    values = scorer.score(ref, [np.array([], dtype=np.int64), np.array([11]), np.arange(10, 40), ref])
    assert np.all(np.isfinite(values)) and values[-1] == 1.0
    assert np.all(values <= 1.0 + 1e-12)
    empty_ref = scorer.score(np.array([], dtype=np.int64), [np.array([11]), np.array([], dtype=np.int64)])
    assert np.all(np.isfinite(empty_ref)) and empty_ref[1] == 1.0


@pytest.mark.parametrize("similarity, mode, model_id", [
    ("CosineSimilarity", "CONTEXTUAL", None), ("EuclideanSimilarity", "STATIC", None),
    ("CosineSimilarity", "CONTEXTUAL", MINILM)])
def test_value_is_independent_of_batch_company_and_full_scores_max(model, similarity, mode, model_id):
    chat = build_chat(model.tokenizer, ["Why is the sky blue and the grass green?"])

    def game(batch_size):
        scorer = EmbeddingScorer(make_encoder(mode, FakeEmbedding(model_id), model), "MeanReducer", similarity)
        return ChatGame(model, chat, scorer, max_new_tokens=6, batch_size=batch_size, seed=3)

    coalitions = np.random.default_rng(4).random((10, chat.n_players)) < 0.5
    together = game(10).values(coalitions)
    alone_game = game(1)
    alone = np.concatenate([alone_game.values(c[None]) for c in coalitions[::-1]])[::-1]
    assert np.array_equal(together, alone)
    full = alone_game.values(np.ones((1, chat.n_players), bool))[0]
    assert full == 1.0 and np.all(together <= full)


def test_normalizer_formulas():
    phi = np.array([0.5, -0.25, 0.25])
    assert normalize("AbsSumNormalizer", phi).tolist() == [0.5, -0.25, 0.25]
    assert normalize("AbsSumNormalizer", np.zeros(3)).tolist() == [0, 0, 0]
    assert normalize("IdentityNormalizer", phi).tolist() == phi.tolist()
    assert normalize("MinMaxNormalizer", phi) == pytest.approx([0.6, 0.0, 0.4])  # [1, 0, 2/3] / (5/3)
    assert normalize("MinMaxNormalizer", np.ones(4)).tolist() == [0.25] * 4
    shifted = np.array([0.75, 0.0, 0.5]) ** 2
    assert normalize("PowerShiftNormalizer", phi, power=2.0) == pytest.approx(shifted / shifted.sum())
    assert normalize("PowerShiftNormalizer", np.ones(2), power=3.0).tolist() == [0.5, 0.5]


def test_package_grid_presets_are_the_generators_output(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    from make_package_grid import write_grid

    fresh = {p.name: p.read_text() for p in write_grid(tmp_path)}
    committed = {p.name: p.read_text() for p in (REPO / "conf" / "experiment").glob("package_grid_*.yaml")}
    assert len(fresh) == 54 and fresh == committed


def test_package_grid_presets_compose(compose_cfg):
    names = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("package_grid_*.yaml"))
    for name in names[::9]:
        cfg = compose_cfg(f"+experiment={name}")
        assert cfg.shap.name == name.removeprefix("package_grid_")
        assert check_config(cfg) == []
        assert (cfg.embedding.model_id == MINILM) == name.startswith("package_grid_external")
