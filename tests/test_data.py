"""Tests of mllm_shapx.data and the bundled offline shards (real datasets library, real files)."""

from __future__ import annotations

import collections
import importlib.util
import os
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
from mllm_shapx.data import Row, check_columns, get_row, load_split, select_rows  # noqa: E402

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

BUNDLED_SHAPES = {
    "single_sentence": (["prompt", "language", "original_language", "token_count"], 128),
    "multi_sentence": (["sentences", "language", "original_language", "token_count"], 40),
    "multi_lingual": (["prompt", "language", "original_language", "token_count"], 60),
}


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
    assert row.audio == {}


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


def _load_script():
    spec = importlib.util.spec_from_file_location("build_bundled_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_shards_equal_a_fresh_build(tmp_path):
    script = _load_script()
    tokenizer = script.load_tokenizer()
    first = script.build(tmp_path / "a", tokenizer=tokenizer)
    second = script.build(tmp_path / "b", tokenizer=tokenizer)
    assert sorted(first) == sorted(BUNDLED_SHAPES)
    for subset, path in first.items():
        # deterministic: two builds write the same bytes
        assert path.read_bytes() == second[subset].read_bytes()
        # the committed file holds exactly what the script builds
        committed = data.bundled_path(subset, "test")
        fresh, stored = pq.read_table(path), pq.read_table(committed)
        assert stored.schema.equals(fresh.schema)
        assert stored.equals(fresh), f"{committed} is out of date: run scripts/build_bundled_data.py"
    # and the token counts are the explainable-token counts of the SmolLM2 tokenizer
    table = pq.read_table(first["multi_sentence"])
    sentences, counts = table.column("sentences").to_pylist(), table.column("token_count").to_pylist()
    assert counts[0] == sum(data.count_explainable_tokens(tokenizer, s) for s in sentences[0])
    assert data.count_explainable_tokens(tokenizer, "Why is the sky blue?") == 5  # "?" is not a player


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
