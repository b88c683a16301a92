"""Tests of mllm_shapx.data and the bundled offline shards (real datasets library, real files)."""

from __future__ import annotations

import collections
import functools
import importlib.util
import io
import json
import os
import wave
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402

from mllm_shapx import data  # noqa: E402
from mllm_shapx.data import Row, check_columns, decode_wav, get_row, load_split, select_rows  # noqa: E402

datasets.disable_progress_bars()

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "build_bundled_data.py"
SHA = "6c046d6c94a76ddb2bb9e5577fd51e7fb77bb691"


@dataclass
class DatasetCfg:
    repo_id: str | None = None
    subset: str | None = None
    split: str = "test"
    revision: str | None = None
    allow_unpinned: bool = False
    use_parquet: bool = True
    trust_remote_code: bool = False
    path: str | None = None


@dataclass
class SelectionCfg:
    start_index: int = 0
    max_samples: int | None = None
    shuffle_seed: int | None = None
    min_prompt_tokens: int | None = None
    max_prompt_tokens: int | None = None
    balanced_token_counts: list[int] | None = None
    samples_per_token_count: int | None = None
    allow_partial_token_count_buckets: bool = False


@dataclass
class Counter:
    """A fake count_tokens: the row's ``token_count`` column, recording every call."""

    calls: list[int] = field(default_factory=list)

    def __call__(self, row: Row) -> int:
        self.calls.append(row.index)
        return row.token_count


def numbered(n: int, token_counts: list[int] | None = None) -> datasets.Dataset:
    counts = token_counts if token_counts is not None else [i % 7 for i in range(n)]
    return datasets.Dataset.from_dict(
        {"prompt": [f"prompt {i}" for i in range(n)], "token_count": counts, "language": ["en"] * n}
    )


# ------------------------------------------------------------------------------------------------
# Bundled shards
# ------------------------------------------------------------------------------------------------

TEXT_COLUMNS = {
    "single_sentence": ["prompt", "language", "original_language", "token_count"],
    "multi_sentence": ["sentences", "language", "original_language", "token_count"],
    "multi_lingual": ["prompt", "language", "original_language", "token_count"],
}
AUDIO = ["audio__original", "audio__male", "audio__female"]
BUNDLED_SHAPES = {subset: (columns + AUDIO, rows) for subset, columns, rows in [
    ("single_sentence", TEXT_COLUMNS["single_sentence"], 128),
    ("multi_sentence", TEXT_COLUMNS["multi_sentence"], 40),
    ("multi_lingual", TEXT_COLUMNS["multi_lingual"], 60),
]}


@functools.lru_cache(maxsize=1)
def _load_script():
    spec = importlib.util.spec_from_file_location("build_bundled_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("subset", sorted(BUNDLED_SHAPES))
def test_bundled_subset_loads(subset):
    columns, rows = BUNDLED_SHAPES[subset]
    ds = load_split(DatasetCfg(subset=subset, path=f"bundled:{subset}"))
    assert ds.column_names == columns
    assert len(ds) == rows
    row = get_row(ds, len(ds) - 1)
    assert row.index == len(ds) - 1
    assert row.texts and all(isinstance(t, str) and t.strip() for t in row.texts)
    assert isinstance(row.token_count, int) and row.token_count > 0
    assert row.audio == {}  # audio only for the first rows (the committed shards stay small)
    first = get_row(ds, 0)
    assert sorted(first.audio) == sorted(AUDIO)
    assert all(len(clips) == len(first.texts) for clips in first.audio.values())


def test_bundled_single_sentence_buckets():
    ds = load_split(DatasetCfg(path="bundled:single_sentence"))
    counts = collections.Counter(ds["token_count"])
    assert counts[15] >= 20
    assert min(counts) >= 5 and max(counts) <= 25
    assert all(counts[k] >= 1 for k in range(5, 26))
    assert set(ds["language"]) == {"en"} and set(ds["original_language"]) == {"en"}


def test_bundled_multi_sentence_and_multi_lingual_contents():
    ms = load_split(DatasetCfg(path="bundled:multi_sentence"))
    assert all(2 <= len(s) <= 4 for s in ms["sentences"])
    row = get_row(ms, 2)
    assert row.texts == ms[2]["sentences"] and len(row.texts) == 3

    ml = load_split(DatasetCfg(path="bundled:multi_lingual"))
    langs = collections.Counter(ml["language"])
    assert set(langs) == {"en", "fr", "de", "es", "it", "pl"}
    pairs = set(zip(ml["language"], ml["original_language"]))
    assert ("fr", "en") in pairs and ("pl", "pl") in pairs and ("en", "fr") in pairs


def test_bundled_missing_subset_or_split():
    with pytest.raises(FileNotFoundError, match="nope"):
        load_split(DatasetCfg(path="bundled:nope"))
    with pytest.raises(FileNotFoundError, match="train.parquet"):
        load_split(DatasetCfg(path="bundled:single_sentence", split="train"))


# ------------------------------------------------------------------------------------------------
# Bundled speech (read with soundfile; espeak-ng is never needed here)
# ------------------------------------------------------------------------------------------------


def _pitch(samples: np.ndarray, rate: int) -> float:
    """Median fundamental frequency (Hz) over the louder 40 ms frames, by autocorrelation (60-400 Hz)."""
    frame = int(0.04 * rate)
    starts = range(0, len(samples) - frame, frame // 2)
    energy = np.array([np.sum(samples[i:i + frame] ** 2) for i in starts])
    lo, hi = rate // 400, rate // 60
    estimates = []
    for i, e in zip(starts, energy):
        if e >= np.percentile(energy, 60):
            x = samples[i:i + frame] - samples[i:i + frame].mean()
            ac = np.correlate(x, x, "full")[frame - 1:]
            estimates.append(rate / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(estimates))


def _bundled_audio(subset: str) -> tuple[pa.Table, int]:
    """The committed table and its number of rows with audio (a prefix of the rows)."""
    table = pq.read_table(data.bundled_path(subset, "test"))
    present = [table.column(name).is_valid().to_pylist() for name in AUDIO]
    assert present[0] == present[1] == present[2]
    n = sum(present[0])
    assert present[0] == [True] * n + [False] * (table.num_rows - n)
    return table, n


@pytest.mark.parametrize("subset", sorted(BUNDLED_SHAPES))
def test_bundled_audio_clips(subset):
    script = _load_script()
    table, n = _bundled_audio(subset)
    assert n == script.AUDIO_ROWS[subset] and n >= 4
    meta = json.loads(table.schema.metadata[b"mllm_shapx.audio"])
    assert meta["rows_with_audio"] == n and meta["sample_rate"] == 16000
    assert meta["synthesizer"].startswith("espeak-ng ")
    assert meta["voices"] == {c: "<language voice>" + v for c, v in script.VOICE_VARIANTS.items()}
    texts = table.column("sentences" if subset == "multi_sentence" else "prompt").to_pylist()[:n]
    languages = table.column("language").to_pylist()[:n]
    durations, lengths = [], []
    for name in AUDIO:
        assert table.schema.field(name).type == script.AUDIO_TYPES[subset]
        for index, cell in enumerate(table.column(name).to_pylist()[:n]):
            sentences = texts[index] if subset == "multi_sentence" else [texts[index]]
            clips = cell if subset == "multi_sentence" else [cell]
            assert len(clips) == len(sentences)  # one clip per sentence
            durations.append(0.0)
            lengths.append(sum(len(t) for t in sentences))
            for clip, sentence in zip(clips, sentences):
                assert clip[:4] == b"RIFF" and clip[8:12] == b"WAVE"
                with wave.open(io.BytesIO(clip)) as w:  # PCM_16 mono 16 kHz
                    assert (w.getsampwidth(), w.getnchannels(), w.getframerate()) == (2, 1, 16000)
                samples, rate = decode_wav(clip)
                assert rate == 16000 and samples.dtype == np.float32 and samples.ndim == 1
                seconds = len(samples) / rate
                assert 0.5 < seconds < 12
                assert 0.025 < seconds / len(sentence) < 0.12, (subset, index, name, sentence, seconds)
                assert 0.3 < np.max(np.abs(samples)) < 1.0  # speech at a sane level, never clipped
                edge = int(0.03 * rate)  # 40 ms of silence on each side (less the resampling filter's reach)
                assert not samples[:edge].any() and not samples[-edge:].any()
                assert np.max(np.abs(samples[edge + int(0.02 * rate):][:int(0.1 * rate)])) > 0.001  # speech follows
                durations[-1] += seconds
    if subset == "multi_lingual":  # its audio rows: one prompt in six languages; durations comparable
        assert set(languages) == {"en", "fr", "de", "es", "it", "pl"}
        assert max(durations) < 2 * min(durations)
    else:  # English rows of varied lengths: the row's speech grows with its text
        assert np.corrcoef(durations, lengths)[0, 1] > 0.9


@pytest.mark.parametrize("subset", sorted(BUNDLED_SHAPES))
def test_bundled_voices_differ(subset):
    table, n = _bundled_audio(subset)
    for index in range(n):
        cells = {name: table.column(name)[index].as_py() for name in AUDIO}
        clips = {name: cell if isinstance(cell, list) else [cell] for name, cell in cells.items()}
        assert len({c for cs in clips.values() for c in cs}) == 3 * len(clips["audio__male"])  # all distinct
        male = np.concatenate([decode_wav(c)[0] for c in clips["audio__male"]])
        female = np.concatenate([decode_wav(c)[0] for c in clips["audio__female"]])
        original = np.concatenate([decode_wav(c)[0] for c in clips["audio__original"]])
        pitch = {"male": _pitch(male, 16000), "female": _pitch(female, 16000), "original": _pitch(original, 16000)}
        assert pitch["female"] > 1.5 * pitch["male"] and pitch["female"] > 1.5 * pitch["original"], pitch
        assert 70 < pitch["male"] < 150 and 150 < pitch["female"] < 300, pitch


def test_get_row_returns_bundled_audio_bytes():
    ds = load_split(DatasetCfg(path="bundled:multi_sentence"))
    table, n = _bundled_audio("multi_sentence")
    row = get_row(ds, 2)
    assert len(row.texts) == 3
    assert {name: row.audio[name] for name in AUDIO} == {name: table.column(name)[2].as_py() for name in AUDIO}
    assert all(len(clips) == 3 and all(isinstance(c, bytes) for c in clips) for clips in row.audio.values())
    assert get_row(ds, n).audio == {}
    ml = load_split(DatasetCfg(path="bundled:multi_lingual"))
    first = get_row(ml, 0)
    assert [len(first.audio[name]) for name in AUDIO] == [1, 1, 1]
    samples, rate = decode_wav(first.audio["audio__female"][0])
    assert rate == 16000 and len(samples) > rate // 2


def _wav(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return buffer.getvalue()


def test_decode_wav():
    mono = np.array([0, 16384, -16384, 32767, -32768], dtype=np.int16)
    samples, rate = decode_wav(_wav(mono, 22050))
    assert rate == 22050 and samples.dtype == np.float32 and samples.shape == (5,)
    np.testing.assert_allclose(samples, mono / 32768.0)
    stereo = np.array([[16384, 0], [-16384, -16384]], dtype=np.int16)  # interleaved L/R frames
    samples, rate = decode_wav(_wav(stereo.ravel(), 16000, channels=2))
    assert rate == 16000 and samples.shape == (2,)
    np.testing.assert_allclose(samples, [0.25, -0.5])  # channels averaged
    samples, _ = decode_wav({"bytes": _wav(mono, 16000), "path": "x.wav"})  # an Audio(decode=False) cell
    assert samples.shape == (5,)
    for bad in (b"", b"RIFF0000WAVEjunk", b"not audio at all"):
        with pytest.raises(ValueError, match="not a decodable WAV"):
            decode_wav(bad)
    with pytest.raises(ValueError, match="expects WAV bytes"):
        decode_wav("x.wav")


# ------------------------------------------------------------------------------------------------
# The build script (its audio path needs espeak-ng; what can be checked without it is checked here,
# the audio comparison runs in `scripts/build_bundled_data.py --check`)
# ------------------------------------------------------------------------------------------------


def test_committed_shards_equal_a_fresh_build(tmp_path):
    script = _load_script()
    tokenizer = script.load_tokenizer()
    first = script.build(tmp_path / "a", tokenizer=tokenizer)  # text columns only: no espeak-ng
    second = script.build(tmp_path / "b", tokenizer=tokenizer)
    assert sorted(first) == sorted(BUNDLED_SHAPES)
    for subset, path in first.items():
        # deterministic: two builds write the same bytes
        assert path.read_bytes() == second[subset].read_bytes()
        # the committed file holds exactly what the script builds (text columns), then the audio columns
        committed = data.bundled_path(subset, "test")
        fresh, stored = pq.read_table(path), pq.read_table(committed)
        assert fresh.column_names == TEXT_COLUMNS[subset]
        expected_schema = fresh.schema
        for name in AUDIO:
            expected_schema = expected_schema.append(pa.field(name, script.AUDIO_TYPES[subset]))
        assert stored.schema.equals(expected_schema)
        assert stored.select(fresh.column_names).equals(fresh), f"{committed} is out of date: run scripts/build_bundled_data.py"
        assert script.compare_tables(fresh, stored, audio=False) == []
    # and the token counts are the explainable-token counts of the SmolLM2 tokenizer
    table = pq.read_table(first["multi_sentence"])
    sentences, counts = table.column("sentences").to_pylist(), table.column("token_count").to_pylist()
    assert counts[0] == sum(data.count_explainable_tokens(tokenizer, s) for s in sentences[0])
    assert data.count_explainable_tokens(tokenizer, "Why is the sky blue?") == 5  # "?" is not a player


def test_script_without_espeak_names_the_apt_package(monkeypatch, capsys):
    script = _load_script()
    monkeypatch.setattr(script.shutil, "which", lambda name: None)
    with pytest.raises(script.EspeakMissing, match=r"apt-get install .*espeak-ng.*--no-audio"):
        script.EspeakAudio()
    with pytest.raises(script.EspeakMissing, match="espeak-ng"):
        script.synthesize("hello", "en")
    assert script.main(["--check"]) == 2  # audio requested: refused before anything is built
    assert "package 'espeak-ng'" in capsys.readouterr().err


def test_script_resampler():
    script = _load_script()
    n = np.arange(22050)
    for freq in (200, 1000, 3000, 6000):  # pass band: the 16 kHz sine, within -80 dB
        out = script.resample(0.5 * np.sin(2 * np.pi * freq * n / 22050), 22050, 16000)
        assert len(out) == (22050 - 1) * 16000 // 22050 + 1
        ideal = 0.5 * np.sin(2 * np.pi * freq * np.arange(len(out)) / 16000)
        assert np.max(np.abs(out - ideal)[200:-200]) < 0.5 * 1e-4
    for freq in (8200, 9000, 10000):  # above the new Nyquist frequency: removed, not aliased
        out = script.resample(0.5 * np.sin(2 * np.pi * freq * n / 22050), 22050, 16000)
        assert np.max(np.abs(out[200:-200])) < 0.5 * 1e-4
    ramp = np.linspace(-0.5, 0.5, 1000)
    np.testing.assert_array_equal(script.resample(ramp, 16000, 16000), ramp)
    # silence trimming: the loud part with exactly TRIM_PAD_SECONDS of silence on each side
    signal = np.concatenate([np.zeros(22050), 0.5 * np.ones(100), np.zeros(22050)])
    trimmed = script.trim_silence(signal, 22050)
    pad = round(script.TRIM_PAD_SECONDS * 22050)
    assert len(trimmed) == 100 + 2 * pad and trimmed[pad] == 0.5
    speech_first = script.trim_silence(np.concatenate([0.5 * np.ones(10), np.zeros(5000)]), 22050)
    assert len(speech_first) == 10 + 2 * pad and not speech_first[:pad].any() and speech_first[pad] == 0.5
    with pytest.raises(ValueError, match="silence"):
        script.trim_silence(np.zeros(100), 22050)


def test_script_wav_and_audio_comparison():
    script = _load_script()
    clip = script.wav_bytes(np.array([0.0, 0.5, -0.5, 1.5, -1.5]), 16000)
    assert len(clip) == 44 + 2 * 5
    samples, rate = script.read_pcm16(clip)
    assert rate == 16000 and samples.tolist() == [0, 16384, -16384, 32767, -32768]  # clipped, not wrapped
    near = script.wav_bytes(np.array([1, 16385, -16384, 32767, -32768]) / 32768, 16000)  # 1 LSB off
    far = script.wav_bytes(np.array([3, 16384, -16384, 32767, -32768]) / 32768, 16000)
    short = script.wav_bytes(np.array([0.0, 0.5]), 16000)
    assert script.same_audio(clip, clip) and script.same_audio(None, None)
    assert script.same_audio(clip, near) and script.same_audio([clip, clip], [near, clip])
    assert not script.same_audio(clip, far) and not script.same_audio(clip, short)
    assert not script.same_audio(clip, None) and not script.same_audio([clip], [clip, clip])
    assert not script.same_audio([clip], clip)

    def table(prompts, clips, meta=b"x"):
        schema = pa.schema([("prompt", pa.string()), ("audio__male", pa.binary())], metadata={b"mllm_shapx.audio": meta})
        return pa.Table.from_pydict({"prompt": prompts, "audio__male": clips}, schema=schema)

    fresh = table(["a", "b"], [clip, None])
    assert script.compare_tables(fresh, table(["a", "b"], [near, None])) == []
    assert script.compare_tables(fresh, table(["a", "b"], [far, None])) == ["column audio__male differs in rows [0]"]
    assert script.compare_tables(fresh, table(["a", "c"], [clip, None])) == ["column prompt differs in rows [1]"]
    assert script.compare_tables(fresh, table(["a", "b"], [clip, None], meta=b"y"))[0].startswith("audio metadata differs")
    text_only = fresh.select(["prompt"])
    assert script.compare_tables(text_only, table(["a", "b"], [far, clip], meta=b"y"), audio=False) == []
    assert script.compare_tables(fresh, text_only) == ["columns ['prompt'], expected ['prompt', 'audio__male']"]


# ------------------------------------------------------------------------------------------------
# Local files
# ------------------------------------------------------------------------------------------------


def test_local_parquet_file_and_shard_directory(tmp_path):
    pq.write_table(pa.table({"prompt": ["b0", "b1"], "token_count": [3, 4]}), tmp_path / "test-00001.parquet")
    pq.write_table(pa.table({"prompt": ["a0", "a1", "a2"], "token_count": [1, 2, 3]}), tmp_path / "test-00000.parquet")
    (tmp_path / "notes.txt").write_text("not a shard")

    one = load_split(DatasetCfg(path=str(tmp_path / "test-00001.parquet")))
    assert one["prompt"] == ["b0", "b1"]

    every = load_split(DatasetCfg(path=str(tmp_path)))
    assert every["prompt"] == ["a0", "a1", "a2", "b0", "b1"]  # shards in sorted order
    row = get_row(every, 3)
    assert row == Row(index=3, texts=["b0"], language="unknown", original_language="unknown", token_count=3)


def test_local_csv_file(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("prompt,language,original_language\nHello there,en,en\nBonjour,fr,en\n", encoding="utf-8")
    ds = load_split(DatasetCfg(path=str(path)))
    assert len(ds) == 2
    row = get_row(ds, 1)
    assert (row.texts, row.language, row.original_language, row.token_count) == (["Bonjour"], "fr", "en", None)


def test_local_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        load_split(DatasetCfg(path=str(tmp_path / "missing.parquet")))
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(ValueError, match=r"\.json"):
        load_split(DatasetCfg(path=str(tmp_path / "data.json")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.parquet"):
        load_split(DatasetCfg(path=str(tmp_path / "empty")))
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "wrong.parquet")
    with pytest.raises(ValueError, match="neither a 'prompt' nor a 'sentences' column"):
        load_split(DatasetCfg(path=str(tmp_path / "wrong.parquet")))


def test_check_columns():
    check_columns(datasets.Dataset.from_dict({"sentences": [["a", "b"]]}))
    check_columns(datasets.Dataset.from_dict({"prompt": ["a"]}))
    with pytest.raises(ValueError, match="columns: text"):
        check_columns(datasets.Dataset.from_dict({"text": ["a"]}))


# ------------------------------------------------------------------------------------------------
# Hub (never reached: the loaders are replaced)
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def no_hub(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError(f"the Hub was contacted: {args} {kwargs}")

    monkeypatch.setattr(data, "_hub_parquet_files", forbidden)
    monkeypatch.setattr(data, "_load_dataset", forbidden)


@pytest.mark.parametrize("revision", [None, "main", "6c046d6", SHA.upper(), SHA + "0"])
def test_unpinned_revision_refused_before_any_hub_call(no_hub, revision):
    cfg = DatasetCfg(repo_id="Pawlo77/mllm-shap", subset="single_sentence", revision=revision)
    with pytest.raises(ValueError, match="dataset.revision must be a 40-hex commit id.*dataset.allow_unpinned=true"):
        load_split(cfg)


def test_missing_repo_id(no_hub):
    with pytest.raises(ValueError, match="dataset.repo_id"):
        load_split(DatasetCfg(revision=SHA))


def _fake_hub(monkeypatch, tmp_path):
    """Serve the Hub listing from local shards; record the calls."""
    calls = []
    for name, prompts in (("test-00001-of-00002.parquet", ["late"]), ("test-00000-of-00002.parquet", ["early"])):
        pq.write_table(pa.table({"prompt": prompts}), tmp_path / name)

    def listing(repo_id, subset, split, revision):
        calls.append((repo_id, subset, split, revision))
        return sorted(str(p) for p in tmp_path.glob(f"{split}-*.parquet"))

    monkeypatch.setattr(data, "_hub_parquet_files", listing)
    return calls


@pytest.mark.parametrize("revision", ["main", None])
def test_unpinned_revision_allowed_with_flag(monkeypatch, tmp_path, revision):
    calls = _fake_hub(monkeypatch, tmp_path)
    cfg = DatasetCfg(repo_id="Pawlo77/mllm-shap", subset="single_sentence", revision=revision, allow_unpinned=True)
    ds = load_split(cfg)
    assert calls == [("Pawlo77/mllm-shap", "single_sentence", "test", revision)]
    assert ds["prompt"] == ["early", "late"]


def test_pinned_revision_needs_no_flag(monkeypatch, tmp_path):
    calls = _fake_hub(monkeypatch, tmp_path)
    ds = load_split(DatasetCfg(repo_id="Pawlo77/mllm-shap", subset="multi_sentence", revision=SHA))
    assert calls == [("Pawlo77/mllm-shap", "multi_sentence", "test", SHA)]
    assert len(ds) == 2


def test_use_parquet_false_calls_load_dataset_without_trust_remote_code(monkeypatch):
    calls = []

    def fake_load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return datasets.Dataset.from_dict({"prompt": ["hi"]})

    monkeypatch.setattr(data, "_load_dataset", fake_load_dataset)
    monkeypatch.setattr(data, "_hub_parquet_files", lambda *a: pytest.fail("parquet listing used"))
    cfg = DatasetCfg(repo_id="org/ds", subset="multi_lingual", revision=SHA, use_parquet=False, trust_remote_code=True)
    ds = load_split(cfg)
    assert len(ds) == 1
    assert calls == [(("org/ds",), {"name": "multi_lingual", "split": "test", "revision": SHA})]


@pytest.mark.parametrize(
    "revision, root",
    [(SHA, f"datasets/org/ds@{SHA}"), ("refs/convert/parquet", "datasets/org/ds@refs%2Fconvert%2Fparquet"), (None, "datasets/org/ds")],
)
def test_hub_parquet_listing_urls(monkeypatch, revision, root):
    import huggingface_hub

    patterns = []

    class FakeFs:
        def glob(self, pattern):
            patterns.append(pattern)
            if pattern.endswith("-*.parquet"):
                return [f"{root}/sub/test-00002-of-00003.parquet", f"{root}/sub/test-00000-of-00003.parquet"]
            return [f"{root}/sub/test/extra.parquet"] if revision is None else []

    monkeypatch.setattr(huggingface_hub, "HfFileSystem", FakeFs)
    files = data._hub_parquet_files("org/ds", "sub", "test", revision)
    assert patterns == [f"{root}/sub/test-*.parquet", f"{root}/sub/test/*.parquet"]
    expected = [f"hf://{root}/sub/test-00000-of-00003.parquet", f"hf://{root}/sub/test-00002-of-00003.parquet"]
    if revision is None:
        expected.append(f"hf://{root}/sub/test/extra.parquet")
    assert files == expected


def test_hub_parquet_listing_empty(monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfFileSystem", lambda: type("Fs", (), {"glob": lambda self, p: []})())
    with pytest.raises(FileNotFoundError, match="no parquet shards for split 'test'"):
        data._hub_parquet_files("org/ds", "sub", "test", SHA)


def test_hub_failure_names_the_offline_alternative(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("offline mode is enabled")

    monkeypatch.setattr(data, "_hub_parquet_files", offline)
    cfg = DatasetCfg(repo_id="Pawlo77/mllm-shap", subset="multi_lingual", revision=SHA)
    with pytest.raises(ConnectionError, match="dataset.path=bundled:multi_lingual"):
        load_split(cfg)


# ------------------------------------------------------------------------------------------------
# Rows
# ------------------------------------------------------------------------------------------------


def test_get_row_sentences_defaults_and_audio():
    wav_a, wav_b = b"RIFFaaaa", b"RIFFbbbb"
    ds = datasets.Dataset.from_dict(
        {
            "sentences": [["First turn.", "Second turn."], ["Only one."]],
            "language": ["en", None],
            "token_count": [4, None],
            "audio__male": [[wav_a, wav_b], [wav_a]],
            "audio__original": [{"bytes": wav_b, "path": "x.wav"}, None],
        }
    )
    first = get_row(ds, 0)
    assert first.texts == ["First turn.", "Second turn."]
    assert (first.language, first.original_language, first.token_count) == ("en", "unknown", 4)
    assert first.audio == {"audio__male": [wav_a, wav_b], "audio__original": [wav_b]}
    second = get_row(ds, 1)
    assert (second.texts, second.language, second.token_count) == (["Only one."], "unknown", None)
    assert second.audio == {"audio__male": [wav_a]}
    with pytest.raises(IndexError, match="out of range"):
        get_row(ds, 2)


# ------------------------------------------------------------------------------------------------
# Selection
# ------------------------------------------------------------------------------------------------


def test_select_start_and_max():
    ds = numbered(10)
    assert select_rows(ds, SelectionCfg(), Counter()) == list(range(10))
    assert select_rows(ds, SelectionCfg(start_index=3, max_samples=4), Counter()) == [3, 4, 5, 6]
    assert select_rows(ds, SelectionCfg(start_index=8, max_samples=4), Counter()) == [8, 9]
    assert select_rows(ds, SelectionCfg(max_samples=0), Counter()) == []


def test_select_shuffle_is_deterministic_and_returns_original_indices():
    ds = numbered(30)
    cfg = SelectionCfg(shuffle_seed=7)
    first = select_rows(ds, cfg, Counter())
    assert first == select_rows(ds, SelectionCfg(shuffle_seed=7), Counter())
    assert first == [int(i) for i in np.random.default_rng(7).permutation(30)]
    assert first != list(range(30))
    other = select_rows(ds, SelectionCfg(shuffle_seed=8), Counter())
    assert other != first and sorted(other) == sorted(first) == list(range(30))
    # start_index skips candidates of the shuffled order; values stay original row indices
    assert select_rows(ds, SelectionCfg(shuffle_seed=7, start_index=5, max_samples=3), Counter()) == first[5:8]
    picked = select_rows(ds, SelectionCfg(shuffle_seed=7, max_samples=4), Counter())
    assert [get_row(ds, i).texts[0] for i in picked] == [f"prompt {i}" for i in first[:4]]


def test_select_token_bounds():
    ds = numbered(20)  # token_count = i % 7
    cfg = SelectionCfg(min_prompt_tokens=2, max_prompt_tokens=4)
    assert select_rows(ds, cfg, Counter()) == [i for i in range(20) if 2 <= i % 7 <= 4]
    assert select_rows(ds, SelectionCfg(min_prompt_tokens=6), Counter()) == [6, 13]
    assert select_rows(ds, SelectionCfg(max_prompt_tokens=0), Counter()) == [0, 7, 14]
    assert select_rows(ds, SelectionCfg(min_prompt_tokens=5, max_samples=3), Counter()) == [5, 6, 12]


def test_select_counts_tokens_lazily():
    ds = numbered(50)
    counter = Counter()
    assert select_rows(ds, SelectionCfg(max_samples=5), counter) == [0, 1, 2, 3, 4]
    assert counter.calls == []  # no bound: never tokenized
    counter = Counter()
    assert select_rows(ds, SelectionCfg(min_prompt_tokens=3, max_samples=2), counter) == [3, 4]
    assert counter.calls == [0, 1, 2, 3, 4]  # stops as soon as enough rows qualified
    counter = Counter()
    select_rows(ds, SelectionCfg(shuffle_seed=1, start_index=10, min_prompt_tokens=0, max_samples=3), counter)
    assert counter.calls == [int(i) for i in np.random.default_rng(1).permutation(50)[10:13]]


def test_select_balanced_buckets():
    counts = [1, 2, 3, 2, 1, 2, 3, 1, 4, 2]
    ds = numbered(10, counts)
    cfg = SelectionCfg(balanced_token_counts=[2, 1], samples_per_token_count=2)
    assert select_rows(ds, cfg, Counter()) == [0, 1, 3, 4]  # candidate order, two per bucket
    counter = Counter()
    cfg = SelectionCfg(balanced_token_counts=[2, 1], samples_per_token_count=2, min_prompt_tokens=0)
    assert select_rows(ds, cfg, counter) == [0, 1, 3, 4]
    assert counter.calls == [0, 1, 3, 4]  # rows outside open buckets are never tokenized
    # max_samples caps the total
    cfg = SelectionCfg(balanced_token_counts=[2, 1], samples_per_token_count=3, max_samples=4)
    assert select_rows(ds, cfg, Counter()) == [0, 1, 3, 4]
    # with a shuffle: per-bucket picks follow the shuffled order, values are original indices
    perm = [int(i) for i in np.random.default_rng(3).permutation(10)]
    cfg = SelectionCfg(balanced_token_counts=[3, 4], samples_per_token_count=1, shuffle_seed=3)
    expected = [i for i in perm if counts[i] in (3, 4)]
    expected = [i for k, i in enumerate(expected) if counts[i] not in [counts[j] for j in expected[:k]]]
    assert select_rows(ds, cfg, Counter()) == expected


def test_select_balanced_short_bucket():
    ds = numbered(10, [1, 2, 3, 2, 1, 2, 3, 1, 4, 2])
    cfg = SelectionCfg(balanced_token_counts=[2, 4], samples_per_token_count=2)
    with pytest.raises(ValueError, match=r"token_count=4: 1 of 2.*allow_partial_token_count_buckets"):
        select_rows(ds, cfg, Counter())
    cfg.allow_partial_token_count_buckets = True
    assert select_rows(ds, cfg, Counter()) == [1, 3, 8]
    # a filter that leaves a bucket short is reported the same way
    cfg = SelectionCfg(balanced_token_counts=[1], samples_per_token_count=1, min_prompt_tokens=2)
    with pytest.raises(ValueError, match=r"token_count=1: 0 of 1"):
        select_rows(ds, cfg, Counter())


def test_select_balanced_on_bundled_single_sentence():
    ds = load_split(DatasetCfg(path="bundled:single_sentence"))
    cfg = SelectionCfg(balanced_token_counts=[15], samples_per_token_count=20, shuffle_seed=42)
    picked = select_rows(ds, cfg, Counter())
    assert len(picked) == 20 and all(ds[i]["token_count"] == 15 for i in picked)


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"start_index": -1}, "selection.start_index"),
        ({"start_index": 10}, "selection.start_index"),
        ({"start_index": 1.5}, "selection.start_index"),
        ({"max_samples": -1}, "selection.max_samples"),
        ({"shuffle_seed": True}, "selection.shuffle_seed"),
        ({"min_prompt_tokens": 5, "max_prompt_tokens": 2}, "selection.min_prompt_tokens"),
        ({"max_prompt_tokens": "3"}, "selection.max_prompt_tokens"),
        ({"balanced_token_counts": [1, 2]}, "selection.samples_per_token_count"),
        ({"samples_per_token_count": 2}, "selection.samples_per_token_count"),
        ({"balanced_token_counts": [], "samples_per_token_count": 1}, "selection.balanced_token_counts"),
        ({"balanced_token_counts": [1, 1], "samples_per_token_count": 1}, "selection.balanced_token_counts"),
        ({"balanced_token_counts": [1], "samples_per_token_count": 0}, "selection.samples_per_token_count"),
        ({"allow_partial_token_count_buckets": "yes"}, "selection.allow_partial_token_count_buckets"),
    ],
)
def test_select_config_errors(changes, key):
    cfg = SelectionCfg(**changes)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        select_rows(numbered(10), cfg, Counter())


def test_select_balanced_needs_token_count_column():
    ds = datasets.Dataset.from_dict({"prompt": ["a", "b"]})
    cfg = SelectionCfg(balanced_token_counts=[1], samples_per_token_count=1)
    with pytest.raises(ValueError, match="'token_count' column"):
        select_rows(ds, cfg, Counter())
