"""Speech through the whole app: modalities, audio players, masking, artifacts, refusals, the CLI smoke test."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO
from mllm_shapx.audio import segment_pauses, segment_raw
from mllm_shapx.chat import AUDIO, TEXT, USER, turn_kinds
from mllm_shapx.config import ConfigError, check_config
from mllm_shapx.data import get_row, load_split
from mllm_shapx.explain import chat_for
from mllm_shapx.run import run

OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
INTERLEAVED = ["interleaved__text_first__male", "interleaved__text_first__female",
               "interleaved__audio_first__male", "interleaved__audio_first__female"]


@pytest.fixture
def audio_cfg(compose_cfg, tiny_audio_dir, tmp_path):
    def _cfg(*overrides):
        return compose_cfg(
            "+experiment=mc_minimal", "connector=hf_audio", f"connector.model={tiny_audio_dir}",
            f"output_root={tmp_path}", "selection.max_samples=2", "selection.min_prompt_tokens=null",
            "selection.max_prompt_tokens=null", "shap.num_samples=12", "generation.max_new_tokens=4",
            "runtime.num_threads=1", "runtime.progress_bar=false", "modality.input_modality=audio__male", *overrides)
    return _cfg


@pytest.fixture(scope="module")
def audio_model(tiny_audio_dir):
    from mllm_shapx.connectors.hf_audio import load_audio_model

    return load_audio_model(str(tiny_audio_dir), device="cpu")


def bundled_row(subset: str, index: int):
    class Bundled:
        path, split = f"bundled:{subset}", "test"

    return get_row(load_split(Bundled()), index)


@pytest.mark.parametrize("method", ["raw", "pauses"])
def test_audio_to_text_run_explains_every_segment_and_saves_the_input(audio_cfg, tmp_path, method):
    cfg = audio_cfg(f"audio_segmentation.method={method}")
    summary = run(cfg, tmp_path / "run")
    assert summary["n_samples"] == 2
    for path in sorted((tmp_path / "run" / "samples").glob("*.json")):
        sample = json.loads(path.read_text())
        clip = bundled_row("single_sentence", sample["row_index"]).clips("audio__male")[0]
        segments = (segment_raw(len(clip)) if method == "raw" else segment_pauses(clip))
        assert len(segments) >= 3
        summary_block = sample["attr_summary"]
        assert summary_block["count_audio_segments"] == len(segments) == sample["n_players"]
        assert summary_block["count_text_tokens"] == 0 and summary_block["frac_audio"] == 1.0
        assert len(sample["shap_values"]) == len(segments)
        assert sample["player_tokens"][0].startswith("<audio clip 0 ")
        audio_entries = [e for turn in sample["conversation"] for e in turn if e["content_type"] == AUDIO]
        assert len(audio_entries) == 1
        pieces = audio_entries[0]
        assert sum(v is not None for v in pieces["shap_values"]) == len(segments)
        assert all(c == {"_binary": True, "num_bytes": c["num_bytes"]} for c in pieces["content"])
        # the pieces (segments and the unsegmented audio between them) add up to the clip, but for a
        # tail too short to make an audio token of its own
        assert 2 * (len(clip) - 640) < sum(c["num_bytes"] for c in pieces["content"]) <= 2 * len(clip)
        block = sample["audio_artifacts"]
        name = f"sample_{sample['row_index']:05d}"
        assert block["input_audio"]["audio_file"] == f"{name}_input_audio.wav"
        saved, rate = sf.read(tmp_path / "run" / "audio" / name / f"{name}_input_audio.wav", dtype="float32")
        assert rate == 16000 and len(saved) == len(clip)
        assert np.abs(saved - clip).max() <= 1 / 32768 + 1e-7
        assert "output_audio" not in block
    first = sorted((tmp_path / "run" / "samples").glob("*.json"))[0].read_bytes()
    run(cfg, tmp_path / "run")  # resumed: nothing is redone
    assert sorted((tmp_path / "run" / "samples").glob("*.json"))[0].read_bytes() == first


def test_masking_an_audio_player_changes_the_encoder_input(audio_cfg, audio_model):
    cfg = audio_cfg("modality.input_modality=interleaved__text_first__female")
    row = bundled_row("multi_sentence", 0)
    chat = chat_for(row, audio_model, cfg)
    audio = np.flatnonzero(chat.player_clip >= 0)
    text = np.flatnonzero(chat.player_clip < 0)
    assert len(audio) and len(text)
    full = chat.masked(np.ones(chat.n_players, bool))
    assert np.array_equal(full.input_ids, chat.input_ids)
    assert all(np.array_equal(a, b) for a, b in zip(full.clips, chat.prompt.clips))

    coalition = np.ones(chat.n_players, bool)
    coalition[audio[1]] = False  # the second segment of the first clip
    masked = chat.masked(coalition)
    start, end = chat.prompt.clip_segments[0][1]
    assert len(masked.clips[0]) == len(chat.prompt.clips[0]) - (end - start)
    assert len(chat.input_ids) - len(masked.input_ids) == (end - start) // 640
    before, after = (audio_model.features(p.clips)["input_features"].numpy() for p in (full, masked))
    assert not np.array_equal(before[0], after[0])
    assert np.array_equal(before[1:], after[1:])  # the other clips are untouched

    coalition = np.ones(chat.n_players, bool)
    coalition[text[0]] = False
    dropped = chat.masked(coalition)
    assert len(dropped.input_ids) == len(chat.input_ids) - 1
    assert np.array_equal(np.delete(chat.input_ids, chat.players[text[0]]), dropped.input_ids)


@pytest.mark.parametrize("modality", INTERLEAVED)
def test_interleaved_chats_alternate_as_named(audio_cfg, audio_model, modality):
    row = bundled_row("multi_sentence", 2)
    assert len(row.texts) == 3
    chat = chat_for(row, audio_model, audio_cfg(f"modality.input_modality={modality}"))
    user_kinds = []
    bounds = list(chat.turn_starts) + [len(chat.input_ids)]
    for start, end in zip(bounds[:-1], bounds[1:]):
        user = chat.roles[start:end] == USER
        if user.any():
            user_kinds.append(set(chat.content_types[start:end][user].tolist()))
    first, second = ({TEXT}, {AUDIO}) if "text_first" in modality else ({AUDIO}, {TEXT})
    assert user_kinds == [first if i % 2 == 0 else second for i in range(len(row.texts))]
    voice = modality.rsplit("__", 1)[1]
    spoken = [i for i, (kind, _) in enumerate(turn_kinds(modality, len(row.texts))) if kind == "audio"]
    expected = [row.clips(f"audio__{voice}")[i] for i in spoken]
    assert all(np.array_equal(a, b) for a, b in zip(chat.prompt.clips, expected))
    assert chat.texts == [t for i, t in enumerate(row.texts) if i not in spoken]


def test_bundled_speech_decodes_at_16_khz_for_every_voice_and_sentence():
    for subset in ("single_sentence", "multi_sentence", "multi_lingual"):
        row = bundled_row(subset, 0)
        for column in ("audio__original", "audio__male", "audio__female"):
            clips = row.clips(column)
            assert len(clips) == len(row.texts)
            assert all(c.dtype == np.float32 and 0.5 * 16000 < len(c) < 30 * 16000 for c in clips)
            assert all(0.05 < np.abs(c).max() <= 1.0 for c in clips)


def test_impossible_modalities_are_refused_naming_the_key(compose_cfg, audio_cfg):
    text_connector = compose_cfg("modality.input_modality=audio__male")
    assert any(p.startswith("modality.input_modality: audio__male needs an audio connector")
               for p in check_config(text_connector))
    spoken_answer = audio_cfg("modality.output_modality=audio")
    assert any(p.startswith("modality.output_modality: audio output needs connector=liquid_audio")
               for p in check_config(spoken_answer))
    assert check_config(audio_cfg()) == []


def test_rows_without_the_needed_audio_are_left_out_with_a_clear_error(audio_cfg, tmp_path):
    cfg = audio_cfg("selection.shuffle_seed=null", "selection.start_index=100")
    with pytest.raises(ConfigError, match="no row selected; 28 rows have no audio__male audio"):
        run(cfg, tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_liquid_audio_plans_runs_and_fails_in_one_line_without_its_package(compose_cfg, tmp_path):
    args = ["+experiment=mc_minimal", "connector=liquid_audio", "modality.input_modality=audio__original",
            "modality.output_modality=audio", f"output_root={tmp_path}", "runtime.progress_bar=false"]
    planned = subprocess.run([sys.executable, "-m", "mllm_shapx.app", *args, "dry_run=true"], cwd=REPO, env=OFFLINE,
                             capture_output=True, text=True, timeout=120)
    assert planned.returncode == 0, planned.stderr
    assert "planned:" in planned.stdout
    failed = subprocess.run([sys.executable, "-m", "mllm_shapx.app", *args], cwd=REPO, env=OFFLINE,
                            capture_output=True, text=True, timeout=120)
    assert failed.returncode == 2
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "liquid-audio" in errors[0] and "3.12" in errors[0]


@pytest.mark.real_model
def test_hf_audio_tiny_smoke_command_runs_anywhere(tmp_path):
    """The issue's smoke test, as typed: the embedded tiny Qwen2-Audio is built on first use."""
    proc = subprocess.run(
        [sys.executable, "-m", "mllm_shapx.app", "+experiment=mc_minimal", "connector=hf_audio_tiny",
         "modality.input_modality=audio__male", "selection.max_samples=1", "shap.num_samples=8",
         f"output_root={tmp_path}", "runtime.num_threads=1", "runtime.progress_bar=false"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env=OFFLINE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = tmp_path / "testing_and_experiments" / "minimal_mc_limited_mc_ns8"
    sample = json.loads(next((run_dir / "samples").glob("*.json")).read_text())
    # SmolLM2's tokenizer: the text run's selection (15-token rows) picks rows that carry speech
    assert sample["row_index"] in (1, 3, 7)
    assert sample["attr_summary"]["count_audio_segments"] == sample["n_players"] > 50
    assert (run_dir / "audio" / f"sample_{sample['row_index']:05d}").is_dir()


def test_wav_round_trip_of_the_artifact_writer():
    from mllm_shapx.explain import wav_bytes

    clip = np.sin(np.linspace(0, 100, 16000)).astype(np.float32) * 0.5
    data, rate = sf.read(io.BytesIO(wav_bytes(clip, 16000)), dtype="float32")
    assert rate == 16000 and np.abs(data - clip).max() <= 1 / 32768 + 1e-7


@pytest.mark.parametrize("modality", ["text", "audio__female"])
def test_selection_counts_the_text_tokens_whatever_the_modality(audio_cfg, audio_model, modality):
    from mllm_shapx.explain import selection_count

    cfg = audio_cfg(f"modality.input_modality={modality}")
    row = bundled_row("single_sentence", 3)
    text_players = chat_for(row, audio_model, audio_cfg("modality.input_modality=text")).n_players
    assert selection_count(row, audio_model, cfg) == text_players > 5
    chat = chat_for(row, audio_model, cfg)
    assert (chat.player_clip >= 0).all() if modality != "text" else (chat.player_clip < 0).all()


def test_resume_false_moves_the_audio_aside_with_the_samples(audio_cfg, tmp_path):
    out = tmp_path / "run"
    run(audio_cfg("selection.max_samples=1"), out)
    old = sorted(p.relative_to(out) for p in (out / "audio").rglob("*.wav"))
    assert len(old) == 1
    run(audio_cfg("selection.max_samples=1", "resume=false", "seed=5"), out)
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert sorted(p.relative_to(aside) for p in (aside / "audio").rglob("*.wav")) == old
    assert sorted(p.relative_to(out) for p in (out / "audio").rglob("*.wav")) == old  # rewritten by the new run
