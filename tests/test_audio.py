"""Audio players and the Qwen2-Audio connector, on a tiny random-weight Qwen2-Audio (offline, fast)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from mllm_shapx.audio import (
    num_audio_tokens,
    remove_segments,
    segment_pauses,
    segment_raw,
    token_stride,
)
from mllm_shapx.chat import AUDIO, SYSTEM, TEXT, USER
from tiny_audio_model import AUDIO_TOKEN, build_tiny_audio_model

SR = 16000


@pytest.fixture(scope="module")
def model(tiny_audio_dir):
    from mllm_shapx.connectors.hf_audio import HFAudioModel

    return HFAudioModel(str(tiny_audio_dir), "float32", "cpu")


def _noise(n, seed):
    return (np.random.default_rng(seed).standard_normal(n) * 0.1).astype(np.float32)


def _tone_bursts(bursts, total, seed=0):
    """Sine bursts [(start_s, end_s, freq)] over low noise; returns float32 16 kHz."""
    x = np.random.default_rng(seed).standard_normal(int(total * SR)).astype(np.float32) * 1e-4
    for start, end, freq in bursts:
        a, b = int(start * SR), int(end * SR)
        t = np.arange(b - a) / SR
        x[a:b] += (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return x


def _audio(x, segments=None):
    part = {"type": "audio", "audio": x}
    if segments is not None:
        part["segments"] = segments
    return part


A3 = _noise(3 * SR, 0)  # 3 s -> 75 tokens
B = _noise(30000, 1)  # 1.875 s -> 47 tokens
C = _noise(21000, 2)  # 1.3125 s -> 33 tokens

CONVERSATIONS = {
    "text_only": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "What is the capital of France?"}],
    "audio_only": [{"role": "user", "content": [_audio(A3)]}],
    "two_clips_one_turn": [{"role": "user", "content": [
        {"type": "text", "text": "Compare"}, _audio(B), {"type": "text", "text": "with"}, _audio(C)]}],
    "interleaved": [{"role": "user", "content": "Listen to this."},
                    {"role": "user", "content": [_audio(C)]}],
}


# ---------------------------------------------------------------- tiny model
def test_tiny_audio_model_builds_fast_deterministically_and_reloads(tmp_path):
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration, Qwen2AudioProcessor

    start = time.perf_counter()
    first = build_tiny_audio_model(tmp_path / "a")
    assert time.perf_counter() - start < 5
    second = build_tiny_audio_model(tmp_path / "b")
    for path in first.iterdir():
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name

    processor = AutoProcessor.from_pretrained(first)
    assert isinstance(processor, Qwen2AudioProcessor)
    assert processor.feature_extractor.feature_size == 80
    model = Qwen2AudioForConditionalGeneration.from_pretrained(first)
    assert model.config.audio_config.d_model == 64
    assert processor.tokenizer.convert_tokens_to_ids(AUDIO_TOKEN) == model.config.audio_token_id
    for token in ("<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>", "<|im_start|>", "<|im_end|>"):
        assert token in processor.tokenizer.all_special_tokens
    text = processor.apply_chat_template(CONVERSATIONS["two_clips_one_turn"], add_generation_prompt=True,
                                         tokenize=False)
    assert text.count("<|audio_bos|><|AUDIO|><|audio_eos|>") == 2 and text.endswith("<|im_start|>assistant\n")


# ---------------------------------------------------------------- token stride
@pytest.mark.parametrize("n", [0, 1, 160, 320, 321, 640, 641, 960, 961, 1280, 47999, 48000, 48001,
                               480000, 480001, 600000])
def test_num_audio_tokens_is_the_processors_count(model, n):
    fe = model.feature_extractor
    frames = int(fe(np.zeros(max(n, 1), np.float32), sampling_rate=SR, padding="max_length",
                    return_attention_mask=True)["attention_mask"][0].sum()) if n else 0
    expected = (((frames - 1) // 2 + 1) - 2) // 2 + 1 if frames else 0  # Qwen2AudioProcessor's formula
    assert num_audio_tokens(n) == model.num_audio_tokens(n) == max(expected, 0)
    assert token_stride(SR) == 640 and num_audio_tokens(48000) == 75 and num_audio_tokens(10 ** 6) == 750


def test_removing_whole_tokens_of_samples_removes_exactly_that_many_tokens():
    for n in [1000, 30000, 47999, 48000, 48321]:
        for j in range(1, 4):
            if n - 640 * j > 320:
                assert num_audio_tokens(n) - num_audio_tokens(n - 640 * j) == j


# ---------------------------------------------------------------- segmentation
def test_segment_raw_covers_the_clip_on_the_token_grid():
    segments = segment_raw(48000, SR)
    assert len(segments) == 75 and segments[0] == (0, 0 + 640) and segments[-1][1] == 48000
    assert all(e - s == 640 for s, e in segments)
    assert all(a[1] == b[0] for a, b in zip(segments, segments[1:]))

    five = segment_raw(48000 + 1000, SR, segment_ms=200)  # 200 ms = 5 tokens; tail 1000 samples
    assert all(s % 3200 == 0 for s, _ in five) and five[-1] == (48000, 49000)
    tiny_tail = segment_raw(48100, SR)  # a 100-sample tail is merged into the last segment
    assert tiny_tail[-1] == (47360, 48100) and len(tiny_tail) == 75
    assert segment_raw(0, SR) == []


def test_segment_pauses_finds_tone_bursts():
    bursts = [(0.10, 0.40, 300), (0.60, 0.75, 500), (1.00, 1.50, 700), (1.80, 2.00, 400)]
    x = _tone_bursts(bursts, 2.3)
    segments = segment_pauses(x, SR)
    assert len(segments) == len(bursts)
    for (s, e), (bs, be, _) in zip(segments, bursts):
        assert s <= bs * SR + 320 and e >= be * SR - 320  # contains the burst (up to half a token)
        assert s >= bs * SR - 0.1 * SR and e <= be * SR + 0.1 * SR  # and not much more
        assert s % 640 == 0 and e % 640 == 0
    assert all(a[1] <= b[0] for a, b in zip(segments, segments[1:]))
    unaligned = segment_pauses(x, SR, align=False, pad_ms=0)  # burst edges to within one 10 ms hop
    assert np.allclose(np.asarray(unaligned) / SR, [b[:2] for b in bursts], atol=0.0101)

    # a click shorter than min_segment_ms is not a segment; silence has none; a long burst is split
    click = _tone_bursts([(0.5, 0.52, 1000), (1.0, 1.4, 300)], 2.0)
    assert len(segment_pauses(click, SR)) == 1
    assert segment_pauses(np.zeros(SR, np.float32), SR) == []
    long = _tone_bursts([(0.1, 2.1, 300)], 2.3)
    assert len(segment_pauses(long, SR, max_segment_ms=None)) == 1
    assert len(segment_pauses(long, SR, max_segment_ms=600)) >= 4


def test_remove_segments_keeps_gaps_and_order():
    x = np.arange(100, dtype=np.float32)
    segments = [(10, 20), (30, 40), (60, 90)]
    out = remove_segments(x, segments, [True, False, False])
    assert np.array_equal(out, np.concatenate([x[:30], x[40:60], x[90:]]))
    assert np.array_equal(remove_segments(x, segments, [True] * 3), x)
    assert len(remove_segments(x, segments, [False] * 3)) == 100 - 10 - 10 - 30
    faded = remove_segments(x, segments, [True, False, True], fade_ms=0.125, sr=SR)  # 2-sample fades
    assert len(faded) == 90 and faded[29] == 0 and faded[30] == 0 and faded[31] == x[41] / 2
    with pytest.raises(ValueError):
        remove_segments(x, [(30, 40), (10, 20)], [True, True])
    with pytest.raises(ValueError):
        remove_segments(x, segments, [True])


# ---------------------------------------------------------------- connector: encoding
def test_encoding_equals_the_processors_and_labels_every_position(model):
    conversation = CONVERSATIONS["two_clips_one_turn"]
    prompt = model.encode(conversation)
    text = model.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    reference = model.processor(text=[text], audio=[B, C], sampling_rate=SR, return_tensors="pt")
    assert np.array_equal(reference["input_ids"][0].numpy(), prompt.input_ids)
    features = model.features(prompt.clips)
    assert torch.equal(reference["input_features"], features["input_features"])
    assert torch.equal(reference["feature_attention_mask"], features["feature_attention_mask"])

    assert prompt.clip_num_tokens == [num_audio_tokens(len(B)), num_audio_tokens(len(C))] == [47, 33]
    audio = prompt.content_types == AUDIO
    assert np.array_equal(audio, prompt.input_ids == model.audio_token_id)
    assert np.all(prompt.roles[audio] == USER)
    assert np.array_equal(prompt.audio_index[prompt.clip == 1], np.arange(33))
    user_text = (prompt.roles == USER) & (prompt.content_types == TEXT)
    assert model.tokenizer.decode(prompt.input_ids[prompt.part == 0]) == "Compare"
    assert model.tokenizer.decode(prompt.input_ids[prompt.part == 2]).strip() == "with"
    assert set(prompt.part[user_text]) == {0, 2}
    assert set(prompt.part[audio]) == {1, 3}
    assert np.all(prompt.roles[~audio & ~user_text] == SYSTEM)  # markers, "Audio 1:", bos/eos
    assert np.all(prompt.segment == -1)  # no segments given

    # native forward (the processor's inputs) and our merge give the same logits
    ids = torch.as_tensor(prompt.input_ids)[None]
    mask = torch.ones_like(ids)
    with torch.no_grad():
        native = model.model(input_ids=ids, attention_mask=mask, **features).logits
        ours = model.model(input_ids=ids, attention_mask=mask,
                           inputs_embeds=model.input_embeddings(ids, prompt.clips)).logits
    assert torch.allclose(native, ours, atol=1e-6)


def test_text_containing_the_audio_placeholder_is_refused(model):
    with pytest.raises(ValueError):
        model.encode([{"role": "user", "content": f"say {AUDIO_TOKEN}"}])


# ---------------------------------------------------------------- connector: generation
def test_generate_every_kind_of_conversation_batched_equals_alone(model):
    names = list(CONVERSATIONS)
    batch = model.generate([CONVERSATIONS[n] for n in names], max_new_tokens=6)
    for name, answer in zip(names, batch):
        assert len(answer) == 6, name  # special tokens are suppressed: answers run to the limit
        alone = model.generate([CONVERSATIONS[name]], max_new_tokens=6)[0]
        assert np.array_equal(answer, alone), name
    # the audio changes the answer (the model does listen; two white-noise clips sound alike to it)
    other = [{"role": "user", "content": [_audio(_tone_bursts([(0.1, 1.0, 300), (1.5, 2.5, 800)], 3.0))]}]
    assert not np.array_equal(model.generate([other], max_new_tokens=6)[0], batch[1])


def test_seeded_sampling_is_fixed_per_seed_and_row_independent(model):
    convs = [CONVERSATIONS["audio_only"], CONVERSATIONS["two_clips_one_turn"], CONVERSATIONS["audio_only"]]
    kwargs = dict(max_new_tokens=8, temperature=1.0, top_k=50)
    first = model.generate(convs, seeds=[1, 2, 3], **kwargs)
    again = model.generate(convs, seeds=[1, 2, 3], **kwargs)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert np.array_equal(model.generate([convs[1]], seeds=[2], **kwargs)[0], first[1])
    assert not np.array_equal(first[0], first[2])  # same prompt, other seed


def test_masking_segments_shortens_the_audio_run_and_matches_reencoding(model):
    segments = segment_raw(len(A3), SR, segment_ms=200)  # 15 segments of 5 tokens
    conversation = [{"role": "user", "content": [{"type": "text", "text": "Hi"}, _audio(A3, segments)]}]
    prompt = model.encode(conversation)
    assert np.array_equal(prompt.segment[prompt.clip == 0], np.repeat(np.arange(15), 5))
    keep = np.ones(15, bool)
    keep[[3, 7, 8]] = False
    masked = prompt.masked({0: keep})
    assert len(masked.clips[0]) == len(A3) - 3 * 3200
    assert int(np.sum(masked.input_ids == model.audio_token_id)) == 75 - 15
    direct = model.encode([{"role": "user", "content": [
        {"type": "text", "text": "Hi"}, _audio(remove_segments(A3, segments, keep))]}])
    assert np.array_equal(masked.input_ids, direct.input_ids)
    # text players are removed by position; the empty coalition keeps only the template
    text_pos = np.flatnonzero((prompt.roles == USER) & (prompt.content_types == TEXT))
    empty = prompt.masked({0: np.zeros(15, bool)}, drop_positions=text_pos)
    assert int(np.sum(empty.input_ids == model.audio_token_id)) == 0 and len(empty.clips[0]) == 0
    answers = model.generate([masked, empty, prompt], max_new_tokens=5)
    assert np.array_equal(answers[0], model.generate([direct], max_new_tokens=5)[0])
    assert np.array_equal(answers[1], model.generate([empty], max_new_tokens=5)[0])


def test_single_token_clips_do_not_take_the_models_legacy_merge(model):
    # With no two adjacent <|AUDIO|> tokens in the batch, Qwen2AudioModel.forward takes its legacy
    # merge, which crashes under generate; our own merge must handle it, alone or batched.
    one = [{"role": "user", "content": [_audio(A3[:640])]}]
    assert model.encode(one).clip_num_tokens == [1]
    alone = model.generate([one], max_new_tokens=4)[0]
    with_long = model.generate([one, CONVERSATIONS["audio_only"]], max_new_tokens=4)[0]
    assert np.array_equal(alone, with_long)


def test_masking_a_segment_changes_the_encoder_input(model):
    segments = segment_raw(len(A3), SR)
    keep = np.ones(75, bool)
    keep[30:35] = False  # frames 120..139 removed
    out = model.features([A3, remove_segments(A3, segments, keep)])
    full, masked = out["input_features"].numpy()
    assert out["feature_attention_mask"].sum(-1).tolist() == [300, 280]
    assert not np.array_equal(full, masked)
    # Kept frames away from the splice keep their features (shifted by the cut), the frames whose
    # STFT window straddles it change, and the padding after the clip is the same constant.
    assert np.array_equal(full[:, :119], masked[:, :119])
    assert np.array_equal(full[:, 143:300], masked[:, 123:280])
    assert not np.array_equal(full[:, 119:123], masked[:, 119:123])
    # ... unless the removed segment held the clip's loudest frame: Whisper's log-mel is floored at
    # (clip max - 8) (log10 units, i.e. 80 dB below the loudest bin), so then every quiet bin of every
    # frame moves (white noise has no bin that quiet; a tone has many).
    tone = _tone_bursts([(0.0, 3.0, 440)], 3.0)
    tone[30 * 640:35 * 640] *= 10
    out = model.features([tone, remove_segments(tone, segments, keep)])
    full, masked = out["input_features"].numpy()
    assert np.abs(full[:, :100] - masked[:, :100]).max() > 0.2


def test_real_speech_from_the_bundled_shard(model):
    """espeak-ng speech committed in the bundled shard (16 kHz WAV), no synthesiser needed."""
    from mllm_shapx.data import decode_wav, get_row, load_split

    class Bundled:
        path, split = "bundled:single_sentence", "test"

    row = get_row(load_split(Bundled()), 0)
    x, sr = decode_wav(row.audio["audio__male"][0])
    assert sr == SR
    sentence = row.texts[0]
    segments = segment_pauses(x, SR)
    words = len(sentence.split())
    assert words // 2 <= len(segments) <= 2 * words
    prompt = model.encode([{"role": "user", "content": [_audio(x, segments)]}])
    covered = set(prompt.segment[prompt.clip == 0]) - {-1}
    assert covered == set(range(len(segments)))
    keep = np.ones(len(segments), bool)
    keep[1] = False
    removed_tokens = (segments[1][1] - segments[1][0]) // 640
    masked = prompt.masked({0: keep})
    assert len(prompt.input_ids) - len(masked.input_ids) == removed_tokens
    assert len(model.generate([masked], max_new_tokens=3)[0]) == 3
