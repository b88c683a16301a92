"""The liquid_audio connector without the package or weights: geometry, layout, masking, ChatState ops."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from mllm_shapx.chat import ASSISTANT, AUDIO, SYSTEM, TEXT, USER
from mllm_shapx.connectors.liquid_audio import (
    AUDIO_IN,
    MISSING_PACKAGE,
    LiquidAudioUnavailable,
    apply_ops,
    chat_state_ops,
    layout,
    lfm2_audio_tokens,
    load_liquid_audio_model,
)
from mllm_shapx.data import decode_wav
from tiny_models import IM_END, IM_START, _train_tokenizer

BUNDLED = Path(__file__).resolve().parent.parent / "mllm_shapx" / "bundled" / "single_sentence" / "test.parquet"
STRIDE = 1280  # samples per LFM2 audio position (80 ms)


@pytest.fixture(scope="module")
def tok():
    return _train_tokenizer(special_tokens=("<|startoftext|>", IM_START, IM_END))


@pytest.fixture(scope="module")
def clip():
    wav, rate = decode_wav(pq.read_table(BUNDLED, columns=["audio__male"]).column("audio__male")[0].as_py())
    assert rate == 16000
    return wav


def segments80(n):
    return [(s, min(s + STRIDE, n)) for s in range(0, n, STRIDE)]


def enc(tok, text):
    return tok.encode(text, add_special_tokens=False)


def test_missing_package_is_one_actionable_line():
    with pytest.raises(LiquidAudioUnavailable) as err:
        load_liquid_audio_model("LiquidAI/LFM2-Audio-1.5B")
    message = str(err.value)
    assert message == MISSING_PACKAGE and "\n" not in message
    assert "liquid-audio" in message and "3.12" in message


@pytest.mark.parametrize("n", [0, 1, 159, 160, 319, 320, 1279, 1280, 1281, 2559, 2560, 27174, 48000])
def test_tokens_follow_the_package_formulas(n):
    # torch.stft(center=True, n_fft=512, hop=160) frames, then utils.mel2emb_len (ceil(frames / 8))
    frames = 1 + (n + 2 * (512 // 2) - 512) // 160
    assert lfm2_audio_tokens(n) == (0 if n == 0 else -(frames // -8))
    if n:  # the closed form; removing 1280 j samples removes j positions
        assert lfm2_audio_tokens(n) == n // STRIDE + 1
        assert lfm2_audio_tokens(n + 3 * STRIDE) == lfm2_audio_tokens(n) + 3
    # values measured by running liquid-audio's own AudioToMelSpectrogramPreprocessor (pad_to 0)
    measured = {1: 1, 159: 1, 1279: 1, 1280: 2, 2559: 2, 2560: 3, 27174: 22, 48000: 38}
    if n in measured:
        assert lfm2_audio_tokens(n) == measured[n]


def conversation(clip, *, segments=True):
    return [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [
            {"type": "text", "text": "Hello, world!"},
            {"type": "audio", "audio": clip, "segments": segments80(len(clip)) if segments else None},
            {"type": "text", "text": " How are you today?"},
        ]},
    ]


def test_layout_mirrors_chat_state(tok, clip):
    p = layout(tok, conversation(clip))
    n = lfm2_audio_tokens(len(clip))
    assert n == 22 and int(np.sum(p.content_types == AUDIO)) == n
    # <|startoftext|>, then per message <|im_start|>role\n, parts, <|im_end|>\n, then the generation prompt;
    # every piece encoded on its own
    expected = (enc(tok, "<|startoftext|>") + enc(tok, "<|im_start|>system\n") + enc(tok, "Answer briefly.")
                + enc(tok, "<|im_end|>\n") + enc(tok, "<|im_start|>user\n") + enc(tok, "Hello, world!")
                + [AUDIO_IN] * n + enc(tok, " How are you today?") + enc(tok, "<|im_end|>\n")
                + enc(tok, "<|im_start|>assistant\n"))
    assert p.input_ids.tolist() == expected
    assert p.audio_token_id == AUDIO_IN and p.clip_tokens(len(clip)) == n
    # tokenised separately: the user text is not merged with its neighbours
    first = np.flatnonzero(p.part == 1)
    assert p.input_ids[first].tolist() == enc(tok, "Hello, world!")
    assert p.input_ids[p.part == 3].tolist() == enc(tok, " How are you today?")
    # labels
    assert set(p.roles[p.part == 0]) == {SYSTEM}  # system content
    assert set(p.roles[np.isin(p.part, [1, 2, 3])]) == {USER}
    assert set(p.roles[p.part == -1]) == {SYSTEM} and set(p.content_types[p.part == -1]) == {TEXT}
    audio = np.flatnonzero(p.content_types == AUDIO)
    assert (p.part[audio] == 2).all() and (p.clip[audio] == 0).all() and (p.clip[p.content_types == TEXT] == -1).all()
    assert p.audio_index[audio].tolist() == list(range(n)) and (p.audio_index[p.content_types == TEXT] == -1).all()
    # segment = the one containing the centre sample 1280 k + 640 (27174 = 21 * 1280 + 294: the last
    # position's centre lies past the clip, so it is in no segment)
    assert p.segment[audio].tolist() == list(range(21)) + [-1]
    assert p.clip_segments == [segments80(len(clip))] and p.clip_num_tokens == [n]
    assert np.array_equal(p.clips[0], clip)


def test_layout_roles_of_assistant_and_unsegmented_clips(tok, clip):
    conv = [{"role": "user", "content": [{"type": "audio", "audio": clip[:5000]}]},
            {"role": "assistant", "content": "Fine."},
            {"role": "user", "content": "And you?"}]
    p = layout(tok, conv)
    assert set(p.roles[p.part == 1]) == {ASSISTANT} and set(p.roles[p.part == 2]) == {USER}
    assert p.clip_segments == [None] and (p.segment == -1).all()
    assert int(np.sum(p.input_ids == AUDIO_IN)) == lfm2_audio_tokens(5000) == 4


def test_masking_cuts_the_clip_and_the_run(tok, clip):
    p = layout(tok, conversation(clip))
    n_seg = len(p.clip_segments[0])
    all_kept = p.masked(clip_keep={0: [True] * n_seg})
    assert np.array_equal(all_kept.input_ids, p.input_ids) and np.array_equal(all_kept.clips[0], clip)

    keep = np.ones(n_seg, dtype=bool)
    keep[[0, 5, 6, 12]] = False  # four full 80 ms segments
    user_text = np.flatnonzero((p.roles == USER) & (p.content_types == TEXT))
    drop = user_text[[0, -1]]
    m = p.masked(clip_keep={0: keep}, drop_positions=drop)
    assert len(m.clips[0]) == len(clip) - 4 * STRIDE
    assert np.array_equal(m.clips[0][:5 * STRIDE - STRIDE], clip[STRIDE:5 * STRIDE])
    n_masked = int(np.sum(m.input_ids == AUDIO_IN))
    assert n_masked == lfm2_audio_tokens(len(clip)) - 4 == int(np.sum(np.isin(p.segment, np.flatnonzero(keep)))) + 1
    assert len(m.input_ids) == len(p.input_ids) - 4 - len(drop)
    text_kept = np.delete(p.input_ids, drop)
    assert m.input_ids[m.input_ids != AUDIO_IN].tolist() == text_kept[text_kept != AUDIO_IN].tolist()


def _as_runs(ops):
    return [(kind, value.tolist() if kind == "text" else len(value)) for kind, value in ops]


def test_chat_state_ops_on_masked_prompts(tok, clip):
    p = layout(tok, conversation(clip))
    keep = np.ones(len(p.clip_segments[0]), dtype=bool)
    keep[3:9] = False
    user_text = np.flatnonzero((p.roles == USER) & (p.content_types == TEXT))
    m = p.masked(clip_keep={0: keep}, drop_positions=user_text[:2])
    ops = chat_state_ops(m, AUDIO_IN)
    assert [kind for kind, _ in ops] == ["text", "audio", "text"]
    audio_at = int(np.flatnonzero(m.input_ids == AUDIO_IN)[0])
    assert ops[0][1].tolist() == m.input_ids[:audio_at].tolist()
    assert np.array_equal(ops[1][1], m.clips[0]) and len(ops[1][1]) == len(clip) - 6 * STRIDE
    tail = m.input_ids[audio_at + lfm2_audio_tokens(len(m.clips[0])):]
    assert ops[2][1].tolist() == tail.tolist()
    # text ids are replayed exactly: concatenating the ops' text gives the prompt minus placeholders
    assert np.concatenate([v for k, v in ops if k == "text"]).tolist() == m.input_ids[m.input_ids != AUDIO_IN].tolist()


def test_chat_state_ops_with_adjacent_clips_and_interleaved_turns(tok, clip):
    a, b, c = clip[:4000], clip[4000:9000], clip[9000:]
    conv = [
        {"role": "user", "content": [{"type": "audio", "audio": a, "segments": segments80(len(a))},
                                     {"type": "audio", "audio": b, "segments": segments80(len(b))}]},
        {"role": "assistant", "content": "Fine."},
        {"role": "user", "content": [{"type": "text", "text": "And"},
                                     {"type": "audio", "audio": c, "segments": segments80(len(c))},
                                     {"type": "text", "text": "you?"}]},
    ]
    p = layout(tok, conv)
    assert p.clip_num_tokens == [lfm2_audio_tokens(len(x)) for x in (a, b, c)]
    ops = chat_state_ops(p, AUDIO_IN)
    assert [kind for kind, _ in ops] == ["text", "audio", "audio", "text", "audio", "text"]
    assert [len(v) for k, v in ops if k == "audio"] == [len(a), len(b), len(c)]
    assert ops[-1][1].tolist() == enc(tok, "you?") + enc(tok, "<|im_end|>\n") + enc(tok, "<|im_start|>assistant\n")

    # mask: clip b entirely (it disappears), one segment of a, and the text "And"
    keep_a = np.ones(len(p.clip_segments[0]), dtype=bool)
    keep_a[1] = False
    m = p.masked(clip_keep={0: keep_a, 1: [False] * len(p.clip_segments[1])},
                 drop_positions=np.flatnonzero(p.part == 3))
    ops = chat_state_ops(m, AUDIO_IN)
    assert [kind for kind, _ in ops] == ["text", "audio", "text", "audio", "text"]
    assert len(ops[1][1]) == len(a) - STRIDE and len(m.clips[1]) == 0
    assert ops[2][1].tolist() == (enc(tok, "<|im_end|>\n") + enc(tok, "<|im_start|>assistant\n") + enc(tok, "Fine.")
                                  + enc(tok, "<|im_end|>\n") + enc(tok, "<|im_start|>user\n"))
    assert np.array_equal(ops[3][1], c)


def test_chat_state_ops_rejects_inconsistent_prompts(tok, clip):
    p = layout(tok, conversation(clip))
    short = type(p)(**{**p.__dict__, "input_ids": p.input_ids[p.input_ids != AUDIO_IN]})
    with pytest.raises(ValueError):
        chat_state_ops(short, AUDIO_IN)
    extra = type(p)(**{**p.__dict__, "clips": []})
    with pytest.raises(ValueError):
        chat_state_ops(extra, AUDIO_IN)


class RecordingChatState(Mapping):
    """Stand-in for liquid_audio.ChatState (a fresh one holds <|startoftext|>); records the calls."""

    codebooks = 8

    def __getitem__(self, name):  # a Mapping of the model inputs, like ChatState (here: text only)
        return {"text": self.text}[name]

    def __iter__(self):
        return iter(["text"])

    def __len__(self):
        return 1

    def __init__(self, start_ids):
        self.text = torch.tensor([start_ids])
        self.calls = []

    def append(self, text, audio_out, modality_flag):
        assert text.dtype == torch.long and text.shape[0] == 1 and audio_out.shape == (8, 0)
        assert modality_flag.shape == text.shape and (modality_flag == 1).all()  # LFMModality.TEXT
        self.calls.append(("append", text[0].tolist()))

    def add_audio(self, wave, sampling_rate):
        assert wave.dtype == torch.float32 and wave.ndim == 2 and wave.shape[0] == 1
        self.calls.append(("add_audio", wave[0].numpy().copy(), sampling_rate))


def test_apply_ops_replays_the_prompt(tok, clip):
    start = enc(tok, "<|startoftext|>")
    p = layout(tok, conversation(clip))
    ops = chat_state_ops(p, AUDIO_IN)
    state = RecordingChatState(start)
    apply_ops(state, ops)
    assert [c[0] for c in state.calls] == ["append", "add_audio", "append"]
    assert state.calls[0][1] == ops[0][1].tolist()[len(start):]  # the start token is not added twice
    assert np.array_equal(state.calls[1][1], clip) and state.calls[1][2] == 16000
    assert state.calls[2][1] == ops[2][1].tolist()
    # a 200-sample remnant is padded to 320 samples (same single position; ChatState rejects 160..319)
    state = RecordingChatState(start)
    apply_ops(state, [("text", np.asarray(start)), ("audio", clip[:200])])
    assert [c[0] for c in state.calls] == ["add_audio"] and len(state.calls[0][1]) == 320
    assert lfm2_audio_tokens(200) == lfm2_audio_tokens(320) == 1
    with pytest.raises(ValueError):  # a prompt that does not start as ChatState does
        apply_ops(RecordingChatState(start), ops[1:])


class ScriptedLFM2:
    """Stand-in for LFM2AudioModel's generators: yields a fixed script (text ids, 8-code frames)."""

    codebooks = 8

    def __init__(self, script):
        self.script, self.calls = script, []

    def _run(self, kind, kwargs):
        self.calls.append((kind, kwargs))
        for t in self.script:
            yield torch.tensor([t]) if isinstance(t, int) else torch.full((8,), t[0])

    def generate_sequential(self, **kwargs):
        return self._run("sequential", kwargs)

    def generate_interleaved(self, **kwargs):
        return self._run("interleaved", kwargs)


def test_generate_loop_with_a_scripted_model(tok, clip):
    """The per-prompt loop only (ChatState building, answer trimming, audio collection); not the package."""
    from mllm_shapx.connectors.liquid_audio import LiquidAudioModel

    start = enc(tok, "<|startoftext|>")
    m = LiquidAudioModel.__new__(LiquidAudioModel)
    m.tokenizer, m.device, m.dtype, m.processor = tok, "cpu", torch.float32, None
    m.eos_ids = {7, 128, 130}  # <|im_end|>, <|audio_start|>, <|text_end|> in LFM2's vocabulary
    states = []
    m._chat_state = lambda processor, codebooks, dtype: states.append(RecordingChatState(start)) or states[-1]
    prompt = layout(tok, conversation(clip))
    m.model = ScriptedLFM2([11, 12, 128, (5,), (2048,), 13, 7])
    assert [a.tolist() for a in m.generate([prompt, prompt], max_new_tokens=9, seeds=[1, 2])] == [[11, 12]] * 2
    kind, kwargs = m.model.calls[0]
    assert kind == "sequential" and kwargs["text_temperature"] is None and kwargs["max_new_tokens"] == 9
    assert kwargs["text"] is states[0].text  # the ChatState's inputs are passed as keyword arguments
    assert [c[0] for c in states[0].calls] == ["append", "add_audio", "append"]

    m.model = ScriptedLFM2([11, (5,), (6,), 130, (7,), (2048,)])
    decoded = []
    m.processor = type("P", (), {"detokenizer_path": "x", "decode": lambda self, c: decoded.append(c) or c.float()})()
    (ids, wave), = m.generate([conversation(clip)], max_new_tokens=9, temperature=0.7, top_k=5, return_audio=True)
    kind, kwargs = m.model.calls[0]
    assert kind == "interleaved" and kwargs["text_temperature"] == 0.7 and kwargs["text_top_k"] == 5
    assert ids.tolist() == [11] and decoded[0].shape == (1, 8, 3)  # the end-of-audio frame is dropped
    assert decoded[0][0].tolist() == [[5, 6, 7]] * 8  # [1, codebooks, frames], frames in order
    assert wave.dtype == np.float32 and wave.shape == (24,)  # the decoder's output, flattened
