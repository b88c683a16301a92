"""The command line, as a researcher types it, in subprocesses: runs, sweeps, kills, validation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, tiny_overrides

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def cli(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def sample_files(run_dir: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted((run_dir / "samples").glob("*.json"))}


def test_run_writes_the_artifacts_into_the_slug_directory(tiny_model_dir, tmp_path):
    result = cli("mllm_shapx.app", *tiny_overrides(tiny_model_dir, tmp_path))
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "testing_and_experiments" / "minimal_mc_limited_mc_ns12"
    assert len(sample_files(run_dir)) == 2
    assert json.loads((run_dir / "summary" / "aggregate_metrics.json").read_text())["n_samples"] == 2


def test_multirun_sweep_makes_one_directory_per_run(tiny_model_dir, tmp_path):
    args = [*tiny_overrides(tiny_model_dir, tmp_path), "shap.num_samples=8,10"]
    planned = cli("mllm_shapx.app", "--multirun", *args, "dry_run=true")
    assert planned.returncode == 0, planned.stderr
    set_dir = tmp_path / "testing_and_experiments"
    expected = [set_dir / "minimal_mc_limited_mc_ns8", set_dir / "minimal_mc_limited_mc_ns10"]
    assert [line for line in planned.stdout.splitlines() if line.startswith("planned:")] == [
        f"planned: {d}" for d in expected]
    assert not any(d.exists() for d in expected)
    result = cli("mllm_shapx.app", "--multirun", *args)
    assert result.returncode == 0, result.stderr
    for run_dir in expected:
        assert len(sample_files(run_dir)) == 2
        assert json.loads((run_dir / "spec.json").read_text())["run_slug"] == run_dir.name


def test_config_errors_exit_2_and_write_nothing(tiny_model_dir, tmp_path):
    result = cli("mllm_shapx.app", *tiny_overrides(tiny_model_dir, tmp_path), "shap.fraction=0.3")
    assert result.returncode == 2
    assert "shap.fraction" in result.stderr
    assert not list(tmp_path.iterdir())  # not even Hydra's own files
    typo = cli("mllm_shapx.app", *tiny_overrides(tiny_model_dir, tmp_path), "shap.num_sampels=3")
    assert typo.returncode != 0 and "full_key: shap.num_sampels" in typo.stderr


def test_sigkill_then_rerun_keeps_finished_rows_and_completes(tiny_model_dir, tmp_path):
    args = [*tiny_overrides(tiny_model_dir, tmp_path / "killed"), "selection.max_samples=6",
            "shap.num_samples=60", "generation.batch_size=1", "generation.max_new_tokens=8"]
    run_dir = tmp_path / "killed" / "testing_and_experiments" / "minimal_mc_limited_mc_ns60"
    proc = subprocess.Popen([sys.executable, "-m", "mllm_shapx.app", *args], cwd=REPO, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(sample_files(run_dir)) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = sample_files(run_dir)
    assert 2 <= len(before) < 6, "the run should have been killed mid-way"
    result = cli("mllm_shapx.app", *args)
    assert result.returncode == 0, result.stderr
    after = sample_files(run_dir)
    assert len(after) == 6
    assert all(after[name] == data for name, data in before.items())
    assert not list(run_dir.rglob("*.tmp"))

    # An uninterrupted run computes exactly the same attributions.
    fresh_args = [a.replace(str(tmp_path / "killed"), str(tmp_path / "fresh")) for a in args]
    assert cli("mllm_shapx.app", *fresh_args).returncode == 0
    fresh_dir = tmp_path / "fresh" / "testing_and_experiments" / "minimal_mc_limited_mc_ns60"
    for name, data in sample_files(fresh_dir).items():
        assert json.loads(data)["raw_shap_values"] == json.loads(after[name])["raw_shap_values"]


def test_validate_cli():
    ok = cli("mllm_shapx.validate", "+experiment=mc_minimal", "check_dataset=true")
    assert ok.returncode == 0 and ok.stdout.strip() == "config ok (dataset readable)"
    bad = cli("mllm_shapx.validate", "+experiment=mc_minimal", "shap.num_samples=null",
              "dataset=local", "dataset.path=/nonexistent.parquet", "check_dataset=true")
    assert bad.returncode == 2
    assert bad.stdout.splitlines() == [
        "shap: limited_mc needs exactly one of shap.num_samples, shap.fraction, shap.linear (got none)"]
    unreadable = cli("mllm_shapx.validate", "dataset=local", "dataset.path=/nonexistent.parquet", "check_dataset=true")
    assert unreadable.returncode == 2 and "/nonexistent.parquet" in unreadable.stdout
    typo = cli("mllm_shapx.validate", "shap.num_sampels=3")
    assert typo.returncode == 2 and "full_key: shap.num_sampels" in typo.stdout


@pytest.mark.real_model
def test_mc_minimal_on_the_real_default_model(tmp_path):
    """The embedded SmolLM2-135M-Instruct, end to end: real answers, real attributions."""
    result = cli("mllm_shapx.app", "+experiment=mc_minimal", f"output_root={tmp_path}", "selection.max_samples=1",
                 "shap.num_samples=20", "runtime.num_threads=1", "runtime.progress_bar=false", timeout=600)
    assert result.returncode == 0, result.stderr
    run_dir = tmp_path / "testing_and_experiments" / "minimal_mc_limited_mc_ns20"
    ((name, data),) = sample_files(run_dir).items()
    sample = json.loads(data)
    assert sample["n_players"] == 15 and sample["n_calls"] == 20
    assert len(sample["answer_text"].split()) >= 3  # a real sentence, not noise
    assert sample["value_full"] == 1.0 and 0.0 <= sample["value_empty"] < 1.0
    assert sum(abs(v) for v in sample["shap_values"]) == pytest.approx(1.0)
    assert sample["efficiency_gap"] == pytest.approx(
        sum(sample["raw_shap_values"]) - (sample["value_full"] - sample["value_empty"]))


def test_concurrent_shards_lose_no_checkpoint_update(tiny_model_dir, tmp_path):
    args = [*tiny_overrides(tiny_model_dir, tmp_path), "selection.max_samples=6", "shap.num_samples=20",
            "generation.batch_size=2", "shard.count=2"]
    procs = [subprocess.Popen([sys.executable, "-m", "mllm_shapx.app", *args, f"shard.index={i}"], cwd=REPO,
                              env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    run_dir = tmp_path / "testing_and_experiments" / "minimal_mc_limited_mc_ns20"
    checkpoint = json.loads((run_dir / "checkpoint.json").read_text())
    assert len(checkpoint["completed_indices"]) == 6 and checkpoint["next_index"] is None
    assert len(sample_files(run_dir)) == 6
    summary = json.loads((run_dir / "summary" / "aggregate_metrics.json").read_text())
    assert summary["n_samples"] == 6
