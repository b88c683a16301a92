"""Explain one row: chat -> game -> estimator -> normalizer -> the sample record (SPEC §6 schema)."""

from __future__ import annotations

import time
import zlib
from typing import Any, Dict, List

import numpy as np

from .chat import ASSISTANT, AUDIO, TEXT, Chat, build_chat
from .data import Row
from .estimators import estimate
from .game import ChatGame
from .normalizers import normalize
from .similarity import make_scorer


def row_seed(seed: int, row_index: int, run_slug: str) -> int:
    """Per-row randomness from (seed, row, run): a resumed run redraws exactly the same coalitions."""
    entropy = [seed, row_index, zlib.crc32(run_slug.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def chat_for(row: Row, model, cfg) -> Chat:
    return build_chat(model.tokenizer, row.texts, cfg.connector.system_prompt, cfg.shap.token_filter.value)


def explain_row(row: Row, model, cfg, run_slug: str, *, progress: bool = False) -> Dict[str, Any]:
    started = time.perf_counter()
    chat = chat_for(row, model, cfg)
    if chat.n_players == 0:
        raise ValueError(f"row {row.index} has no explainable tokens")
    seed = row_seed(cfg.seed, row.index, run_slug)
    shap, gen = cfg.shap, cfg.generation
    game = ChatGame(
        model, chat, make_scorer(shap, model, cfg.embedding), max_new_tokens=gen.max_new_tokens,
        temperature=gen.text_temperature, top_k=gen.text_top_k, batch_size=gen.batch_size,
        seed=seed, progress=progress,
    )
    result = estimate(
        shap.explainer_type.value, game.values, chat.n_players, num_samples=shap.num_samples,
        fraction=shap.fraction, linear=shap.linear, seed=seed, **estimator_options(shap, chat),
    )
    n = chat.n_players
    v_full, v_empty = game.values(np.stack([np.ones(n, bool), np.zeros(n, bool)]))
    raw = np.asarray(result.values, dtype=np.float64)
    shown = normalize(shap.normalizer.value, raw, shap.power)
    sample = {
        "row_index": row.index,
        "language": row.language,
        "original_language": row.original_language,
        "runtime_sec": time.perf_counter() - started,
        "n_calls": game.n_calls,
        "prompt_texts": list(row.texts),
        "input_modality": cfg.modality.input_modality.value,
        "output_modality": cfg.modality.output_modality.value,
        "attr_summary": attr_summary(chat, shown),
        "conversation": conversation(chat, game.full_answer, shown, model.tokenizer),
        **result.extras,
        # additions to the original's schema
        "explainer_type": shap.explainer_type.value,
        "estimand": shap.estimand.value,
        "normalizer": shap.normalizer.value,
        "n_players": n,
        "n_evaluations": result.n_evaluations,
        "player_tokens": [model.tokenizer.decode([int(chat.input_ids[p])]) for p in chat.players],
        "shap_values": shown.tolist(),
        "raw_shap_values": raw.tolist(),
        "shap_stderr": None if result.stderr is None else np.asarray(result.stderr, dtype=float).tolist(),
        "value_full": float(v_full),
        "value_empty": float(v_empty),
        "efficiency_gap": float(raw.sum() - (v_full - v_empty)),
        "answer_text": model.tokenizer.decode(game.full_answer.tolist()),
        "model_time_sec": game.model_seconds,
        "seed": seed,
    }
    return sample


HIERARCHICAL_KEYS = ("k", "shap_type", "shap_num_samples", "shap_fraction", "first_layer_type",
                     "first_layer_num_samples", "first_layer_fraction", "importance_min_fraction")


def estimator_options(shap, chat: Chat) -> Dict[str, Any]:
    """Estimator keyword options from ``shap.*``; hierarchical also gets the turn/modality boundaries."""
    options: Dict[str, Any] = {"estimand": shap.estimand.value}
    kind = shap.explainer_type.value
    if kind.endswith("_cc") or kind.endswith("_neyman"):
        options["control_variate"] = shap.control_variate
    if kind == "hierarchical":
        for key in HIERARCHICAL_KEYS:
            value = shap[key]
            options[key] = value.value if hasattr(value, "value") else value
        options["segments"] = chat.player_segments
    return options


def attr_summary(chat: Chat, values: np.ndarray) -> Dict[str, Any]:
    kinds = chat.content_types[chat.players]
    abs_text = float(np.abs(values[kinds == TEXT]).sum())
    abs_audio = float(np.abs(values[kinds == AUDIO]).sum())
    total = abs_text + abs_audio
    return {
        "abs_sum_text": abs_text,
        "abs_sum_audio": abs_audio,
        "frac_text": abs_text / total if total > 0 else 0.0,
        "frac_audio": abs_audio / total if total > 0 else 0.0,
        "count_text_tokens": int((kinds == TEXT).sum()),
        "count_audio_segments": int((kinds == AUDIO).sum()),
    }


def conversation(chat: Chat, answer: np.ndarray, values: np.ndarray, tokenizer) -> List[List[Dict[str, Any]]]:
    """Turns of entries ``{content_type, roles, content, shap_values}``; the answer closes the last turn."""
    ids = np.concatenate([chat.input_ids, answer])
    roles = np.concatenate([chat.roles, np.full(len(answer), ASSISTANT)])
    kinds = np.concatenate([chat.content_types, np.full(len(answer), TEXT)])
    shap: List[Any] = [None] * len(ids)
    for position, value in zip(chat.players, values):
        shap[int(position)] = float(value)
    bounds = list(chat.turn_starts) + [len(ids)]
    turns = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        entries, begin = [], start
        for pos in range(start + 1, end + 1):
            if pos == end or kinds[pos] != kinds[begin]:
                entries.append({
                    "content_type": int(kinds[begin]),
                    "roles": [int(r) for r in roles[begin:pos]],
                    "content": [tokenizer.decode([int(t)]) for t in ids[begin:pos]],
                    "shap_values": shap[begin:pos],
                })
                begin = pos
        turns.append(entries)
    return turns
