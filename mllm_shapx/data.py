"""Dataset loading, rows and row selection (SPEC §3).

Plain Python: the functions receive config objects (dataclasses, DictConfigs, ...) and read them by
attribute only. Nothing here imports Hydra.

Identity rule: a row is always named by its index in the split *as loaded* (every parquet shard of
the split, in sorted order). Shuffling only changes the order in which rows are visited; the indices
returned by :func:`select_rows` are original row indices, so changing ``selection.shuffle_seed``
never relabels a sample.
"""

from __future__ import annotations

import io
import logging
import re
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

BUNDLED_PREFIX = "bundled:"
BUNDLED_ROOT = Path(__file__).resolve().parent / "bundled"
# The Hub dataset's subsets (Pawlo77/mllm-shap), each with a bundled offline shard and a conf/dataset option.
BUNDLED_SUBSETS = ("single_sentence", "multi_sentence", "multi_lingual")

TEXT_COLUMNS = ("prompt", "sentences")
AUDIO_COLUMNS = ("audio__original", "audio__male", "audio__female")
UNKNOWN_LANGUAGE = "unknown"

_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def is_pinned_revision(revision: Any) -> bool:
    """True for a full 40-hex (lower-case) commit id."""
    return isinstance(revision, str) and bool(_SHA_RE.match(revision))


def bundled_path(subset: str, split: str = "test") -> Path:
    """The packaged offline shard ``mllm_shapx/bundled/<subset>/<split>.parquet`` (may not exist)."""
    if not subset or "/" in subset or "\\" in subset or subset.startswith("."):
        raise ValueError(f"dataset.path: invalid bundled subset {subset!r}")
    if not split or "/" in split or "\\" in split or split.startswith("."):
        raise ValueError(f"dataset.split: invalid split name {split!r}")
    return BUNDLED_ROOT / subset / f"{split}.parquet"


def resolve_local_files(path: str | Path, split: str = "test") -> tuple[str, list[str]]:
    """Map ``dataset.path`` to (builder name, sorted list of files).

    ``bundled:<subset>`` -> the packaged shard for ``split``; a ``.parquet`` / ``.csv`` file; or a
    directory of ``*.parquet`` shards (sorted by name).
    """
    text = str(path)
    if text.startswith(BUNDLED_PREFIX):
        subset = text[len(BUNDLED_PREFIX):]
        file = bundled_path(subset, split)
        if not file.is_file():
            known = sorted(p.name for p in BUNDLED_ROOT.iterdir() if p.is_dir()) if BUNDLED_ROOT.is_dir() else []
            raise FileNotFoundError(
                f"dataset.path={text!r}: bundled file {file} not found (bundled subsets: {', '.join(known) or 'none'})"
            )
        return "parquet", [str(file)]
    local = Path(text).expanduser()
    if local.is_dir():
        shards = sorted(str(p) for p in local.glob("*.parquet") if p.is_file())
        if not shards:
            raise FileNotFoundError(f"dataset.path={text!r}: directory {local} holds no *.parquet files")
        return "parquet", shards
    if not local.is_file():
        raise FileNotFoundError(f"dataset.path={text!r}: file {local} not found")
    suffix = local.suffix.lower()
    if suffix == ".parquet":
        return "parquet", [str(local)]
    if suffix == ".csv":
        return "csv", [str(local)]
    raise ValueError(f"dataset.path={text!r}: unsupported file type {suffix or '(none)'}; use .parquet or .csv")


def _hub_parquet_files(repo_id: str, subset: str | None, split: str, revision: str | None) -> list[str]:
    """Every parquet shard of one split on the Hub, as sorted ``hf://`` URLs (one listing call).

    Layout of ``push_to_hub`` datasets: ``<subset>/<split>-00000-of-0000N.parquet``; a
    ``<subset>/<split>/*.parquet`` folder is accepted too.
    """
    from huggingface_hub import HfFileSystem

    # hf:// URLs carry the revision after '@'; a branch name like refs/convert/parquet must be quoted.
    at = f"@{urllib.parse.quote(revision, safe='')}" if revision else ""
    prefix = f"datasets/{repo_id}{at}"
    base = f"{prefix}/{subset}" if subset else prefix
    fs = HfFileSystem()
    found: set[str] = set()
    for pattern in (f"{base}/{split}-*.parquet", f"{base}/{split}/*.parquet"):
        found.update(fs.glob(pattern))
    if not found:
        raise FileNotFoundError(
            f"no parquet shards for split {split!r} of {repo_id!r} subset {subset!r} at revision {revision!r} "
            f"(looked for {base}/{split}-*.parquet and {base}/{split}/*.parquet)"
        )
    # fs.glob returns paths without the protocol; sort by the shard file name so that
    # split-00000-of-00003 < split-00001-of-00003 < ... (plain string order of the full path).
    return ["hf://" + p for p in sorted(found)]


def _load_dataset(*args, **kwargs):
    """Indirection over ``datasets.load_dataset`` (one place to patch in tests)."""
    from datasets import load_dataset

    return load_dataset(*args, **kwargs)


def load_split(dataset_cfg: Any):
    """Load one split as a ``datasets.Dataset`` (row order = order of the shards as loaded).

    ``dataset_cfg`` attributes: ``repo_id, subset, split, revision, allow_unpinned, use_parquet,
    trust_remote_code, path``.
    """
    split = _attr(dataset_cfg, "split", "test") or "test"
    path = _attr(dataset_cfg, "path", None)
    if path:
        builder, files = resolve_local_files(path, split)
        ds = _load_dataset(builder, data_files=files, split="train")
        check_columns(ds, where=f"dataset.path={path!r}")
        return ds

    repo_id = _attr(dataset_cfg, "repo_id", None)
    if not repo_id:
        raise ValueError("dataset.repo_id is required when dataset.path is not set")
    subset = _attr(dataset_cfg, "subset", None)
    revision = _attr(dataset_cfg, "revision", None)
    allow_unpinned = bool(_attr(dataset_cfg, "allow_unpinned", False))
    if not is_pinned_revision(revision):
        if not allow_unpinned:
            raise ValueError(
                f"dataset.revision must be a 40-hex commit id (got {revision!r}), so that a run always "
                "reads the same data; set dataset.allow_unpinned=true to accept a branch, tag or no revision"
            )
        logger.warning("dataset.revision=%r is not a commit id: the data may change between runs", revision)

    trust_remote_code = bool(_attr(dataset_cfg, "trust_remote_code", False))
    try:
        if _attr(dataset_cfg, "use_parquet", True):
            files = _hub_parquet_files(repo_id, subset, split, revision)
            ds = _load_dataset("parquet", data_files=files, split="train")
        else:
            # datasets >= 4 dropped loading scripts: load_dataset still swallows a `trust_remote_code`
            # keyword but only logs an error when it is true. We do not pass it; a script-based dataset
            # cannot be loaded either way (convert it to parquet and use dataset.use_parquet=true).
            if trust_remote_code:
                logger.warning(
                    "dataset.trust_remote_code=true is ignored: datasets %s no longer runs dataset loading scripts",
                    _datasets_version(),
                )
            ds = _load_dataset(repo_id, name=subset, split=split, revision=revision)
    except (ConnectionError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        hint = f" (offline: use dataset.path=bundled:{subset})" if subset in BUNDLED_SUBSETS else ""
        raise ConnectionError(
            f"could not load {repo_id!r} subset={subset!r} split={split!r} revision={revision!r} from the Hub: "
            f"{exc}{hint}"
        ) from exc
    check_columns(ds, where=f"{repo_id} subset={subset!r} split={split!r}")
    return ds


def check_columns(ds: Any, where: str | None = None) -> None:
    """Raise ValueError unless the dataset has a ``prompt`` or a ``sentences`` column."""
    columns = list(ds.column_names)
    if not any(c in columns for c in TEXT_COLUMNS):
        origin = f" ({where})" if where else ""
        raise ValueError(
            f"dataset{origin} has neither a 'prompt' nor a 'sentences' column; columns: {', '.join(columns) or 'none'}"
        )


def _datasets_version() -> str:
    try:
        import datasets

        return datasets.__version__
    except Exception:  # pragma: no cover - datasets is a hard dependency
        return "?"


# --------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------


@dataclass
class Row:
    index: int
    texts: list[str]
    language: str = UNKNOWN_LANGUAGE
    original_language: str = UNKNOWN_LANGUAGE
    token_count: int | None = None
    audio: dict[str, list[bytes]] = field(default_factory=dict)

    def require_audio(self, column: str) -> None:
        if column not in self.audio:
            raise MissingAudio(f"row {self.index} has no {column} audio")

    def clips(self, column: str, sampling_rate: int = 16000) -> list[np.ndarray]:
        """The row's clips of an audio column, decoded to float32 mono at ``sampling_rate``."""
        self.require_audio(column)
        return [resample(*decode_wav(data), sampling_rate) for data in self.audio[column]]


class MissingAudio(ValueError):
    """The row has no audio in the column an audio modality needs."""


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (scipy) when a dataset's audio is not at the model's rate."""
    if rate == target:
        return samples
    from math import gcd

    import numpy as np
    from scipy.signal import resample_poly

    g = gcd(int(rate), int(target))
    return resample_poly(samples, target // g, rate // g).astype(np.float32)


def get_row(ds: Any, index: int) -> Row:
    """Row ``index`` of the split as loaded."""
    n = len(ds)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
        raise IndexError(f"row index {index!r} out of range for a split of {n} rows")
    record = ds[index]
    texts = _texts_of(record, index)
    token_count = record.get("token_count")
    audio = {}
    for column in AUDIO_COLUMNS:
        if column in record and record[column] is not None:
            clips = _audio_bytes(record[column], column, index)
            if clips:
                audio[column] = clips
    return Row(
        index=index,
        texts=texts,
        language=_language(record.get("language")),
        original_language=_language(record.get("original_language")),
        token_count=None if token_count is None else int(token_count),
        audio=audio,
    )


def _texts_of(record: dict, index: int) -> list[str]:
    sentences = record.get("sentences")
    if sentences is not None:
        if isinstance(sentences, str):
            sentences = [sentences]
        texts = [str(s) for s in sentences if s is not None]
        if texts:
            return texts
    prompt = record.get("prompt")
    if prompt is not None:
        return [str(prompt)]
    raise ValueError(f"row {index}: no text ('prompt' and 'sentences' are both empty)")


def _language(value: Any) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        return UNKNOWN_LANGUAGE
    return str(value)


def _audio_bytes(value: Any, column: str, index: int) -> list[bytes]:
    """WAV bytes of an audio cell: bytes, ``{"bytes": ..., "path": ...}``, or a list of those."""
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, dict):
            item = item.get("bytes")
            if item is None:
                raise ValueError(f"row {index}: column {column!r} holds an audio entry without bytes")
        if isinstance(item, (bytes, bytearray, memoryview)):
            out.append(bytes(item))
        else:
            raise ValueError(f"row {index}: column {column!r} holds {type(item).__name__}, expected WAV bytes")
    return out


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Decode audio bytes (WAV; anything libsndfile reads) with soundfile: float32 mono samples in
    [-1, 1] (channels averaged) and the sample rate. No resampling. Raises ValueError on bytes that are
    not audio. (datasets' ``Audio()`` decoding needs torchcodec; the audio columns are plain bytes.)"""
    import numpy as np
    import soundfile as sf

    if isinstance(data, dict):  # a datasets Audio(decode=False) struct
        data = data.get("bytes")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"decode_wav expects WAV bytes, got {type(data).__name__}")
    try:
        samples, rate = sf.read(io.BytesIO(bytes(data)), dtype="float32", always_2d=True)
    except (RuntimeError, TypeError) as exc:  # soundfile.LibsndfileError is a RuntimeError
        raise ValueError(f"not a decodable WAV/audio file ({len(data)} bytes): {exc}") from exc
    mono = samples[:, 0] if samples.shape[1] == 1 else samples.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)


def count_explainable_tokens(tokenizer: Any, texts: str | Iterable[str], token_filter: str = "exclude_punctuation") -> int:
    """Explainable tokens of the prompt text(s): each text tokenized on its own without special
    tokens, each token decoded on its own and kept if explainable; summed over the texts."""
    from .tokens import explainable_positions

    if isinstance(texts, str):
        texts = [texts]
    total = 0
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        total += len(explainable_positions(tokenizer, ids, range(len(ids)), token_filter))
    return total


# --------------------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------------------


def select_rows(ds: Any, selection_cfg: Any, count_tokens: Callable[[Row], int]) -> list[int]:
    """Original row indices to process, in visiting order (SPEC §3). A pure function of data + config.

    Candidates are 0..len-1, permuted with ``numpy.random.default_rng(shuffle_seed)`` when a seed is
    set, minus the first ``start_index`` of them. A candidate qualifies when ``count_tokens(row)`` lies
    in [min_prompt_tokens, max_prompt_tokens] (``count_tokens`` is only called when a bound is set,
    and only until enough rows are found). Scanning stops at ``max_samples`` rows.

    Balanced mode (``balanced_token_counts`` set): at most ``samples_per_token_count`` qualifying rows
    per value of the ``token_count`` column, taken and returned in candidate order; a bucket left short
    after the whole split was scanned is an error unless ``allow_partial_token_count_buckets``. When
    ``max_samples`` stops the scan first, the buckets are not checked (the cap is intended).
    """
    n = len(ds)
    start_index = _opt_int(selection_cfg, "start_index", minimum=0) or 0
    max_samples = _opt_int(selection_cfg, "max_samples", minimum=0)
    shuffle_seed = _opt_int(selection_cfg, "shuffle_seed", minimum=0)
    min_tokens = _opt_int(selection_cfg, "min_prompt_tokens", minimum=0)
    max_tokens = _opt_int(selection_cfg, "max_prompt_tokens", minimum=0)
    if min_tokens is not None and max_tokens is not None and min_tokens > max_tokens:
        raise ValueError(
            f"selection.min_prompt_tokens={min_tokens} is greater than selection.max_prompt_tokens={max_tokens}"
        )
    buckets = _opt_int_list(selection_cfg, "balanced_token_counts")
    per_bucket = _opt_int(selection_cfg, "samples_per_token_count", minimum=1)
    allow_partial = _opt_bool(selection_cfg, "allow_partial_token_count_buckets")
    if buckets is not None:
        if per_bucket is None:
            raise ValueError("selection.samples_per_token_count must be set when selection.balanced_token_counts is set")
        if "token_count" not in ds.column_names:
            raise ValueError("selection.balanced_token_counts needs a 'token_count' column, which the dataset lacks")
    elif per_bucket is not None:
        raise ValueError("selection.samples_per_token_count is set but selection.balanced_token_counts is not")

    if start_index > n or (start_index == n and n > 0):
        raise ValueError(f"selection.start_index={start_index} is past the end of the split ({n} rows)")

    if shuffle_seed is None:
        order: Sequence[int] = range(n)
    else:
        import numpy as np

        order = [int(i) for i in np.random.default_rng(shuffle_seed).permutation(n)]
    candidates = order[start_index:]

    bounded = min_tokens is not None or max_tokens is not None

    def qualifies(index: int) -> bool:
        if not bounded:
            return True
        count = count_tokens(get_row(ds, index))
        return (min_tokens is None or count >= min_tokens) and (max_tokens is None or count <= max_tokens)

    selected: list[int] = []
    if max_samples == 0:
        return selected

    if buckets is None:
        for index in candidates:
            if qualifies(index):
                selected.append(index)
                if max_samples is not None and len(selected) >= max_samples:
                    break
        return selected

    token_counts = list(ds["token_count"])
    filled = {b: 0 for b in buckets}
    open_buckets = len(buckets)
    capped = False
    for index in candidates:
        value = token_counts[index]
        bucket = None if value is None else int(value)
        if bucket not in filled or filled[bucket] >= per_bucket:
            continue  # cheap check first: count_tokens only for rows that could still be taken
        if not qualifies(index):
            continue
        selected.append(index)
        filled[bucket] += 1
        if filled[bucket] == per_bucket:
            open_buckets -= 1
        if max_samples is not None and len(selected) >= max_samples:
            capped = True
            break
        if open_buckets == 0:
            break
    if not capped and open_buckets and not allow_partial:
        short = ", ".join(f"token_count={b}: {k} of {per_bucket}" for b, k in filled.items() if k < per_bucket)
        raise ValueError(
            f"selection.balanced_token_counts: not enough qualifying rows for bucket(s) {short} "
            f"(after start_index / min/max_prompt_tokens); set selection.allow_partial_token_count_buckets=true "
            "to accept short buckets"
        )
    return selected


# --------------------------------------------------------------------------------------------------
# Config access
# --------------------------------------------------------------------------------------------------

_MISSING = object()


def _attr(cfg: Any, name: str, default: Any = None) -> Any:
    value = getattr(cfg, name, _MISSING)
    return default if value is _MISSING else value


def _opt_int(cfg: Any, name: str, minimum: int | None = None) -> int | None:
    value = _attr(cfg, name, None)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"selection.{name} must be an integer or null, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"selection.{name} must be >= {minimum} (or null), got {value}")
    return int(value)


def _opt_bool(cfg: Any, name: str) -> bool:
    value = _attr(cfg, name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValueError(f"selection.{name} must be true or false, got {value!r}")
    return value


def _opt_int_list(cfg: Any, name: str) -> list[int] | None:
    value = _attr(cfg, name, None)
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"selection.{name} must be a list of integers or null, got {value!r}")
    items = list(value)
    if not items:
        raise ValueError(f"selection.{name} is an empty list; use null to disable balanced selection")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise ValueError(f"selection.{name} must hold integers, got {item!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"selection.{name} holds duplicates: {items}")
    return [int(i) for i in items]
