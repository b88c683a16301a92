"""The legacy JSON importer: same runs as the original, every value carried over, clear errors.

Expected run directories are written by hand from the original's documented rules (SPEC §6-§7):
one run per entry of ``num_samples`` / ``fractions`` / ``linear`` (``[name_]<type>_ns<N>``,
``_frac<f>``, ``_lin<f>``, ``.`` written ``_``), the cartesian product of a hierarchical variant's
lists, the union over variants, aliases resolved (``mc`` -> ``limited_mc``, ``neyman`` ->
``limited_neyman``, ``precise`` -> ``exact``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import CONF_DIR, REPO
from mllm_shapx import importer

REFS = REPO / "tests" / "reference" / "legacy_configs"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
       "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
PIN = "e1a6f11d58749529f10cc520dfaeb2138fcfc0bf"

# reference file -> (experiment_set_id, run slugs in the original's order)
EXPECTED = {
    "mc_minimal.json": ("testing_and_experiments", ["minimal_mc_limited_mc_ns50"]),
    "single_sentence_grid.json": ("ss_2025_11_03", [
        "mc_minimal_limited_mc_ns-1",  # explainer "mc" is limited_mc
        "mc_ns_grid_limited_mc_ns300", "mc_ns_grid_limited_mc_ns400", "mc_ns_grid_limited_mc_ns500"]),
    "external_mean_tfidf.json": ("ss_package_test_grid", ["external_mean_tfidf_limited_neyman_lin1_0"]),
    "interleaved_audio_first-text.json": ("multi_sentence_2025_06_12", [
        "interleaved__audio_first__male_text_limited_neyman_lin3_0"]),
    # "neyman" is limited_neyman for both layers; the block's "shap_fraction" (singular) is not a key of
    # the original's model (it reads "shap_fractions"), so the original planned no _frac part.
    "hierarchical_test.json": ("ss_package_test_2025_16_11", [
        "hier_limited_cc__fl_none_hier_limited_neyman_k10_imp1_0_fllimited_neyman_flns100"]),
}

SYNTHETIC = {
    "experiment_set_id": "synthetic_set",
    "connector": "hf_text",
    "device": "cpu",
    "dataset": {"subset": "single_sentence", "revision": PIN},
    "selection": {"max_samples": 2},
    "wandb": {"enabled": False},
    "experiments": [
        {"explainer_type": "mc", "num_samples": [-1, 8], "name": "a"},
        {"explainer_type": "standard_mc", "num_samples": [6], "fractions": [0.25, 0.5], "linear": [2]},
        {"explainer_type": "precise"},
    ],
}
SYNTHETIC_SLUGS = [
    "a_limited_mc_ns-1", "a_limited_mc_ns8",
    "standard_mc_ns6", "standard_mc_frac0_25", "standard_mc_frac0_5", "standard_mc_lin2_0",  # a union, no product
    "exact",
]

HIERARCHICAL = {
    "experiment_set_id": "hier_set",
    "connector": "hf_text",
    "dataset": {"revision": PIN},
    "shap": {"normalizer": "MinMaxNormalizer"},
    "experiments": [
        {"explainer_type": "hierarchical", "name": "nested",
         "hierarchical": {"ks": [2, 4], "shap_type": "cc", "shap_num_samples": [10], "first_layer_type": "precise",
                          "first_layer_fractions": [0.5, 1.0], "importance_min_fractions": [0.25]}},
        {"explainer_type": "hierarchical", "hierarchical_ks": [3], "hierarchical_shap_type": "neyman",
         "hierarchical_shap_fractions": [0.2, 0.4], "hierarchical_first_layer_num_samples": [7],
         "hierarchical": {"ks": [9]}},
    ],
}
HIERARCHICAL_SLUGS = [  # k x importance x inner budget x first-layer budget, in the original's loop order
    "nested_hier_limited_cc_k2_imp0_25_flexact_ns10_flfrac0_5",
    "nested_hier_limited_cc_k2_imp0_25_flexact_ns10_flfrac1_0",
    "nested_hier_limited_cc_k4_imp0_25_flexact_ns10_flfrac0_5",
    "nested_hier_limited_cc_k4_imp0_25_flexact_ns10_flfrac1_0",
    # flat keys win over the block (ks 3, not 9); no first_layer_type: its budget is ignored; imp default 0.1
    "hier_limited_neyman_k3_imp0_1_frac0_2",
    "hier_limited_neyman_k3_imp0_1_frac0_4",
]


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=2))
    return path


def run_main(capsys, *argv: str):
    code = importer.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def compose_dirs(path: Path, tmp_path: Path) -> List[str]:
    imp = importer.load(path)
    assert not imp.report.errors, imp.report.errors
    importer.write([imp], tmp_path / "experiment", None)
    return [run.composed_dir for run in importer.compose_runs(imp, tmp_path)]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reference_configs_plan_the_original_run_directories(name, tmp_path):
    set_id, slugs = EXPECTED[name]
    stub_liquid_audio(tmp_path)  # single_sentence_grid (the original's default) and interleaved use liquid_audio
    assert compose_dirs(REFS / name, tmp_path) == [f"experiments_output/{set_id}/{slug}" for slug in slugs]


def test_variants_are_a_union_with_aliases_resolved(tmp_path):
    cfg = json.loads(json.dumps(SYNTHETIC))
    cfg["experiments"].append({"explainer_type": "Limited_MC", "linear": [0.5, 3.0], "name": "a"})  # any case
    path = write_json(tmp_path / "synthetic.json", cfg)
    dirs = compose_dirs(path, tmp_path / "out")
    assert dirs == [f"experiments_output/synthetic_set/{slug}"
                    for slug in [*SYNTHETIC_SLUGS, "a_limited_mc_lin0_5", "a_limited_mc_lin3_0"]]
    assert sorted(p.name for p in (tmp_path / "out" / "experiment").iterdir()) == [  # one file per variant
        "synthetic_set__1.yaml", "synthetic_set__2.yaml", "synthetic_set__a.yaml", "synthetic_set__a_2.yaml"]


def test_hierarchical_sweeps_in_both_spellings(tmp_path):
    path = write_json(tmp_path / "hier.json", HIERARCHICAL)
    imp = importer.load(path)
    warnings = "\n".join(imp.report.warnings)
    assert "experiments[1].hierarchical.ks: ignored: experiments[1].hierarchical_ks is also given" in warnings
    assert "experiments[1].hierarchical_first_layer_num_samples: ignored: no first_layer_type" in warnings
    dirs = compose_dirs(path, tmp_path / "out")
    assert dirs == [f"experiments_output/hier_set/{slug}" for slug in HIERARCHICAL_SLUGS]


def stub_liquid_audio(search_dir: Path) -> None:
    """A stand-in connector/liquid_audio option (only where the app has none yet) so such runs compose."""
    if not (CONF_DIR / "connector" / "liquid_audio.yaml").exists():
        (search_dir / "connector").mkdir(parents=True, exist_ok=True)
        (search_dir / "connector" / "liquid_audio.yaml").write_text("type: liquid_audio\nmodel: LFM2-Audio\n")


def run_all(commands: List[str], cwd: Path) -> List[subprocess.CompletedProcess]:
    procs = [subprocess.Popen(cmd, shell=True, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for cmd in commands]
    results = []
    for cmd, proc in zip(commands, procs):
        out, err = proc.communicate(timeout=240)
        results.append(subprocess.CompletedProcess(cmd, proc.returncode, out, err))
    return results


def planned(result: subprocess.CompletedProcess) -> List[str]:
    return [line[len("planned: "):] for line in result.stdout.splitlines() if line.startswith("planned: ")]


def test_printed_commands_with_dry_run_plan_the_same_directories(tmp_path, capsys):
    """Every printed command, as printed + dry_run=true, plans exactly the expected directories."""
    synthetic = write_json(tmp_path / "synthetic.json", SYNTHETIC)
    configs = {REFS / name: EXPECTED[name] for name in sorted(EXPECTED)}
    configs[synthetic] = ("synthetic_set", SYNTHETIC_SLUGS)
    out_dir, cwd = tmp_path / "presets", tmp_path / "cwd"
    cwd.mkdir()
    code, out, _ = run_main(capsys, *configs, "--out", out_dir)
    assert code == 0
    lines = out.splitlines()
    assert all(line.startswith(f"python -m mllm_shapx.app --multirun --config-dir {out_dir.resolve()} +experiment=")
               for line in lines)
    assert len(lines) == 6 + 5  # one per variant and budget kind: 6 for the references, 5 for the synthetic set
    assert "shap.num_samples=300,400,500" in out and "shap.num_samples=-1,8" in out

    results = run_all([f"{line} dry_run=true" for line in lines], cwd)
    assert all(r.returncode == 0 for r in results), [r.stderr[-2000:] for r in results]
    got = [d for r in results for d in planned(r)]
    assert got == [str(cwd / "experiments_output" / set_id / slug)
                   for set_id, slugs in configs.values() for slug in slugs]
    assert not list(cwd.rglob("*.json")), "a dry run writes no run files"


# JSON sections whose every leaf is the value of the same dotted key in the composed config.
SAME_KEYS = ("dataset", "selection", "generation", "modality", "shap", "embedding", "wandb", "audio_segmentation")


def leaves(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, node


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_composed_runs_carry_every_json_value(name, tmp_path):
    raw = json.loads((REFS / name).read_text())
    imp = importer.load(REFS / name)
    importer.write([imp], tmp_path / "experiment", None)
    stub_liquid_audio(tmp_path)
    runs = importer.planned_runs(imp)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        composed = [OmegaConf.to_container(compose("config", overrides=[
            f"+experiment={run.variant.stem}", f"hydra.searchpath=[file://{tmp_path}]", *run.overrides]),
            resolve=True, enum_to_str=True) for run in runs]
    first = composed[0]
    for key in ("experiment_set_id", "output_root", "device"):
        assert first[key] == raw[key], key
    checked = 0
    for section in SAME_KEYS:
        for path, value in leaves(raw.get(section, {}), section):
            assert OmegaConf.select(OmegaConf.create(first), path) == value, path
            checked += 1
    assert checked >= 15
    # connector: hf_text names no model -> the embedded default; liquid_audio -> its own option
    assert first["connector"]["type"] == (raw["connector"] if "connector" in raw else "liquid_audio")
    # each run's explainer settings, against the JSON variant it came from
    for run, cfg in zip(runs, composed):
        variant = raw["experiments"][run.variant.index]
        canonical = importer.ALIASES.get(variant["explainer_type"], variant["explainer_type"])
        assert cfg["shap"]["explainer_type"] == canonical
        assert cfg["shap"]["name"] == variant.get("name")
        for key, ours in (("num_samples", "num_samples"), ("fractions", "fraction"), ("linear", "linear")):
            if variant.get(key):
                assert cfg["shap"][ours] in variant[key]
        block = variant.get("hierarchical", {})
        if block:
            assert cfg["shap"]["k"] in block["ks"]
            assert cfg["shap"]["shap_type"] == importer.ALIASES.get(block["shap_type"], block["shap_type"])
            assert cfg["shap"]["first_layer_type"] == importer.ALIASES.get(block["first_layer_type"])
            assert cfg["shap"]["first_layer_num_samples"] in block["first_layer_num_samples"]
            assert cfg["shap"]["importance_min_fraction"] in block["importance_min_fractions"]
            assert cfg["shap"]["shap_fraction"] is None  # "shap_fraction" is not a key the original read


def test_original_defaults_are_written_where_the_json_is_silent(tmp_path):
    path = write_json(tmp_path / "bare.json", {"experiment_set_id": "bare",
                                               "experiments": [{"explainer_type": "exact"}]})
    imp = importer.load(path)
    importer.write([imp], tmp_path / "experiment", None)
    stub_liquid_audio(tmp_path)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"+experiment={imp.variants[0].stem}",
                                           f"hydra.searchpath=[file://{tmp_path}]"])
    assert cfg.generation.text_temperature == 0.2  # the original's default, not ours (0.0)
    assert cfg.selection.shuffle_seed == 0  # the original shuffled with seed 0 by default
    assert cfg.wandb.enabled is True and cfg.wandb.project == "mllm-shap"
    assert cfg.connector.type.value == "liquid_audio"
    assert (cfg.dataset.repo_id, cfg.dataset.subset, cfg.dataset.revision) == ("Pawlo77/mllm-shap", "single_sentence",
                                                                              PIN)
    assert cfg.dataset.path is None  # the Hub shard, not this app's bundled default
    warnings = "\n".join(imp.report.warnings)
    assert "connector: not given: the original's default is liquid_audio" in warnings


def bad_config(**changes):
    cfg = json.loads(json.dumps(SYNTHETIC))
    for key, value in changes.items():
        cfg[key] = value
    return cfg


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c["experiments"][1].__setitem__("fractions", [0.25, 1.5]),
     "experiments[1].fractions[1]: 1.5 is outside (0, 1]"),
    (lambda c: c["experiments"][0].__setitem__("explainer_type", "kernel_shap"),
     'experiments[0].explainer_type: "kernel_shap" is not an explainer'),
    (lambda c: c["experiments"][0].__setitem__("num_sample", [5]),
     "experiments[0].num_sample: unknown key (did you mean 'num_samples'?)"),
    (lambda c: c.__setitem__("selction", {}), "selction: unknown key (did you mean 'selection'?)"),
    (lambda c: c["selection"].__setitem__("max_samples", "10"),
     'selection.max_samples: expected an integer, got string "10"'),
    (lambda c: c["experiments"][1].__setitem__("linear", [2, 12.0]),
     "experiments[1].linear[1]: 12.0 is outside (0, 10]"),
    (lambda c: c["experiments"][0].__setitem__("num_samples", [0]), "experiments[0].num_samples[0]: 0 is neither"),
    (lambda c: c["experiments"][0].__setitem__("num_samples", [True]),
     "experiments[0].num_samples[0]: expected an integer, got boolean"),
    (lambda c: c["experiments"].append({"explainer_type": "hierarchical", "hierarchical": {"ks": [4, 1]}}),
     "experiments[3].hierarchical.ks[1]: 1 is below 2"),
    (lambda c: c["experiments"].append({"explainer_type": "hierarchical", "hierarchical_ks": [2],
                                        "hierarchical_shap_type": "standard_mc"}),
     'experiments[3].hierarchical_shap_type: "standard_mc" is not an explainer here'),
    (lambda c: c["experiments"].append({"explainer_type": "cc"}), "experiments[3]: limited_cc needs a budget list"),
    (lambda c: c["experiments"].append({"explainer_type": "hierarchical", "hierarchical": {
        "ks": [2], "shap_num_samples": [10.5]}}),
     "experiments[3].hierarchical.shap_num_samples[0]: expected an integer, got number 10.5"),
    (lambda c: c["experiments"].append({"explainer_type": "hierarchical", "hierarchical": {"kss": [2]}}),
     "experiments[3].hierarchical.kss: unknown key (did you mean 'ks'?)"),
    (lambda c: c.__setitem__("modality", {"input_modality": "audio__male"}),
     "modality.input_modality: 'audio__male': the hf_text connector takes text only"),
    (lambda c: c["shap"].__setitem__("similarity", "Jaccard") if "shap" in c else c.__setitem__(
        "shap", {"similarity": "Jaccard"}), 'shap.similarity: "Jaccard" is not one of'),
    (lambda c: c.__setitem__("experiments", []), "experiments: required: a non-empty array"),
    (lambda c: c.pop("experiment_set_id"), "experiment_set_id: required"),
])
def test_bad_configs_name_the_json_path_exit_2_and_write_nothing(mutate, message, tmp_path, capsys):
    cfg = bad_config()
    mutate(cfg)
    good = write_json(tmp_path / "good.json", SYNTHETIC)
    bad = write_json(tmp_path / "bad.json", cfg)
    out_dir = tmp_path / "out"
    code, out, err = run_main(capsys, good, bad, "--out", out_dir)
    assert code == 2
    assert f"error: {bad}: {message}" in err, err
    assert str(good) not in err
    assert out == "" and not out_dir.exists()


def test_malformed_json_is_an_error(tmp_path, capsys):
    bad = tmp_path / "broken.json"
    bad.write_text('{"experiment_set_id": "x", "experiments": [}')
    code, out, err = run_main(capsys, bad, "--out", tmp_path / "out")
    assert code == 2 and f"error: {bad}: (top level): not valid JSON: Expecting value at line 1" in err
    assert out == "" and not (tmp_path / "out").exists()
    nan = write_json(tmp_path / "nan.json", {})
    nan.write_text('{"experiment_set_id": "x", "experiments": [{"explainer_type": "mc", "fractions": [NaN]}]}')
    code, _, err = run_main(capsys, nan, "--out", tmp_path / "out")
    assert code == 2 and "NaN is not a JSON number" in err


def test_keys_the_original_ignored_are_warnings(tmp_path, capsys):
    code, out, err = run_main(capsys, REFS / "hierarchical_test.json", "--out", tmp_path)
    assert code == 0
    assert ("warning: " + str(REFS / "hierarchical_test.json") + ": experiments[0].hierarchical.shap_fraction: "
            "ignored: the original reads 'shap_fractions'") in err
    cfg = bad_config()
    cfg["experiments"][2].update({"num_samples": [5], "hierarchical_ks": [3]})
    cfg["selection"]["filters"] = [{"column": "language", "equals": "en"}]
    cfg["generation"] = {"audio_temperature": 0.7}
    cfg["chat"] = {"system_prompt": "Be brief.", "system_roles_setup": "SYSTEM_ASSISTANT"}
    cfg["experiments"][0]["fraction"] = 0.5
    path = write_json(tmp_path / "ignored.json", cfg)
    imp = importer.load(path)
    assert not imp.report.errors
    warnings = "\n".join(imp.report.warnings)
    for expected in ("experiments[2].num_samples: ignored: exact takes no budget list",
                     "experiments[2].hierarchical_ks: ignored: exact is not hierarchical",
                     "selection.filters: ignored", "generation.audio_temperature: ignored",
                     "chat.system_roles_setup: ignored", "experiments[0].fraction: ignored",
                     "connector: hf_text names no model"):
        assert expected in warnings, expected
    assert imp.body["connector"] == {"system_prompt": "Be brief."}
    repeated = tmp_path / "repeated.json"
    repeated.write_text('{"experiment_set_id": "r", "connector": "hf_text", "experiments": ['
                        '{"explainer_type": "mc", "num_samples": [5], "num_samples": [6]}]}')
    imp = importer.load(repeated)
    assert "experiments[0].num_samples: given more than once in one object" in "\n".join(imp.report.warnings)
    assert imp.variants[0].shap["num_samples"] == 6


def test_a_fraction_written_as_an_integer_warns_about_its_slug():
    imp = importer.Imported(source=Path("x.json"), report=importer.Report("x.json"))
    importer._convert({"experiment_set_id": "s", "connector": "hf_text", "experiments": [
        {"explainer_type": "hierarchical", "hierarchical": {"ks": [2], "shap_num_samples": [4],
                                                            "importance_min_fractions": [1]}}]}, imp)
    assert not imp.report.errors
    assert any("importance_min_fractions[0]: integer 1" in w and "'imp1', this app with 'imp1_0'" in w
               for w in imp.report.warnings)


def test_check_prints_the_run_count(tmp_path, capsys):
    good = write_json(tmp_path / "synthetic.json", SYNTHETIC)
    code, out, err = run_main(capsys, "--check", good)
    assert (code, out) == (0, f"{good}: 7 runs, all compose and pass the config checks\n")
    cfg = bad_config()
    cfg["selection"].update({"min_prompt_tokens": 9, "max_prompt_tokens": 3})  # the original never checked this
    path = write_json(tmp_path / "window.json", cfg)
    code, out, _ = run_main(capsys, "--check", "--list", path)
    assert code == 2
    assert f"{path}: 7 runs, 7 cannot run:" in out
    assert "selection.min_prompt_tokens: 9 is above selection.max_prompt_tokens 3" in out
    assert out.count("planned: experiments_output/synthetic_set/") == 7


def test_check_cli_says_every_reference_config_still_runs():
    result = subprocess.run([sys.executable, "-m", "mllm_shapx.importer", "--check",
                             *[str(REFS / name) for name in sorted(EXPECTED)]],
                            cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"{REFS / name}: {len(slugs)} run{'s' if len(slugs) > 1 else ''}, all compose and pass the config checks"
        for name, (_, slugs) in sorted(EXPECTED.items())]
    # the original's automatic inner budget: imported without one, run with the minimal budget, said so
    assert "no inner budget" in result.stderr and "minimal budget per inner game" in result.stderr


def copy_checkout(root: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "bundled", "*.pyc")
    shutil.copytree(REPO / "mllm_shapx", root / "mllm_shapx", ignore=ignore)
    shutil.copytree(REPO / "conf", root / "conf", ignore=ignore)
    return root


def test_install_writes_presets_that_work_with_plus_experiment(tmp_path):
    before = sorted(p.name for p in (CONF_DIR / "experiment").iterdir())
    checkout = copy_checkout(tmp_path / "checkout")
    hand_written = checkout / "conf" / "experiment" / "ss_2025_11_03__mc_minimal.yaml"
    hand_written.write_text("# @package _global_\nexperiment_set_id: mine\n")

    def install():
        return subprocess.run([sys.executable, "-m", "mllm_shapx.importer", str(REFS / "mc_minimal.json"),
                               str(REFS / "single_sentence_grid.json"), "--install"],
                              cwd=checkout, env=ENV, capture_output=True, text=True, timeout=120)

    result = install()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        "python -m mllm_shapx.app --multirun +experiment=testing_and_experiments__minimal_mc",
        "python -m mllm_shapx.app --multirun +experiment=ss_2025_11_03__mc_minimal_2",
        "python -m mllm_shapx.app --multirun +experiment=ss_2025_11_03__mc_ns_grid shap.num_samples=300,400,500"]
    assert "experiment name ss_2025_11_03__mc_minimal is taken; using ss_2025_11_03__mc_minimal_2" in result.stderr
    assert hand_written.read_text() == "# @package _global_\nexperiment_set_id: mine\n"  # never clobbered
    again = install()  # idempotent: re-importing overwrites its own files under the same names
    assert again.stdout == result.stdout
    assert sorted(p.name for p in (CONF_DIR / "experiment").iterdir()) == before  # the repo's conf/ untouched

    # mc_minimal as printed; the grid ran on liquid_audio, which this app may not offer yet: swap the connector
    results = run_all([f"{lines[0]} dry_run=true", *(f"{line} connector=smollm2 dry_run=true" for line in lines[1:])],
                      checkout)
    assert all(r.returncode == 0 for r in results), [r.stderr[-2000:] for r in results]
    runs = [d for r in results for d in planned(r)]
    assert runs == [str(checkout / "experiments_output" / set_id / slug) for name in ("mc_minimal.json",
                    "single_sentence_grid.json") for set_id, slugs in [EXPECTED[name]] for slug in slugs]
