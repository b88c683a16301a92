"""Composition through the Compose API: presets, typed keys, checks, run directories."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from mllm_shapx.config import check_config
from mllm_shapx.naming import run_slug

LEGACY = Path(__file__).resolve().parent / "reference" / "legacy_configs"


def test_mc_minimal_means_what_the_legacy_json_means(compose_cfg):
    legacy = json.loads((LEGACY / "mc_minimal.json").read_text())
    cfg = compose_cfg("+experiment=mc_minimal")
    assert cfg.experiment_set_id == legacy["experiment_set_id"]
    for key, value in legacy["selection"].items():
        assert cfg.selection[key] == value, key
    for key, value in legacy["generation"].items():
        assert cfg.generation[key] == value, key
    for key, value in legacy["shap"].items():
        assert cfg.shap[key].value == value, key
    (variant,) = legacy["experiments"]
    assert cfg.shap.explainer_type.value == variant["explainer_type"] == "limited_mc"
    assert cfg.shap.num_samples == variant["num_samples"][0] == 50
    assert cfg.shap.name == variant["name"]
    assert cfg.dataset.path == "bundled:single_sentence" and cfg.dataset.subset == legacy["dataset"]["subset"]
    assert cfg.connector.model == "embedded:SmolLM2-135M-Instruct"
    assert cfg.wandb.enabled is False
    assert check_config(cfg) == []


def test_run_directory_is_output_root_set_slug(compose_cfg):
    cfg = compose_cfg("+experiment=mc_minimal", "output_root=/data/out", return_hydra_config=True)
    assert cfg.hydra.run.dir == "/data/out/testing_and_experiments/minimal_mc_limited_mc_ns50"
    assert cfg.hydra.sweep.dir == "/data/out/testing_and_experiments"
    assert cfg.hydra.sweep.subdir == "minimal_mc_limited_mc_ns50"


@pytest.mark.parametrize(
    "override, message",
    [
        ("shap.num_sampels=5", "full_key: shap.num_sampels"),
        ("selection.max_sample=5", "full_key: selection.max_sample"),
        ("typo_top_level=1", "typo_top_level"),
    ],
)
def test_typo_names_the_key(compose_cfg, override, message):
    with pytest.raises(ConfigCompositionException) as info:
        compose_cfg("+experiment=mc_minimal", override)
    assert message in str(info.value) + str(info.value.__cause__)


@pytest.mark.parametrize(
    "override, key",
    [
        ("shap.num_samples=abc", "shap.num_samples"),
        ("shap.similarity=Jaccard", "shap.similarity"),
        ("generation.max_new_tokens=1.5", "generation.max_new_tokens"),
        ("resume=maybe", "resume"),
        ("device=tpu", "device"),
    ],
)
def test_wrong_type_names_the_key(compose_cfg, override, key):
    with pytest.raises(ConfigCompositionException) as info:
        compose_cfg("+experiment=mc_minimal", override)
    cause = info.value.__cause__
    assert isinstance(cause, (ValidationError, ConfigKeyError))
    assert f"full_key: {key}" in str(cause)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["connector=hf_text"], "connector.model: mandatory value is missing"),
        (["shap.fraction=0.5"], "needs exactly one of shap.num_samples, shap.fraction, shap.linear"),
        (["shap.num_samples=null", "shap.fraction=1.5"], "shap.fraction: 1.5 is outside (0, 1]"),
        (["shap.num_samples=null", "shap.linear=11"], "shap.linear: 11.0 is outside (0, 10]"),
        (["shap.num_samples=0"], "shap.num_samples: 0 is not a positive count or -1"),
        (["shap=exact", "shap.num_samples=5"], "shap.num_samples: not used by shap=exact"),
        (["dataset=single_sentence", "dataset.revision=main"], "dataset.revision: 'main' is not a 40-hex"),
        (["dataset=local"], "dataset.path: no data source"),
        (["selection.min_prompt_tokens=9", "selection.max_prompt_tokens=3"], "selection.min_prompt_tokens: 9"),
        (["generation.max_new_tokens=0"], "generation.max_new_tokens: must be >= 1"),
        (["seed=-1"], "seed: must be >= 0"),
        (["resume=false", "shard.count=2"], "resume: resume=false cannot be combined with shard.count > 1"),
        (["shard.index=2", "shard.count=2"], "shard.index: 2 is not in [0, shard.count=2)"),
    ],
)
def test_check_config_names_the_problem(compose_cfg, overrides, expected):
    problems = check_config(compose_cfg("+experiment=mc_minimal", *overrides))
    assert any(expected in p for p in problems), problems


def test_unpinned_revision_allowed_only_explicitly(compose_cfg):
    cfg = compose_cfg("dataset=single_sentence", "dataset.revision=main", "dataset.allow_unpinned=true")
    assert check_config(cfg) == []


def test_every_conf_option_composes(compose_cfg):
    conf = Path(__file__).resolve().parents[1] / "conf"
    for group in ("dataset", "shap", "modality", "connector"):
        for option in sorted((conf / group).glob("*.yaml")):
            cfg = compose_cfg(f"{group}={option.stem}")
            assert cfg[group] is not None


@pytest.mark.parametrize(
    "shap, slug",
    [
        ({"explainer_type": "exact"}, "exact"),
        ({"explainer_type": "exact", "name": "precise_run"}, "precise_run"),
        ({"explainer_type": "limited_mc", "num_samples": 50}, "limited_mc_ns50"),
        ({"explainer_type": "limited_mc", "num_samples": -1, "name": "mc_minimal"}, "mc_minimal_limited_mc_ns-1"),
        ({"explainer_type": "standard_mc", "fraction": 0.2}, "standard_mc_frac0_2"),
        ({"explainer_type": "limited_neyman", "linear": 3.0, "name": "audio_original_audio_raw"},
         "audio_original_audio_raw_limited_neyman_lin3_0"),
        ({"explainer_type": "hierarchical", "name": "h", "shap_type": "limited_neyman", "k": 10,
          "importance_min_fraction": 1.0, "first_layer_type": "limited_neyman", "shap_fraction": 0.2,
          "first_layer_num_samples": 100},
         "h_hier_limited_neyman_k10_imp1_0_fllimited_neyman_frac0_2_flns100"),
    ],
)
def test_run_slug_rules(shap, slug):
    assert run_slug(shap) == slug


@pytest.mark.parametrize("name", ["study_ss_text", "study_ss_audio", "study_ms_interleaved", "study_ml_text"])
def test_study_presets_compose_and_pass_the_checks(compose_cfg, name):
    cfg = compose_cfg(f"+experiment={name}")
    assert check_config(cfg) == []
    audio = cfg.modality.input_modality.value != "text"
    assert (cfg.connector.type.value == "hf_audio") == audio
    if audio:
        assert cfg.audio_segmentation.method.value == "pauses"


def test_audio_and_text_twins_explain_the_same_rows(compose_cfg):
    text, audio = compose_cfg("+experiment=study_ss_text"), compose_cfg("+experiment=study_ss_audio")
    assert text.selection == audio.selection and text.dataset == audio.dataset
    assert text.experiment_set_id == audio.experiment_set_id and text.shap.name != audio.shap.name
