"""Loading a legacy JSON config and converting it: common sections, then its variants (``variants``).

``load`` reads one file into an ``Imported`` (the common values + one ``Variant`` per experiment);
problems land in its ``Report``, errors meaning nothing may be written.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from ..config import (Device, InputModality, Mode, Normalizer, OutputModality, Reducer, SegmentationMethod,
                      Similarity, TokenFilter, WandbMode)
from ..data import BUNDLED_SUBSETS, is_pinned_revision
from .original import ORIGINAL
from .reader import (_ABSENT, _BAD, Report, _ignored, _json_type, _non_negative, _not_empty, _positive, _Reader,
                     _set, _values)
from .variants import Variant, _variants


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
    if device is None or device is _BAD or device in _values(Device):
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
        read.get_into(out, ds, key, "dataset", "bool")
    path = read.get(ds, "path", "dataset", "str", None, nullable=True)
    out["path"] = path
    if isinstance(revision, str) or revision is None:
        if path is None and not is_pinned_revision(revision):
            out["allow_unpinned"] = True
            report.warn("dataset.revision", f"{revision!r} is not a 40-hex commit: imported with "
                                            "dataset.allow_unpinned=true, as the original ran it; pin it for "
                                            "reproducible runs")
    if path is not None:
        return out, "local"
    option = out["subset"] if out["subset"] in BUNDLED_SUBSETS else "single_sentence"  # conf/dataset/<subset>.yaml
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
        read.get_into(out, sel, key, "selection", kind, **options)
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
    read.get_into(out, gen, "text_top_k", "generation", "int", nullable=True, check=_positive)
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
    return {"method": read.get(seg, "method", "audio_segmentation", "str", "raw",
                               choices=_values(SegmentationMethod)),
            "aligner_device": read.get(seg, "aligner_device", "audio_segmentation", "str", "cpu", check=_not_empty)}


def _connector(read: _Reader, raw: Dict, connector: Any, report: Report) -> Tuple[Dict[str, Any], str]:
    chat = read.section(raw, "chat", "")
    read.keys(chat, "chat", ("system_prompt",), {
        "system_roles_setup": _ignored("the model's own chat template places the system prompt"),
        "assistant_prefill": _ignored("answer prefills are not supported by this app", lambda v: v is not None),
    })
    out: Dict[str, Any] = {}
    read.get_into(out, chat, "system_prompt", "chat", "str", nullable=True)
    if connector == "hf_text":
        report.warn("connector", "hf_text names no model in the JSON (the original used its library's built-in "
                                 "default); imported as this app's embedded default, connector=smollm2 "
                                 "(SmolLM2-135M-Instruct); append connector=hf_text connector.model=<hub id or "
                                 "dir> to the commands to choose another")
        return out, "smollm2"
    if connector == "liquid_audio" and importlib.util.find_spec("liquid_audio") is None:
        report.warn("connector", "liquid_audio: the liquid-audio package (Python >= 3.12) is not installed here, so "
                                 "the runs will stop with exit code 2 when they load the model; install "
                                 "'mllm_shapx[liquid-audio]' on Python 3.12+, or append connector=hf_audio "
                                 "connector.model=<Qwen2-Audio id> to the commands")
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
        read.get_into(out, emb, key, "embedding", kind, **options)
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
    out: Dict[str, Any] = {}
    read.get_into(out, rt, "progress_bar", "runtime", "bool")
    return out


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
    read.get_into(out, shp, "token_filter", "shap", "str", choices=_values(TokenFilter))
    if out["normalizer"] == "PowerShiftNormalizer":
        out["power"] = 1.0  # the original built PowerShiftNormalizer() with its default power
    out["estimand"] = "shapley"
    return out


def _warn_duplicate_runs(imp: Imported) -> None:
    from ..naming import run_slug

    seen: Dict[str, int] = {}
    for variant in imp.variants:
        for shap, _ in variant.expand():
            slug = run_slug(shap)
            if slug in seen:
                other = seen[slug]
                where = "earlier in this variant" if other == variant.index else f"by experiments[{other}]"
                imp.report.warn(f"experiments[{variant.index}]", f"run {slug} is planned twice (also {where}): "
                                                                  "both runs use one directory, as in the original")
            seen.setdefault(slug, variant.index)


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
