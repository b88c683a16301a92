"""Import the original runner's JSON experiment configs as Hydra experiment presets.

    python -m mllm_shapx.importer CONFIG.json [CONFIG2.json ...] --out DIR
    python -m mllm_shapx.importer CONFIG.json [...] --install
    python -m mllm_shapx.importer --check CONFIG.json [...] [--list]

One experiment file per variant of the JSON (``<experiment_set_id>__<variant name or index>.yaml``,
``# @package _global_``, ``override /group:`` defaults + every value spelled out), written to
``DIR/experiment/`` (``--out``) or to ``conf/experiment/`` (``--install``). stdout gets, one per line,
the ``python -m mllm_shapx.app --multirun ...`` commands that run everything the JSON described: a
variant's lists become Hydra sweeps (``shap.num_samples=300,400,500``); a variant with several budget
kinds (``num_samples`` and ``fractions``) gets one command per kind; the union over variants is one
command per variant, never a cross-variant product. Appending ``dry_run=true`` to the commands plans
exactly the original's run directories (same slugs, aliases resolved: ``neyman`` -> ``limited_neyman``).

The JSON is checked first, every problem named by its JSON path (``experiments[2].fractions[1]``):
unknown keys, wrong types and values outside the original's ranges are errors (exit 2, nothing
written); keys the original knew but ignored, and every place where the import has to decide
something, are warnings on stderr. ``--check`` imports into a temporary directory, composes every
planned run exactly as the app would, runs the config checks and prints the run count (exit 2 and
the problems when some run cannot start). Loads no model and no data.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import json
import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from .config import InputModality, Mode, Normalizer, OutputModality, Reducer, Similarity, TokenFilter, WandbMode

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
APP = ("python", "-m", "mllm_shapx.app", "--multirun")

ALIASES = {"mc": "limited_mc", "cc": "limited_cc", "neyman": "limited_neyman", "precise": "exact"}
EXPLAINERS = ("exact", "limited_mc", "standard_mc", "limited_cc", "standard_cc", "limited_neyman",
              "standard_neyman", "hierarchical")
BUDGETED = EXPLAINERS[1:7]
# The original's allowed inner / first-layer explainers of a hierarchical variant (no standard_mc).
HIER_LAYER_TYPES = ("exact", "limited_mc", "limited_cc", "standard_cc", "limited_neyman", "standard_neyman")
HUB_SUBSETS = ("single_sentence", "multi_sentence", "multi_lingual")
SHA = re.compile(r"^[0-9a-f]{40}$")

# The original's defaults, where they differ from this app's or decide what runs; written explicitly.
ORIGINAL = {
    "output_root": "experiments_output",
    "connector": "liquid_audio",
    "dataset": {"subset": "single_sentence", "split": "test", "repo_id": "Pawlo77/mllm-shap",
                "revision": "e1a6f11d58749529f10cc520dfaeb2138fcfc0bf"},
    "selection": {"start_index": 0, "shuffle_seed": 0, "max_samples": None, "min_prompt_tokens": None,
                  "max_prompt_tokens": None},
    "generation": {"max_new_tokens": 32, "text_temperature": 0.2},
    "wandb": {"enabled": True, "project": "mllm-shap", "entity": None, "group": None, "tags": []},
    "shap": {"mode": "CONTEXTUAL", "normalizer": "AbsSumNormalizer", "reducer": "MeanReducer",
             "similarity": "TfIdfCosineSimilarity"},
    "explainer_type": "limited_mc",
    "hierarchical_shap_type": "limited_neyman",
    "importance_min_fractions": [0.1],
}

# Each hierarchical sweep: JSON name (nested block; flat form is "hierarchical_" + name) -> our shap key.
HIER_FIELDS = ("ks", "shap_type", "shap_num_samples", "shap_fractions", "first_layer_type",
               "first_layer_num_samples", "first_layer_fractions", "use_importance_sampling",
               "importance_min_fractions")
# Names from the original's own vocabulary (its spec.json) that its config parser never read.
HIER_IGNORED = {"k": "ks", "shap_fraction": "shap_fractions", "first_layer_fraction": "first_layer_fractions",
                "importance_min_fraction": "importance_min_fractions", "mode": None}

_ABSENT = object()
_BAD = object()


def _values(enum) -> Tuple[str, ...]:
    return tuple(member.value for member in enum)


# ---------------------------------------------------------------------------------------------------
# Reading the JSON: a small explicit schema walker that names every problem by its JSON path.
# ---------------------------------------------------------------------------------------------------


@dataclass
class Report:
    source: str
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path or '(top level)'}: {message}")

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{path or '(top level)'}: {message}")


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
                       (list, "array"), (dict, "object")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


_KIND = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}


def _is_kind(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "bool"
    return {"str": isinstance(value, str), "int": isinstance(value, int),
            "float": isinstance(value, (int, float)), "bool": False}[kind]


def _unit(v: float) -> Optional[str]:
    return None if 0 < v <= 1 else "is outside (0, 1]"


def _linear(v: float) -> Optional[str]:
    return None if 0 < v <= 10 else "is outside (0, 10]"


def _count(v: int) -> Optional[str]:
    return None if v == -1 or v > 0 else "is neither a positive count nor -1 (minimal)"


def _positive(v: float) -> Optional[str]:
    return None if v > 0 else "must be > 0"


def _non_negative(v: float) -> Optional[str]:
    return None if v >= 0 else "must be >= 0"


def _group_count(v: int) -> Optional[str]:
    return None if v >= 2 else "is below 2 (hierarchical needs k >= 2 groups per level)"


def _not_empty(v: str) -> Optional[str]:
    return None if v.strip() else "must not be empty"


class _Reader:
    def __init__(self, report: Report):
        self.report = report

    def section(self, parent: Mapping, key: str, path: str) -> Dict[str, Any]:
        value = parent.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.report.error(_join(path, key), f"expected an object, got {_json_type(value)}")
            return {}
        return value

    def keys(self, obj: Mapping, path: str, known: Sequence[str],
             ignored: Optional[Mapping[str, Callable[[Any], Optional[str]]]] = None) -> None:
        """Unknown keys are errors; keys the original knew but ignored are warnings (when they matter)."""
        ignored = ignored or {}
        for key in getattr(obj, "duplicates", ()):
            self.report.warn(_join(path, key), "given more than once in one object: the original used the last "
                                               "value, and so does the import")
        for key in obj:
            if key in known:
                continue
            where = _join(path, key)
            if key in ignored:
                reason = ignored[key](obj[key])
                if reason:
                    self.report.warn(where, reason)
                continue
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.report.error(where, f"unknown key{hint}; known here: {', '.join(known)}")

    def convert(self, value: Any, path: str, kind: str, *, nullable: bool = False,
                choices: Optional[Sequence[str]] = None, check: Optional[Callable] = None) -> Any:
        if value is None:
            if nullable:
                return None
            self.report.error(path, f"expected {_KIND[kind]}, got null")
            return _BAD
        if not _is_kind(value, kind):
            self.report.error(path, f"expected {_KIND[kind]}, got {_json_type(value)} {json.dumps(value)}")
            return _BAD
        if kind == "float":
            value = float(value)
        if choices is not None and value not in choices:
            self.report.error(path, f"{json.dumps(value)} is not one of: {', '.join(choices)}")
            return _BAD
        problem = check(value) if check else None
        if problem:
            self.report.error(path, f"{json.dumps(value)} {problem}")
            return _BAD
        return value

    def get(self, obj: Mapping, key: str, path: str, kind: str, default: Any = _ABSENT, **options) -> Any:
        if key not in obj:
            return default
        return self.convert(obj[key], _join(path, key), kind, **options)

    def get_list(self, obj: Mapping, key: str, path: str, kind: str, *, check: Optional[Callable] = None,
                 where: Optional[str] = None) -> Any:
        """A JSON array of ``kind`` (None when absent or null); ``_BAD`` after reporting a problem."""
        where = where or _join(path, key)
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            self.report.error(where, f"expected an array of {_KIND[kind][2:]}s, got {_json_type(value)} "
                                     f"{json.dumps(value)}")
            return _BAD
        items = [self.convert(item, f"{where}[{i}]", kind, check=check) for i, item in enumerate(value)]
        return _BAD if any(item is _BAD for item in items) else items


def _ignored(reason: str, when: Callable[[Any], bool] = lambda value: True) -> Callable[[Any], Optional[str]]:
    return lambda value: f"ignored: {reason}" if when(value) else None


def _set(value: Any) -> bool:
    return value not in (None, [], {}, "", False)


# ---------------------------------------------------------------------------------------------------
# The imported model: common values + one experiment file (and one or more commands) per variant.
# ---------------------------------------------------------------------------------------------------

Sweep = List[Tuple[str, List[Any]]]  # ordered shap keys -> values; a command's runs are their product


@dataclass
class Variant:
    index: int
    name: Optional[str]
    explainer: str
    shap: Dict[str, Any]  # the file's shap values (first run of the first command for swept keys)
    commands: List[Sweep]
    stem: str = ""

    def runs(self) -> List[Dict[str, Any]]:
        """Every planned run's full shap values, in the original expander's order."""
        out = []
        for sweep in self.commands:
            keys = [key for key, _ in sweep]
            for combo in itertools.product(*(values for _, values in sweep)):
                out.append({**self.shap, "explainer_type": self.explainer, **dict(zip(keys, combo))})
        return out

    def swept(self, sweep: Sweep) -> Sweep:
        """The keys a command must set on the command line (those not already the file's value)."""
        return [(key, values) for key, values in sweep if values != [self.shap.get(key)]]


@dataclass
class Imported:
    source: Path
    report: Report
    set_id: str = ""
    output_root: str = ""
    defaults: Dict[str, str] = field(default_factory=dict)  # group -> option (dataset, modality, connector)
    body: Dict[str, Any] = field(default_factory=dict)  # everything but shap, in file order
    variants: List[Variant] = field(default_factory=list)


def load(path: Path) -> Imported:
    """Read and convert one JSON config; problems land in ``.report`` (errors: do not write)."""
    report = Report(str(path))
    imported = Imported(source=path.resolve(), report=report)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        report.error("", f"cannot read the file: {error.strerror or error}")
        return imported
    try:
        raw = json.loads(text, object_pairs_hook=_object, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        report.error("", f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}")
        return imported
    except ValueError as error:
        report.error("", f"not valid JSON: {error}")
        return imported
    if not isinstance(raw, dict):
        report.error("", f"expected a JSON object, got {_json_type(raw)}")
        return imported
    _convert(raw, imported)
    return imported


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


class _Object(dict):
    """A JSON object that remembers its repeated keys (json keeps the last value, as the original did)."""

    duplicates: Tuple[str, ...] = ()


def _object(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    out = _Object(pairs)
    keys = [key for key, _ in pairs]
    out.duplicates = tuple(sorted({key for key in keys if keys.count(key) > 1}))
    return out


TOP_KEYS = ("experiment_set_id", "output_root", "device", "connector", "dataset", "selection", "wandb",
            "generation", "modality", "audio_segmentation", "shap", "embedding", "chat", "runtime", "experiments")


def _convert(raw: Dict[str, Any], imp: Imported) -> None:
    report, read = imp.report, _Reader(imp.report)
    read.keys(raw, "", TOP_KEYS, {
        "run_slug": _ignored("an output field of the original's spec.json, not a setting"),
        "variant": _ignored("an output field of the original's spec.json; variants go in 'experiments'"),
    })
    if "experiment_set_id" not in raw:
        report.error("experiment_set_id", "required (names the output folder of the whole set)")
    set_id = read.get(raw, "experiment_set_id", "", "str", check=_not_empty)
    output_root = read.get(raw, "output_root", "", "str", ORIGINAL["output_root"], check=_not_empty)
    device = _device(read.get(raw, "device", "", "str", None, nullable=True), report)
    connector = read.get(raw, "connector", "", "str", _ABSENT, choices=("liquid_audio", "hf_text"))
    if connector is _ABSENT:
        connector = ORIGINAL["connector"]
        report.warn("connector", "not given: the original's default is liquid_audio (LFM2-Audio); imported so")

    body: Dict[str, Any] = {"experiment_set_id": set_id, "output_root": output_root, "device": device}
    defaults: Dict[str, str] = {}
    body["dataset"], defaults["dataset"] = _dataset(read, raw, report)
    body["selection"] = _selection(read, raw)
    body["generation"] = _generation(read, raw)
    body["modality"] = _modality(read, raw, connector, report)
    defaults["modality"] = "text"
    body["audio_segmentation"] = _audio_segmentation(read, raw)
    body["connector"], defaults["connector"] = _connector(read, raw, connector, report)
    body["embedding"] = _embedding(read, raw)
    body["wandb"] = _wandb(read, raw, report)
    runtime = _runtime(read, raw)
    if runtime:
        body["runtime"] = runtime
    shap_common = _shap_common(read, raw, report)
    variants = _variants(read, raw, shap_common, report)
    if report.errors:
        return
    imp.set_id, imp.output_root, imp.defaults, imp.body, imp.variants = set_id, output_root, defaults, body, variants
    _warn_duplicate_runs(imp)


def _device(device: Any, report: Report) -> Any:
    if device is None or device is _BAD or device in ("cpu", "cuda"):
        return device
    if re.fullmatch(r"cuda:\d+", device):
        report.warn("device", f"{device!r}: this app takes cpu|cuda|null; imported as cuda — choose the GPU "
                              f"with CUDA_VISIBLE_DEVICES={device.split(':')[1]}")
        return "cuda"
    report.warn("device", f"{device!r} is not available here (cpu|cuda|null): imported as null (auto: cuda "
                          "when available, else cpu)")
    return None


def _dataset(read: _Reader, raw: Dict, report: Report) -> Tuple[Dict[str, Any], str]:
    ds = read.section(raw, "dataset", "")
    known = ("subset", "split", "revision", "repo_id", "use_parquet", "trust_remote_code", "path")
    read.keys(ds, "dataset", known, {
        "source": _ignored("this app picks the loader from dataset.path / dataset.use_parquet"),
        "column_mapping": _ignored(
            "this app reads the original's standard columns (prompt/sentences, language, original_language, "
            "token_count, audio__*)",
            lambda m: isinstance(m, dict) and any(v is not None and v != k for k, v in m.items())),
    })
    out: Dict[str, Any] = {}
    for key in ("repo_id", "subset", "split"):
        out[key] = read.get(ds, key, "dataset", "str", ORIGINAL["dataset"][key], check=_not_empty)
    revision = read.get(ds, "revision", "dataset", "str", ORIGINAL["dataset"]["revision"], nullable=True)
    out["revision"] = revision
    for key in ("use_parquet", "trust_remote_code"):
        value = read.get(ds, key, "dataset", "bool")
        if value is not _ABSENT:
            out[key] = value
    path = read.get(ds, "path", "dataset", "str", None, nullable=True)
    out["path"] = path
    if isinstance(revision, str) or revision is None:
        if path is None and not (revision and SHA.match(revision)):
            out["allow_unpinned"] = True
            report.warn("dataset.revision", f"{revision!r} is not a 40-hex commit: imported with "
                                            "dataset.allow_unpinned=true, as the original ran it; pin it for "
                                            "reproducible runs")
    if path is not None:
        return out, "local"
    option = out["subset"] if out["subset"] in HUB_SUBSETS else "single_sentence"
    return out, option


def _selection(read: _Reader, raw: Dict) -> Dict[str, Any]:
    sel = read.section(raw, "selection", "")
    read.keys(sel, "selection", (
        "max_samples", "shuffle_seed", "start_index", "max_prompt_tokens", "min_prompt_tokens",
        "balanced_token_counts", "samples_per_token_count", "allow_partial_token_count_buckets"), {
        "filters": _ignored("row filters are not supported by this app", _set),
    })
    d = ORIGINAL["selection"]
    out = {
        "max_samples": read.get(sel, "max_samples", "selection", "int", d["max_samples"], nullable=True,
                                check=_positive),
        "shuffle_seed": read.get(sel, "shuffle_seed", "selection", "int", d["shuffle_seed"], nullable=True),
        "start_index": read.get(sel, "start_index", "selection", "int", d["start_index"], check=_non_negative),
        "min_prompt_tokens": read.get(sel, "min_prompt_tokens", "selection", "int", d["min_prompt_tokens"],
                                      nullable=True, check=_positive),
        "max_prompt_tokens": read.get(sel, "max_prompt_tokens", "selection", "int", d["max_prompt_tokens"],
                                      nullable=True, check=_positive),
    }
    counts = read.get_list(sel, "balanced_token_counts", "selection", "int", check=_positive)
    if "balanced_token_counts" in sel:
        out["balanced_token_counts"] = counts
    for key, kind, options in (("samples_per_token_count", "int", {"nullable": True, "check": _positive}),
                               ("allow_partial_token_count_buckets", "bool", {})):
        value = read.get(sel, key, "selection", kind, **options)
        if value is not _ABSENT:
            out[key] = value
    return out


def _generation(read: _Reader, raw: Dict) -> Dict[str, Any]:
    gen = read.section(raw, "generation", "")
    audio_only = _ignored("audio generation knobs do not apply to this app's text answers", lambda v: v is not None)
    read.keys(gen, "generation", ("max_new_tokens", "text_temperature", "text_top_k"),
              {"audio_temperature": audio_only, "audio_top_k": audio_only})
    d = ORIGINAL["generation"]
    out = {
        "max_new_tokens": read.get(gen, "max_new_tokens", "generation", "int", d["max_new_tokens"], check=_positive),
        "text_temperature": read.get(gen, "text_temperature", "generation", "float", d["text_temperature"],
                                     check=_non_negative),
    }
    top_k = read.get(gen, "text_top_k", "generation", "int", nullable=True, check=_positive)
    if top_k is not _ABSENT:
        out["text_top_k"] = top_k
    return out


def _modality(read: _Reader, raw: Dict, connector: Any, report: Report) -> Dict[str, Any]:
    mod = read.section(raw, "modality", "")
    read.keys(mod, "modality", ("input_modality", "output_modality"))
    out = {
        "input_modality": read.get(mod, "input_modality", "modality", "str", "text", choices=_values(InputModality)),
        "output_modality": read.get(mod, "output_modality", "modality", "str", "text",
                                    choices=_values(OutputModality)),
    }
    if connector == "hf_text":  # the original's own rule for its text connector
        for key in ("input_modality", "output_modality"):
            if out[key] not in ("text", _BAD):
                report.error(f"modality.{key}", f"{out[key]!r}: the hf_text connector takes text only")
    return out


def _audio_segmentation(read: _Reader, raw: Dict) -> Dict[str, Any]:
    seg = read.section(raw, "audio_segmentation", "")
    read.keys(seg, "audio_segmentation", ("method", "aligner_device"))
    return {"method": read.get(seg, "method", "audio_segmentation", "str", "raw", check=_not_empty),
            "aligner_device": read.get(seg, "aligner_device", "audio_segmentation", "str", "cpu", check=_not_empty)}


def _connector(read: _Reader, raw: Dict, connector: Any, report: Report) -> Tuple[Dict[str, Any], str]:
    chat = read.section(raw, "chat", "")
    read.keys(chat, "chat", ("system_prompt",), {
        "system_roles_setup": _ignored("the model's own chat template places the system prompt"),
        "assistant_prefill": _ignored("answer prefills are not supported by this app", lambda v: v is not None),
    })
    out: Dict[str, Any] = {}
    prompt = read.get(chat, "system_prompt", "chat", "str", nullable=True)
    if prompt is not _ABSENT:
        out["system_prompt"] = prompt
    if connector == "hf_text":
        report.warn("connector", "hf_text names no model in the JSON (the original used its library's built-in "
                                 "default); imported as this app's embedded default, connector=smollm2 "
                                 "(SmolLM2-135M-Instruct); append connector=hf_text connector.model=<hub id or "
                                 "dir> to the commands to choose another")
        return out, "smollm2"
    if connector == "liquid_audio" and not (CONF_DIR / "connector" / "liquid_audio.yaml").is_file():
        report.warn("connector", "liquid_audio: this app has no connector/liquid_audio option yet; imported as "
                                 "'override /connector: liquid_audio' — the runs cannot start until it exists "
                                 "(--check reports it)")
    return out, "liquid_audio"


def _embedding(read: _Reader, raw: Dict) -> Dict[str, Any]:
    emb = read.section(raw, "embedding", "")
    read.keys(emb, "embedding", ("model_id", "revision", "max_length", "batch_size", "l2_normalize",
                                 "local_files_only"),
              {"device": _ignored("the embedding model runs on the run's device", lambda v: v is not None)})
    out: Dict[str, Any] = {}
    for key, kind, options in (("model_id", "str", {"nullable": True}), ("revision", "str", {"nullable": True}),
                               ("max_length", "int", {"check": _positive}), ("batch_size", "int", {"check": _positive}),
                               ("l2_normalize", "bool", {}), ("local_files_only", "bool", {})):
        value = read.get(emb, key, "embedding", kind, **options)
        if value is not _ABSENT:
            out[key] = value
    return out


def _wandb(read: _Reader, raw: Dict, report: Report) -> Dict[str, Any]:
    wb = read.section(raw, "wandb", "")
    read.keys(wb, "wandb", ("enabled", "project", "entity", "group", "mode", "tags"))
    d = ORIGINAL["wandb"]
    out = {
        "enabled": read.get(wb, "enabled", "wandb", "bool", d["enabled"]),
        "project": read.get(wb, "project", "wandb", "str", d["project"], check=_not_empty),
        "entity": read.get(wb, "entity", "wandb", "str", d["entity"], nullable=True),
        "group": read.get(wb, "group", "wandb", "str", d["group"], nullable=True),
    }
    mode = read.get(wb, "mode", "wandb", "str", None, nullable=True, choices=_values(WandbMode))
    if mode is None:
        if out["enabled"] is True:
            report.warn("wandb.mode", "not set: the original left it to wandb (online unless WANDB_MODE says "
                                      "otherwise); this app defaults to offline — append wandb.mode=online to "
                                      "log live")
    else:
        out["mode"] = mode
    tags = read.get_list(wb, "tags", "wandb", "str")
    out["tags"] = list(d["tags"]) if tags is None else tags
    if "enabled" not in wb:
        report.warn("wandb.enabled", "not given: the original's default is true; imported so")
    return out


def _runtime(read: _Reader, raw: Dict) -> Dict[str, Any]:
    rt = read.section(raw, "runtime", "")
    read.keys(rt, "runtime", ("progress_bar",), {
        "verbose": _ignored("log verbosity is Hydra's (hydra.verbose=true)"),
        "gc_after_each_sample": _ignored("memory per row is bounded by the batch in this app"),
        "cuda_empty_cache": _ignored("memory per row is bounded by the batch in this app"),
    })
    value = read.get(rt, "progress_bar", "runtime", "bool")
    return {} if value is _ABSENT else {"progress_bar": value}


def _shap_common(read: _Reader, raw: Dict, report: Report) -> Dict[str, Any]:
    shp = read.section(raw, "shap", "")
    read.keys(shp, "shap", ("mode", "normalizer", "reducer", "similarity", "token_filter"), {
        "allow_mask_duplicates": _ignored("this app evaluates each distinct coalition once", lambda v: v is True),
    })
    d = ORIGINAL["shap"]
    out = {
        "mode": read.get(shp, "mode", "shap", "str", d["mode"], choices=_values(Mode)),
        "similarity": read.get(shp, "similarity", "shap", "str", d["similarity"], choices=_values(Similarity)),
        "reducer": read.get(shp, "reducer", "shap", "str", d["reducer"], choices=_values(Reducer)),
        "normalizer": read.get(shp, "normalizer", "shap", "str", d["normalizer"], choices=_values(Normalizer)),
    }
    token_filter = read.get(shp, "token_filter", "shap", "str", choices=_values(TokenFilter))
    if token_filter is not _ABSENT:
        out["token_filter"] = token_filter
    if out["normalizer"] == "PowerShiftNormalizer":
        out["power"] = 1.0  # the original built PowerShiftNormalizer() with its default power
    out["estimand"] = "shapley"
    return out


VARIANT_KEYS = ("explainer_type", "name", "num_samples", "fractions", "linear", "hierarchical",
                *(f"hierarchical_{name}" for name in HIER_FIELDS))


def _variants(read: _Reader, raw: Dict, shap_common: Dict[str, Any], report: Report) -> List[Variant]:
    experiments = raw.get("experiments")
    if experiments is None or experiments == []:
        report.error("experiments", "required: a non-empty array of variants")
        return []
    if not isinstance(experiments, list):
        report.error("experiments", f"expected an array of variants, got {_json_type(experiments)}")
        return []
    out = []
    for index, entry in enumerate(experiments):
        path = f"experiments[{index}]"
        if not isinstance(entry, dict):
            report.error(path, f"expected an object (one variant), got {_json_type(entry)}")
            continue
        variant = _variant(read, entry, path, index, shap_common, report)
        if variant is not None:
            out.append(variant)
    return out


def _explainer(read: _Reader, value: Any, path: str, allowed: Sequence[str]) -> Any:
    if not isinstance(value, str):
        return read.convert(value, path, "str")
    canonical = ALIASES.get(value.lower(), value.lower())
    if canonical not in allowed:
        aliases = ", ".join(f"{a}->{c}" for a, c in ALIASES.items() if c in allowed)
        read.report.error(path, f"{json.dumps(value)} is not an explainer here; one of: {', '.join(allowed)} "
                                f"(aliases: {aliases})")
        return _BAD
    return canonical


def _variant(read: _Reader, entry: Dict, path: str, index: int, shap_common: Dict[str, Any],
             report: Report) -> Optional[Variant]:
    n_errors = len(report.errors)
    read.keys(entry, path, VARIANT_KEYS, {
        "fraction": _ignored("the original reads the list 'fractions'; this value is not imported"),
        **{f"hierarchical_{one}": _ignored(f"the original reads 'hierarchical_{many}'; this value is not imported"
                                           if many else "the original never read it; not imported")
           for one, many in HIER_IGNORED.items()},
    })
    if "explainer_type" in entry:
        explainer = _explainer(read, entry["explainer_type"], f"{path}.explainer_type", EXPLAINERS)
    else:
        explainer = ORIGINAL["explainer_type"]
        report.warn(f"{path}.explainer_type", "not given: the original's default is limited_mc; imported so")
    name = read.get(entry, "name", path, "str", None, nullable=True) or None  # "": no name, as in the original
    lists = {
        "num_samples": read.get_list(entry, "num_samples", path, "int", check=_count),
        "fraction": read.get_list(entry, "fractions", path, "float", check=_unit),
        "linear": read.get_list(entry, "linear", path, "float", check=_linear),
    }
    if entry.get("num_samples") == []:
        report.error(f"{path}.num_samples", "must be a non-empty array (one run per entry)")
    if explainer == "hierarchical":
        hier = _hierarchical_fields(read, entry, path, report)
    elif explainer is not _BAD:
        hier = {}
        for key in [k for k in entry if k.startswith("hierarchical") and k in VARIANT_KEYS]:
            report.warn(f"{path}.{key}", f"ignored: {explainer} is not hierarchical (the original ignored it too)")
    if len(report.errors) > n_errors or explainer is _BAD:
        return None

    shap: Dict[str, Any] = {**shap_common, "name": name, "num_samples": None, "fraction": None, "linear": None}
    json_key = {"num_samples": "num_samples", "fraction": "fractions", "linear": "linear"}
    if explainer in ("exact", "hierarchical"):
        for key, values in lists.items():
            if values:
                report.warn(f"{path}.{json_key[key]}", f"ignored: {explainer} takes no budget list (the original "
                                                       "ignored it too)")
    if explainer == "exact":
        commands: List[Sweep] = [[]]
    elif explainer == "hierarchical":
        commands = _hierarchical(hier, path, shap, report)
        if commands is None:
            return None
    else:
        commands = [[(key, values if key == kind else [None]) for key in ("num_samples", "fraction", "linear")]
                    for kind, values in lists.items() if values]
        if not commands:
            report.error(path, f"{explainer} needs a budget list: num_samples, fractions or linear")
            return None
    if "mc" in (explainer.split("_")[-1], str(shap.get("shap_type")).split("_")[-1],
                str(shap.get("first_layer_type")).split("_")[-1]):
        report.warn(path, "the original's MC estimated Banzhaf values (uniform masks, difference of means); "
                          "imported as Shapley (shap.estimand=shapley) — append shap.estimand=banzhaf to the "
                          "commands to reproduce the original's estimand")
    for key, values in (commands[0] if commands else []):
        shap[key] = values[0]
    return Variant(index=index, name=name, explainer=explainer, shap=shap, commands=commands)


def _hierarchical_fields(read: _Reader, entry: Dict, path: str, report: Report) -> Dict[str, Tuple[str, Any]]:
    """Hierarchical sweeps from the nested block or the flat keys (flat wins, as in the original)."""
    block_path = f"{path}.hierarchical"
    block = read.section(entry, "hierarchical", path)
    read.keys(block, block_path, HIER_FIELDS, {
        one: _ignored(f"the original reads '{many}'; this value is not imported" if many else
                      "the original never read it; not imported")
        for one, many in HIER_IGNORED.items()})
    found: Dict[str, Tuple[str, Any]] = {}
    for name in HIER_FIELDS:
        flat = f"hierarchical_{name}"
        if flat in entry:
            source, key, where = entry, flat, path
            if name in block:
                report.warn(f"{block_path}.{name}", f"ignored: {path}.{flat} is also given and the original "
                                                    "reads the flat key")
        elif name in block:
            source, key, where = block, name, block_path
        else:
            continue
        at = _join(where, key)
        if name in ("shap_type", "first_layer_type"):
            raw = source[key]
            unset = raw is None or raw == "" or (name == "first_layer_type" and str(raw).lower() == "none")
            if unset:  # the original's "unset": inner type limited_neyman, no first layer
                value = None
            else:
                value = _explainer(read, raw, at, HIER_LAYER_TYPES)
        elif name == "use_importance_sampling":
            value = read.convert(source[key], at, "bool")
            if value is False:
                report.error(at, "false: the original requires importance sampling (true)")
        elif name == "ks":
            value = read.get_list(source, key, where, "int", check=_group_count, where=at)
        elif name.endswith("num_samples"):
            value = read.get_list(source, key, where, "int", check=_count, where=at)
        else:
            value = read.get_list(source, key, where, "float", check=_unit, where=at)
            raw_list = source[key]
            if isinstance(raw_list, list):
                tag = {"importance_min_fractions": "imp", "shap_fractions": "frac"}.get(name, "flfrac")
                for i, item in enumerate(raw_list):
                    if isinstance(item, int) and not isinstance(item, bool):
                        report.warn(f"{at}[{i}]", f"integer {item}: the original named the run directory with "
                                                  f"'{tag}{item}', this app with '{tag}{item}_0' (a fraction is a "
                                                  "number): write it as a float to keep the name")
        found[name] = (at, value)
    return found


def _hierarchical(hier: Dict[str, Tuple[str, Any]], path: str, shap: Dict[str, Any],
                  report: Report) -> Optional[List[Sweep]]:
    def value(name: str, default: Any = None) -> Any:
        return hier[name][1] if name in hier and hier[name][1] is not None else default

    ks = value("ks")
    if not ks:
        report.error(f"{path}.hierarchical.ks", "required for hierarchical: an array of k >= 2 (or "
                                                "hierarchical_ks)")
        return None
    shap_type = value("shap_type", ORIGINAL["hierarchical_shap_type"])
    first_type = value("first_layer_type")
    inner_ns, inner_fr = value("shap_num_samples") or [], value("shap_fractions") or []
    fl_ns, fl_fr = value("first_layer_num_samples") or [], value("first_layer_fractions") or []
    imps = value("importance_min_fractions") or list(ORIGINAL["importance_min_fractions"])
    if first_type is None:
        for name in ("first_layer_num_samples", "first_layer_fractions"):
            if value(name):
                report.warn(hier[name][0], "ignored: no first_layer_type, so the original ignored the "
                                           "first-layer budget too")
        fl_ns, fl_fr = [], []
    if shap_type != "exact" and not inner_ns and not inner_fr:
        report.warn(path, f"no inner budget (shap_num_samples / shap_fractions): the original ran {shap_type} "
                          "with its automatic budget, this app needs one; imported without — the runs cannot "
                          "start until one is given (--check reports it)")
    for label, ns, fr in (("shap", inner_ns, inner_fr), ("first_layer", fl_ns, fl_fr)):
        if ns and fr:
            report.warn(path, f"both {label}_num_samples and {label}_fractions: the original ran their product, "
                              f"with both set in each run; this app refuses runs with both (--check reports it)")
    shap.update({"k": None, "shap_type": shap_type, "first_layer_type": first_type, "importance_min_fraction": None,
                 "shap_num_samples": None, "shap_fraction": None, "first_layer_num_samples": None,
                 "first_layer_fraction": None})
    return [[("k", ks), ("importance_min_fraction", imps), ("shap_num_samples", inner_ns or [None]),
             ("shap_fraction", inner_fr or [None]), ("first_layer_num_samples", fl_ns or [None]),
             ("first_layer_fraction", fl_fr or [None])]]


def _warn_duplicate_runs(imp: Imported) -> None:
    from .naming import run_slug

    seen: Dict[str, int] = {}
    for variant in imp.variants:
        for run in variant.runs():
            slug = run_slug(run)
            if slug in seen:
                other = seen[slug]
                where = "earlier in this variant" if other == variant.index else f"by experiments[{other}]"
                imp.report.warn(f"experiments[{variant.index}]", f"run {slug} is planned twice (also {where}): "
                                                                  "both runs use one directory, as in the original")
            seen.setdefault(slug, variant.index)


# ---------------------------------------------------------------------------------------------------
# Writing: names, YAML, commands.
# ---------------------------------------------------------------------------------------------------


def _safe_name(text: str) -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "experiment"
    try:
        parsed = OverridesParser.create().parse_override(f"+experiment={name}").value()
    except Exception:  # noqa: BLE001  (anything Hydra cannot read back as this very string)
        parsed = None
    return name if parsed == name else f"x_{name}"


def _marker(imp: Imported, variant: Variant) -> str:
    return f"# Imported by mllm_shapx.importer from {imp.source} experiments[{variant.index}]"


def _file_marker(path: Path) -> Optional[str]:
    try:
        with path.open(encoding="utf-8") as handle:
            head = [handle.readline().rstrip("\n") for _ in range(3)]
    except OSError:
        return None
    return next((line for line in head if line.startswith("# Imported by mllm_shapx.importer from ")), None)


def assign_names(imports: Sequence[Imported], experiment_dir: Path, quiet: bool = False) -> None:
    """``<set_id>__<variant name or index>``, unique, never shadowing or clobbering another file.

    An existing file is overwritten only when it was imported from the same JSON variant. Outside
    ``conf/experiment`` a name that exists there is avoided too: the app's own presets win the lookup.
    """
    installed = CONF_DIR / "experiment"
    taken: set = set()
    for imp in imports:
        for variant in imp.variants:
            base = _safe_name(f"{imp.set_id}__{variant.name if variant.name else variant.index}")
            stem, n = base, 2
            while True:
                target = experiment_dir / f"{stem}.yaml"
                shadow = installed / f"{stem}.yaml"
                free = stem not in taken and (not target.exists() or _file_marker(target) == _marker(imp, variant))
                if free and experiment_dir.resolve() != installed.resolve() and shadow.exists():
                    free = False
                if free:
                    break
                stem, n = f"{base}_{n}", n + 1
            if stem != base and not quiet:
                imp.report.warn(f"experiments[{variant.index}]", f"experiment name {base} is taken; using {stem}")
            taken.add(stem)
            variant.stem = stem


def _fmt(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def command(variant: Variant, sweep: Sweep, config_dir: Optional[Path]) -> List[str]:
    argv = list(APP)
    if config_dir is not None:
        argv += ["--config-dir", str(config_dir)]
    argv.append(f"+experiment={variant.stem}")
    argv += [f"shap.{key}={','.join(_fmt(v) for v in values)}" for key, values in variant.swept(sweep)]
    return argv


def commands(imp: Imported, config_dir: Optional[Path]) -> List[str]:
    return [shlex.join(command(v, sweep, config_dir)) for v in imp.variants for sweep in v.commands]


def _escape(value: Any) -> Any:
    """Strings reach OmegaConf: keep ``${...}`` literal."""
    if isinstance(value, str):
        return value.replace("${", "\\${")
    if isinstance(value, list):
        return [_escape(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    return value


def render(imp: Imported, variant: Variant, config_dir: Optional[Path]) -> str:
    runs = len(variant.runs())
    lines = [
        "# @package _global_",
        _marker(imp, variant),
        "# Do not edit by hand: re-import the JSON instead (python -m mllm_shapx.importer --help).",
        f"# Runs ({runs}{', the union of the commands' if len(variant.commands) > 1 else ''}):",
        *(f"#   {shlex.join(command(variant, sweep, config_dir))}" for sweep in variant.commands),
    ]
    group = {"dataset": imp.defaults["dataset"], "shap": variant.explainer, "modality": imp.defaults["modality"],
             "connector": imp.defaults["connector"]}
    body: Dict[str, Any] = {"defaults": [{f"override /{g}": option} for g, option in group.items()]}
    body.update({key: value for key, value in imp.body.items() if value != {}})
    body["shap"] = variant.shap
    text = yaml.safe_dump(_escape(body), sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
    return "\n".join(lines) + "\n" + text


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write(imports: Sequence[Imported], experiment_dir: Path, config_dir: Optional[Path],
          quiet: bool = False) -> List[Path]:
    assign_names(imports, experiment_dir, quiet)
    files = [(experiment_dir / f"{v.stem}.yaml", render(imp, v, config_dir)) for imp in imports for v in imp.variants]
    for path, text in files:
        _write(path, text)
    return [path for path, _ in files]


# ---------------------------------------------------------------------------------------------------
# The reverse check: compose every planned run as the app would.
# ---------------------------------------------------------------------------------------------------


@dataclass
class PlannedRun:
    variant: Variant
    shap: Dict[str, Any]  # the run's full shap values, as planned from the JSON
    overrides: List[str]  # as on the app's command line, after +experiment=<name>
    run_dir: str = ""
    composed_dir: Optional[str] = None  # what the app composes for it (None: it does not compose)
    problems: List[str] = field(default_factory=list)


def planned_runs(imp: Imported) -> List[PlannedRun]:
    """Every run the printed commands start, in their order (= the original expander's order)."""
    from .naming import run_slug

    out = []
    for variant in imp.variants:
        for sweep in variant.commands:
            keys = [key for key, _ in sweep]
            swept = {key for key, _ in variant.swept(sweep)}
            for combo in itertools.product(*(values for _, values in sweep)):
                shap = {**variant.shap, "explainer_type": variant.explainer, **dict(zip(keys, combo))}
                overrides = [f"shap.{k}={_fmt(v)}" for k, v in zip(keys, combo) if k in swept]
                run = PlannedRun(variant, shap, overrides, f"{imp.output_root}/{imp.set_id}/{run_slug(shap)}")
                out.append(run)
    return out


def compose_runs(imp: Imported, search_dir: Path) -> List[PlannedRun]:
    """Compose each planned run from ``search_dir/experiment`` as the app would; record dir and problems."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from . import app  # noqa: F401  (registers the schema and the run-slug resolver)
    from .config import check_config
    from .naming import run_slug

    runs = planned_runs(imp)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for run in runs:
            overrides = [f"+experiment={run.variant.stem}", f"hydra.searchpath=[file://{search_dir}]", *run.overrides]
            try:
                cfg = compose(config_name="config", overrides=overrides)
            except (HydraException, OmegaConfBaseException) as error:
                run.problems = [" ".join(str(error).strip().splitlines()[0].split())]
                continue
            run.composed_dir = f"{cfg.output_root}/{cfg.experiment_set_id}/{run_slug(cfg.shap)}"
            run.problems = check_config(cfg)
            if run.composed_dir != run.run_dir:  # cannot happen unless the presets and the plan disagree
                run.problems.append(f"composes to {run.composed_dir}, planned {run.run_dir}")
    return runs


def check(imports: Sequence[Imported], list_runs: bool = False) -> int:
    status = 0
    with tempfile.TemporaryDirectory(prefix="mllm_shapx_import_") as tmp:
        write(imports, Path(tmp) / "experiment", None, quiet=True)
        for imp in imports:
            _print_warnings(imp)
            runs = compose_runs(imp, Path(tmp))
            failing = [run for run in runs if run.problems]
            n = len(runs)
            if list_runs:
                for run in runs:
                    print(f"planned: {run.run_dir}" + (" (cannot run)" if run.problems else ""))
            if not failing:
                print(f"{imp.report.source}: {n} run{'s' if n != 1 else ''}, all compose and pass the config checks")
                continue
            status = 2
            print(f"{imp.report.source}: {n} run{'s' if n != 1 else ''}, {len(failing)} cannot run:")
            by_problem: Dict[str, List[str]] = {}
            for run in failing:
                for problem in run.problems:
                    by_problem.setdefault(problem, []).append(run.run_dir.rsplit("/", 1)[-1])
            for problem, slugs in by_problem.items():
                shown = ", ".join(slugs[:3]) + (f", ... ({len(slugs)} runs)" if len(slugs) > 3 else "")
                print(f"  {problem}  [{shown}]")
    return status


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------


def _print_warnings(imp: Imported) -> None:
    for line in imp.report.warnings:
        print(f"warning: {imp.report.source}: {line}", file=sys.stderr)


def load_all(paths: Sequence[str]) -> Tuple[List[Imported], bool]:
    imports = [load(Path(p)) for p in paths]
    failed = False
    for imp in imports:
        for line in imp.report.errors:
            failed = True
            print(f"error: {imp.report.source}: {line}", file=sys.stderr)
    return imports, failed


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mllm_shapx.importer",
        description="Import the original runner's JSON experiment configs as Hydra experiment presets and print "
                    "the commands that run them.")
    parser.add_argument("configs", nargs="+", metavar="CONFIG.json")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="DIR", type=Path,
                       help="write DIR/experiment/<name>.yaml (commands then carry --config-dir DIR)")
    where.add_argument("--install", action="store_true", help="write conf/experiment/<name>.yaml (+experiment=<name>)")
    where.add_argument("--check", action="store_true",
                       help="import into a temporary directory, compose every planned run and print the run count")
    parser.add_argument("--list", action="store_true", help="with --check: print every planned run directory")
    args = parser.parse_args(argv)
    if args.list and not args.check:
        parser.error("--list goes with --check")

    imports, failed = load_all(args.configs)
    if failed:
        print("error: nothing written", file=sys.stderr)
        return 2
    if args.check:
        return check(imports, list_runs=args.list)
    if args.install:
        if not CONF_DIR.is_dir():
            print(f"error: no conf/ directory at {CONF_DIR} (not a checkout): use --out DIR", file=sys.stderr)
            return 2
        experiment_dir, config_dir = CONF_DIR / "experiment", None
    else:
        config_dir = args.out.resolve()
        experiment_dir = config_dir / "experiment"
    write(imports, experiment_dir, config_dir)
    for imp in imports:
        _print_warnings(imp)
        for line in commands(imp, config_dir):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
