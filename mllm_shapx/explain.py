"""Explain one row: chat -> game -> estimator -> normalizer -> the sample record (SPEC §6 schema)."""

from __future__ import annotations

import io
import time
import zlib
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .artifacts import sample_stem
from .audio import segment_pauses, segment_raw
from .chat import ASSISTANT, AUDIO, TEXT, Chat, build_audio_chat, build_chat, row_turns, turn_kinds
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
    """The row's chat in the run's input modality (text connectors take text only)."""
    if not hasattr(model, "encode"):
        return build_chat(model.tokenizer, row.texts, cfg.connector.system_prompt, cfg.shap.token_filter.value)
    turns = row_turns(row, cfg.modality.input_modality.value, model.sampling_rate)
    return build_audio_chat(model, turns, cfg.connector.system_prompt, cfg.shap.token_filter.value,
                            segmenter(cfg.audio_segmentation, model))


def selection_count(row: Row, model, cfg) -> int:
    """What ``selection.min/max_prompt_tokens`` bound: the explainable text tokens of the row's
    sentences, whatever the input modality, so a text run and its audio twin select the same rows.

    Raises ``MissingAudio`` when the modality needs an audio column the row lacks.
    """
    for kind, column in turn_kinds(cfg.modality.input_modality.value, len(row.texts)):
        if kind == "audio":
            row.require_audio(column)
    return build_chat(model.tokenizer, row.texts, cfg.connector.system_prompt, cfg.shap.token_filter.value).n_players


def segmenter(seg, model) -> Callable[[np.ndarray], List[Tuple[int, int]]]:
    """``audio_segmentation.*`` as a function clip -> segments on the connector's audio-token grid."""
    sr, token_ms = model.sampling_rate, model.audio_token_ms
    if seg.method.value == "raw":
        return lambda clip: segment_raw(len(clip), sr, seg.segment_ms, token_ms=token_ms)
    return lambda clip: segment_pauses(clip, sr, threshold_db=seg.pause_threshold_db, min_gap_ms=seg.pause_min_gap_ms,
                                       max_segment_ms=seg.pause_max_segment_ms, token_ms=token_ms)


def explain_row(row: Row, model, cfg, run_slug: str, *, progress: bool = False
                ) -> Tuple[Dict[str, Any], Dict[str, bytes]]:
    """The sample record and its audio files (file name -> WAV bytes; empty for text-only runs)."""
    started = time.perf_counter()
    chat = chat_for(row, model, cfg)
    if chat.n_players == 0:
        raise ValueError(f"row {row.index} has no explainable tokens")
    seed = row_seed(cfg.seed, row.index, run_slug)
    shap, gen = cfg.shap, cfg.generation
    game = ChatGame(
        model, chat, make_scorer(shap, model, cfg.embedding), max_new_tokens=gen.max_new_tokens,
        temperature=gen.text_temperature, top_k=gen.text_top_k, batch_size=gen.batch_size,
        seed=seed, progress=progress, output_audio=cfg.modality.output_modality.value == "audio",
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
        "conversation": conversation(chat, game.full_answer, shown, model.tokenizer, game.full_audio),
        **result.extras,
        # additions to the original's schema
        "explainer_type": shap.explainer_type.value,
        "estimand": shap.estimand.value,
        "normalizer": shap.normalizer.value,
        "n_players": n,
        "n_evaluations": result.n_evaluations,
        "player_tokens": player_labels(chat, model),
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
    files: Dict[str, bytes] = {}
    if chat.prompt is not None and (chat.prompt.clips or game.full_audio is not None):
        sample["audio_artifacts"], files = audio_artifacts(row.index, cfg.modality, chat, model, game.full_audio)
    return sample, files


def player_labels(chat: Chat, model) -> List[str]:
    """A player's token text, or ``<audio clip c s0.00-0.04>`` (seconds) for an audio segment."""
    labels = []
    for i, position in enumerate(chat.players):
        clip = -1 if chat.player_clip is None else int(chat.player_clip[i])
        if clip < 0:
            labels.append(model.tokenizer.decode([int(chat.input_ids[position])]))
            continue
        start, end = chat.prompt.clip_segments[clip][int(chat.player_segment[i])]
        sr = model.sampling_rate
        labels.append(f"<audio clip {clip} {start / sr:.2f}-{end / sr:.2f}s>")
    return labels


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


def conversation(chat: Chat, answer: np.ndarray, values: np.ndarray, tokenizer,
                 answer_audio: Optional[np.ndarray] = None) -> List[List[Dict[str, Any]]]:
    """Turns of entries ``{content_type, roles, content, shap_values}``; the answer closes the last turn.

    ``content`` has one element per text token and one ``{"_binary": true, "num_bytes": N}`` per
    audio piece: a segment (a player) or the unsegmented audio between segments (N = its size as
    16-bit PCM); the spoken answer, if any, is one such element.
    """
    units = _prompt_units(chat, values, tokenizer)
    end = len(chat.input_ids)
    units += [(end, ASSISTANT, TEXT, tokenizer.decode([int(t)]), None) for t in answer]
    if answer_audio is not None:
        units.append((end, ASSISTANT, AUDIO, {"_binary": True, "num_bytes": 2 * len(answer_audio)}, None))
    turn_of = np.searchsorted(chat.turn_starts, [u[0] for u in units], side="right")
    turns: List[List[Dict[str, Any]]] = []
    for i, (_, role, kind, content, value) in enumerate(units):
        if i == 0 or turn_of[i] != turn_of[i - 1]:
            turns.append([])
        entries = turns[-1]
        if not entries or entries[-1]["content_type"] != kind:
            entries.append({"content_type": kind, "roles": [], "content": [], "shap_values": []})
        entries[-1]["roles"].append(role)
        entries[-1]["content"].append(content)
        entries[-1]["shap_values"].append(value)
    return turns


def _prompt_units(chat: Chat, values: np.ndarray, tokenizer) -> List[Tuple[int, int, int, Any, Optional[float]]]:
    """(position, role, content type, content, shap value or None) per text token / audio piece."""
    shap_at = {int(p): float(v) for p, v in zip(chat.players, values)}
    units, pos, ids = [], 0, chat.input_ids
    while pos < len(ids):
        role = int(chat.roles[pos])
        if chat.content_types[pos] != AUDIO:
            units.append((pos, role, TEXT, tokenizer.decode([int(ids[pos])]), shap_at.get(pos)))
            pos += 1
            continue
        clip, segment = chat.prompt.clip[pos], chat.prompt.segment[pos]
        stop = pos
        while stop < len(ids) and chat.prompt.clip[stop] == clip and chat.prompt.segment[stop] == segment:
            stop += 1
        samples = _piece_samples(chat, int(clip), int(segment), int(chat.prompt.audio_index[pos]))
        units.append((pos, role, AUDIO, {"_binary": True, "num_bytes": 2 * samples}, shap_at.get(pos)))
        pos = stop
    return units


def _piece_samples(chat: Chat, clip: int, segment: int, first_token: int) -> int:
    """Samples of a segment, or of the gap between segments that holds the token ``first_token``."""
    bounds = chat.prompt.clip_segments[clip] or []
    if segment >= 0:
        return bounds[segment][1] - bounds[segment][0]
    centre = first_token * chat.token_samples + chat.token_samples // 2
    edges = [0] + [b for seg in bounds for b in seg] + [len(chat.prompt.clips[clip])]
    for lo, hi in zip(edges[::2], edges[1::2]):  # the gaps: before, between and after the segments
        if lo <= centre < hi:
            return hi - lo
    return 0


def audio_artifacts(index: int, modality, chat: Chat, model, answer_audio: Optional[np.ndarray]
                    ) -> Tuple[Dict[str, Any], Dict[str, bytes]]:
    """The ``audio_artifacts`` block (the original's layout) and its files, for ``audio/sample_XXXXX/``."""
    name = sample_stem(index)
    files: Dict[str, bytes] = {}
    clips = chat.prompt.clips if chat.prompt is not None else []
    inputs = [f"{name}_input_audio.wav" if len(clips) == 1 else f"{name}_input_audio_{k}.wav" for k in range(len(clips))]
    for file, clip in zip(inputs, clips):
        files[file] = wav_bytes(clip, model.sampling_rate)
    block: Dict[str, Any] = {
        "input_modality": modality.input_modality.value,
        "output_modality": modality.output_modality.value,
        "input_audio": {
            "input_modality": modality.input_modality.value,
            "has_audio": bool(clips),
            "audio_file": inputs[0] if inputs else None,
            "audio_files": inputs,  # ours: one file per clip (multi-sentence and interleaved rows)
            "sample_rate": model.sampling_rate,
            "format": "wav",
            "size_bytes": sum(len(files[f]) for f in inputs),
            "metadata": {"input_modality": modality.input_modality.value, "num_clips": len(clips)},
        },
    }
    if answer_audio is not None:
        file = f"{name}_output_audio.wav"
        files[file] = wav_bytes(answer_audio, model.output_sampling_rate)
        block["output_audio"] = {"output_audio": {
            "audio_file": file, "sample_rate": model.output_sampling_rate, "format": "wav",
            "size_bytes": len(files[file]), "metadata": {"source": "chat_audio_out"},
        }}
    return block, files


def wav_bytes(samples: np.ndarray, sampling_rate: int) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(samples, dtype=np.float32), sampling_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()
