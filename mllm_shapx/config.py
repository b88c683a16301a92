"""Typed structured configs: the single source of truth for every key, type and default.

Registered in Hydra's ConfigStore as ``base_config`` (the schema ``conf/config.yaml`` builds on), so
a typo'd key or a wrong type fails at compose time naming the key. ``check_config`` adds the checks
a type cannot express (one budget per estimator, pinned revisions, ...) and runs before any model or
data is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from .data import is_pinned_revision

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"  # the app's Hydra config tree (a checkout's conf/)


class ExplainerType(str, Enum):
    exact = "exact"
    limited_mc = "limited_mc"
    standard_mc = "standard_mc"
    limited_cc = "limited_cc"
    standard_cc = "standard_cc"
    limited_neyman = "limited_neyman"
    standard_neyman = "standard_neyman"
    hierarchical = "hierarchical"


class Estimand(str, Enum):
    shapley = "shapley"
    banzhaf = "banzhaf"


class Mode(str, Enum):
    CONTEXTUAL = "CONTEXTUAL"
    STATIC = "STATIC"


class Similarity(str, Enum):
    CosineSimilarity = "CosineSimilarity"
    TfIdfCosineSimilarity = "TfIdfCosineSimilarity"
    EuclideanSimilarity = "EuclideanSimilarity"


class Reducer(str, Enum):
    MeanReducer = "MeanReducer"
    MaxReducer = "MaxReducer"
    MinReducer = "MinReducer"
    SumReducer = "SumReducer"
    FirstReducer = "FirstReducer"
    ZeroReducer = "ZeroReducer"


class Normalizer(str, Enum):
    AbsSumNormalizer = "AbsSumNormalizer"
    IdentityNormalizer = "IdentityNormalizer"
    MinMaxNormalizer = "MinMaxNormalizer"
    PowerShiftNormalizer = "PowerShiftNormalizer"


class TokenFilter(str, Enum):
    exclude_punctuation = "exclude_punctuation"
    none = "none"


class InputModality(str, Enum):
    text = "text"
    audio__original = "audio__original"
    audio__male = "audio__male"
    audio__female = "audio__female"
    interleaved__text_first__male = "interleaved__text_first__male"
    interleaved__text_first__female = "interleaved__text_first__female"
    interleaved__audio_first__male = "interleaved__audio_first__male"
    interleaved__audio_first__female = "interleaved__audio_first__female"


class OutputModality(str, Enum):
    text = "text"
    audio = "audio"


class ConnectorType(str, Enum):
    hf_text = "hf_text"
    hf_audio = "hf_audio"
    liquid_audio = "liquid_audio"


class SegmentationMethod(str, Enum):
    raw = "raw"
    pauses = "pauses"


class DType(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class WandbMode(str, Enum):
    online = "online"
    offline = "offline"
    disabled = "disabled"


@dataclass
class DatasetConf:
    """Where rows come from: a Hub shard (pinned), a local parquet/csv ``path``, or ``bundled:<subset>``."""

    repo_id: Optional[str] = None
    subset: Optional[str] = None
    split: str = "test"
    revision: Optional[str] = None
    allow_unpinned: bool = False
    use_parquet: bool = True
    trust_remote_code: bool = False
    path: Optional[str] = None


@dataclass
class ShapConf:
    explainer_type: ExplainerType = MISSING
    num_samples: Optional[int] = None
    fraction: Optional[float] = None
    linear: Optional[float] = None
    estimand: Estimand = Estimand.shapley
    # CC/Neyman: subtract an additive fit before stratifying (variance down, bias O(1/budget)); false =
    # the plain Zhang et al. estimator.
    control_variate: bool = True
    mode: Mode = Mode.CONTEXTUAL
    similarity: Similarity = Similarity.TfIdfCosineSimilarity
    reducer: Reducer = Reducer.MeanReducer
    normalizer: Normalizer = Normalizer.AbsSumNormalizer
    power: float = 1.0
    token_filter: TokenFilter = TokenFilter.exclude_punctuation
    name: Optional[str] = None
    # hierarchical only; a sampling inner explainer without shap_num_samples/shap_fraction gets the
    # minimal budget (-1) per inner game
    k: Optional[int] = None
    shap_type: Optional[ExplainerType] = None
    shap_num_samples: Optional[int] = None
    shap_fraction: Optional[float] = None
    first_layer_type: Optional[ExplainerType] = None
    first_layer_num_samples: Optional[int] = None
    first_layer_fraction: Optional[float] = None
    importance_min_fraction: Optional[float] = None


@dataclass
class ModalityConf:
    input_modality: InputModality = InputModality.text
    output_modality: OutputModality = OutputModality.text


@dataclass
class ConnectorConf:
    """A chat model. ``model`` is a hub id, a local directory, or ``embedded:<name>`` (shipped on PyPI)."""

    type: ConnectorType = ConnectorType.hf_text
    model: str = MISSING
    revision: Optional[str] = None
    dtype: DType = DType.float32
    system_prompt: Optional[str] = None
    trust_remote_code: bool = False


@dataclass
class SelectionConf:
    start_index: int = 0
    max_samples: Optional[int] = None
    shuffle_seed: Optional[int] = None
    min_prompt_tokens: Optional[int] = None
    max_prompt_tokens: Optional[int] = None
    balanced_token_counts: Optional[List[int]] = None
    samples_per_token_count: Optional[int] = None
    allow_partial_token_count_buckets: bool = False


@dataclass
class GenerationConf:
    max_new_tokens: int = 32
    text_temperature: float = 0.0
    text_top_k: Optional[int] = None
    batch_size: int = 16


@dataclass
class EmbeddingConf:
    """An external sentence-embedding model; when ``model_id`` is set it replaces ``shap.mode``."""

    model_id: Optional[str] = None
    revision: Optional[str] = None
    max_length: int = 64
    batch_size: int = 1  # answers per encoder forward pass; 1 keeps v(S) bit-for-bit batch-independent
    l2_normalize: bool = True
    local_files_only: bool = False


@dataclass
class WandbConf:
    enabled: bool = False
    project: str = "mllm-shapx"
    entity: Optional[str] = None
    group: Optional[str] = None
    mode: WandbMode = WandbMode.offline
    tags: List[str] = field(default_factory=list)
    log_samples: bool = False


@dataclass
class AudioSegmentationConf:
    """How a clip is cut into audio players (see ``mllm_shapx/audio.py``).

    ``raw``: fixed-length segments of ``segment_ms`` (rounded to whole audio tokens of the connector;
    null = one token: 40 ms for Qwen2-Audio, 80 ms for LFM2-Audio). ``pauses``: split at low-energy
    gaps, so a player is roughly a word.
    """

    method: SegmentationMethod = SegmentationMethod.raw
    segment_ms: Optional[float] = None
    pause_threshold_db: float = -30.0
    pause_min_gap_ms: float = 60.0
    pause_max_segment_ms: Optional[float] = 600.0
    aligner_device: str = "cpu"  # the original's key (forced aligner); kept for its configs, unused


@dataclass
class RuntimeConf:
    """How a run executes; none of these change results, so they are not part of a run's identity."""

    num_threads: Optional[int] = None
    progress_bar: bool = True


@dataclass
class ShardConf:
    """Split one run's rows over ``count`` jobs: this job takes every ``count``-th selected row."""

    index: int = 0
    count: int = 1


@dataclass
class RunConfig:
    dataset: DatasetConf = field(default_factory=DatasetConf)
    shap: ShapConf = field(default_factory=ShapConf)
    modality: ModalityConf = field(default_factory=ModalityConf)
    connector: ConnectorConf = field(default_factory=ConnectorConf)
    experiment_set_id: str = "default"
    output_root: str = "experiments_output"
    device: Optional[Device] = None
    seed: int = 0
    resume: bool = True
    dry_run: bool = False
    selection: SelectionConf = field(default_factory=SelectionConf)
    generation: GenerationConf = field(default_factory=GenerationConf)
    embedding: EmbeddingConf = field(default_factory=EmbeddingConf)
    wandb: WandbConf = field(default_factory=WandbConf)
    audio_segmentation: AudioSegmentationConf = field(default_factory=AudioSegmentationConf)
    runtime: RuntimeConf = field(default_factory=RuntimeConf)
    shard: ShardConf = field(default_factory=ShardConf)


# Keys that do not change what a run computes: excluded from a run directory's identity, so changing
# them (or raising selection.max_samples) resumes the same directory instead of being refused.
NON_IDENTITY_KEYS = (
    "selection.max_samples",
    "resume",
    "dry_run",
    "output_root",
    "device",
    "wandb",
    "runtime",
    "shard",
)


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=RunConfig)


class ConfigError(ValueError):
    """A configuration problem: final, never worth retrying (exit code 2)."""

    def __init__(self, problems: List[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def __reduce__(self):  # survives pickling (submitit ships a job's exception back to the driver)
        return type(self), (self.problems,)


_BUDGET_KEYS = ("num_samples", "fraction", "linear")
MIN_GROUPS = 2  # hierarchical: the fewest groups per level (shap.k)


# The value ranges of the budgets, shared with the legacy-JSON importer (each side words its own message).
def is_budget_count(num_samples: int) -> bool:
    """A coalition count: positive, or -1 (the minimal budget: empty + leave-one-outs)."""
    return num_samples == -1 or num_samples > 0


def is_unit_fraction(value: float) -> bool:
    """In (0, 1]: a budget fraction, or hierarchical's importance_min_fraction."""
    return 0 < value <= 1


def is_linear(value: float) -> bool:
    """In (0, 10]: a linear budget (coalitions per player)."""
    return 0 < value <= 10


def _budget_range_problems(prefix: str, num_samples, fraction, linear=None) -> List[str]:
    problems = []
    if num_samples is not None and not is_budget_count(num_samples):
        problems.append(f"{prefix}num_samples: {num_samples} is not a positive count or -1 (minimal)")
    if fraction is not None and not is_unit_fraction(fraction):
        problems.append(f"{prefix}fraction: {fraction} is outside (0, 1]")
    if linear is not None and not is_linear(linear):
        problems.append(f"{prefix}linear: {linear} is outside (0, 10]")
    return problems


def _budget_problems(shap: DictConfig) -> List[str]:
    from .estimators import BUDGET_FREE

    given = [k for k in _BUDGET_KEYS if shap[k] is not None]
    kind = shap.explainer_type.value
    if kind in BUDGET_FREE:
        return [f"shap.{k}: not used by shap={kind}; remove it" for k in given]
    problems = []
    if len(given) != 1:
        problems.append(
            f"shap: {kind} needs exactly one of shap.num_samples, shap.fraction, shap.linear "
            f"(got {', '.join('shap.' + k for k in given) or 'none'})"
        )
    return problems + _budget_range_problems("shap.", shap.num_samples, shap.fraction, shap.linear)


def _hierarchical_problems(shap: DictConfig) -> List[str]:
    problems = []
    if shap.k is None or shap.k < MIN_GROUPS:
        problems.append(f"shap.k: hierarchical needs k >= 2 groups per level (got {shap.k})")
    for layer, kind in (("shap", shap.shap_type), ("first_layer", shap.first_layer_type)):
        if layer == "shap" and kind is None:
            problems.append("shap.shap_type: hierarchical needs the explainer of its inner levels")
            continue
        if kind is not None and kind.value == "hierarchical":
            problems.append(f"shap.{layer}_type: cannot itself be hierarchical")
        ns, frac = shap[f"{layer}_num_samples"], shap[f"{layer}_fraction"]
        if ns is not None and frac is not None:
            problems.append(f"shap.{layer}_num_samples: set either it or shap.{layer}_fraction, not both")
        problems += _budget_range_problems(f"shap.{layer}_", ns, frac)
    imp = shap.importance_min_fraction
    if imp is None or not is_unit_fraction(imp):
        problems.append(f"shap.importance_min_fraction: {imp} is outside (0, 1]")
    return problems


def check_config(cfg: DictConfig) -> List[str]:
    """Problems a type cannot catch, one message per problem, each naming its key."""
    from .estimators import BANZHAF_METHODS

    missing = sorted(OmegaConf.missing_keys(cfg))
    problems = [f"{key}: mandatory value is missing (???)" for key in missing if not key.startswith("hydra.")]
    if problems:
        return problems
    shap = cfg.shap
    kind = shap.explainer_type.value
    problems += _budget_problems(shap)
    if kind == "hierarchical":
        problems += _hierarchical_problems(shap)
    if shap.estimand.value == "banzhaf" and kind not in BANZHAF_METHODS:
        problems.append(f"shap.estimand: banzhaf is offered only for exact and the MC explainers, not {kind}")
    problems += _dataset_problems(cfg.dataset)
    problems += _selection_problems(cfg.selection)
    problems += _modality_problems(cfg.modality, cfg.connector.type.value)
    seg = cfg.audio_segmentation
    if seg.segment_ms is not None and seg.segment_ms <= 0:
        problems.append("audio_segmentation.segment_ms: must be > 0 or null (one audio token)")
    if cfg.generation.max_new_tokens < 1:
        problems.append("generation.max_new_tokens: must be >= 1")
    if cfg.generation.batch_size < 1:
        problems.append("generation.batch_size: must be >= 1")
    if cfg.generation.text_temperature < 0:
        problems.append("generation.text_temperature: must be >= 0 (0 = greedy)")
    for key in ("max_length", "batch_size"):
        if cfg.embedding[key] < 1:
            problems.append(f"embedding.{key}: must be >= 1")
    if cfg.seed < 0:
        problems.append("seed: must be >= 0")
    if not cfg.resume and cfg.shard.count > 1:
        problems.append("resume: resume=false cannot be combined with shard.count > 1 (every shard would "
                        "move the others' results aside); start afresh with one unsharded resume=false run")
    if cfg.shard.count < 1 or not 0 <= cfg.shard.index < cfg.shard.count:
        problems.append(f"shard.index: {cfg.shard.index} is not in [0, shard.count={cfg.shard.count})")
    if cfg.runtime.num_threads is not None and cfg.runtime.num_threads < 1:
        problems.append("runtime.num_threads: must be >= 1 or null (torch default)")
    return problems


def _modality_problems(modality: DictConfig, connector: str) -> List[str]:
    problems = []
    given = modality.input_modality.value
    if given != "text" and connector == "hf_text":
        problems.append(f"modality.input_modality: {given} needs an audio connector (connector=hf_audio, "
                        "connector=hf_audio_tiny or connector=liquid_audio); hf_text takes text only")
    if modality.output_modality.value == "audio" and connector != "liquid_audio":
        problems.append(f"modality.output_modality: audio output needs connector=liquid_audio; {connector} "
                        "answers in text only")
    return problems


def _dataset_problems(ds: DictConfig) -> List[str]:
    if ds.path is not None:
        return []
    if ds.repo_id is None and ds.subset is None:
        return ["dataset.path: no data source; set dataset.path=<file.parquet|file.csv|folder> "
                "or dataset.repo_id + dataset.subset + a pinned dataset.revision"]
    problems = [f"dataset.{key}: required when dataset.path is not set" for key in ("repo_id", "subset") if ds[key] is None]
    if not is_pinned_revision(ds.revision):
        if not ds.allow_unpinned:
            problems.append(
                f"dataset.revision: {ds.revision!r} is not a 40-hex commit id; pin the dataset "
                "or set dataset.allow_unpinned=true"
            )
    return problems


def _selection_problems(sel: DictConfig) -> List[str]:
    problems = []
    if sel.start_index < 0:
        problems.append("selection.start_index: must be >= 0")
    if sel.max_samples is not None and sel.max_samples < 1:
        problems.append("selection.max_samples: must be >= 1 or null (all rows)")
    lo, hi = sel.min_prompt_tokens, sel.max_prompt_tokens
    if lo is not None and hi is not None and lo > hi:
        problems.append(f"selection.min_prompt_tokens: {lo} is above selection.max_prompt_tokens {hi}")
    if sel.balanced_token_counts and not sel.samples_per_token_count:
        problems.append("selection.samples_per_token_count: required with selection.balanced_token_counts")
    return problems


def to_container(cfg: Any) -> dict:
    """Plain JSON-able dict of a config node (enums as their names)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
