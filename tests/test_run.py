"""The task in-process on the tiny model: artifacts, resume, identity, isolation of failing rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from filelock import FileLock

from conftest import tiny_overrides
from mllm_shapx.artifacts import RunDir, RunDirError
from mllm_shapx.config import ConfigError
from mllm_shapx.run import run

REFERENCE = Path(__file__).resolve().parent / "reference" / "original_run"


@pytest.fixture
def cfg_for(compose_cfg, tiny_model_dir, tmp_path):
    def _cfg(*overrides):
        return compose_cfg(*tiny_overrides(tiny_model_dir, tmp_path), *overrides)

    return _cfg


def samples(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted((out / "samples").glob("*.json"))}


def test_artifacts_follow_the_original_layout(cfg_for, tmp_path):
    out = tmp_path / "run"
    summary = run(cfg_for(), out)
    assert summary["n_samples"] == 2 and summary["n_failed"] == 0
    reference = json.loads(next((REFERENCE / "samples").glob("*.json")).read_text())
    for path in (out / "samples").glob("*.json"):
        sample = json.loads(path.read_text())
        assert path.name == f"sample_{sample['row_index']:05d}_result.json"
        optional = {"audio_artifacts", "neyman_steps", "num_levels"}
        assert set(reference) - optional <= set(sample)
        assert set(sample["attr_summary"]) == set(reference["attr_summary"])
        entry_keys = {k for turn in reference["conversation"] for e in turn for k in e}
        assert all(set(e) == entry_keys for turn in sample["conversation"] for e in turn)
        shown = [v for turn in sample["conversation"] for e in turn for v in e["shap_values"] if v is not None]
        assert shown == sample["shap_values"] and len(shown) == sample["n_players"]
        assert sum(abs(v) for v in shown) == pytest.approx(1.0)  # AbsSumNormalizer
        assert sample["n_calls"] == sample["n_evaluations"] <= 12
        assert sample["efficiency_gap"] == pytest.approx(
            sum(sample["raw_shap_values"]) - (sample["value_full"] - sample["value_empty"]))
    checkpoint = json.loads((out / "checkpoint.json").read_text())
    assert set(checkpoint) == set(json.loads((REFERENCE / "checkpoint.json").read_text()))
    assert len(checkpoint["completed_indices"]) == 2 and checkpoint["next_index"] is None
    reference_summary = json.loads((REFERENCE / "summary" / "aggregate_metrics.json").read_text())
    assert set(reference_summary) <= set(summary)
    spec = json.loads((out / "spec.json").read_text())
    assert spec["run_slug"] == "minimal_mc_limited_mc_ns12" and spec["config"]["shap"]["num_samples"] == 12


def test_rerun_recomputes_nothing_and_more_rows_extend_in_place(cfg_for, tmp_path):
    out = tmp_path / "run"
    run(cfg_for(), out)
    first = samples(out)
    run(cfg_for(), out)
    assert samples(out) == first
    run(cfg_for("selection.max_samples=4"), out)
    after = samples(out)
    assert len(after) == 4 and all(after[name] == data for name, data in first.items())
    assert len(json.loads((out / "checkpoint.json").read_text())["completed_indices"]) == 4


def test_corrupt_sample_is_redone(cfg_for, tmp_path):
    out = tmp_path / "run"
    run(cfg_for(), out)
    victim = sorted((out / "samples").glob("*.json"))[0]
    good = json.loads(victim.read_text())
    victim.write_text('{"row_index": ')
    run(cfg_for(), out)
    redone = json.loads(victim.read_text())
    assert redone["shap_values"] == good["shap_values"]


def test_changed_config_is_refused_naming_the_keys(cfg_for, tmp_path):
    out = tmp_path / "run"
    run(cfg_for(), out)
    with pytest.raises(RunDirError, match="generation.max_new_tokens, seed"):
        run(cfg_for("generation.max_new_tokens=5", "seed=3"), out)
    run(cfg_for("runtime.progress_bar=true", "wandb.enabled=true"), out)  # not part of the identity


def test_resume_false_moves_old_results_aside(cfg_for, tmp_path):
    out = tmp_path / "run"
    run(cfg_for(), out)
    old = samples(out)
    run(cfg_for("resume=false", "seed=7"), out)
    (aside,) = tmp_path.glob("run.replaced-*")
    assert {p.name: p.read_bytes() for p in (aside / "samples").glob("*.json")} == old
    assert json.loads((out / "spec.json").read_text())["config"]["seed"] == 7


def test_second_process_on_the_directory_is_refused(cfg_for, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with FileLock(str(out / ".shard-0-of-1.lock")):
        with pytest.raises(RunDirError, match="in use by another process"):
            run(cfg_for(), out)
    assert not (out / "spec.json").exists()


def test_config_error_before_anything_is_written(cfg_for, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="shap.fraction"):
        run(cfg_for("shap.fraction=0.5"), out)
    assert not out.exists()


def test_dry_run_plans_without_writing(cfg_for, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(cfg_for("dry_run=true", "connector.model=/does/not/exist"), out) is None
    assert capsys.readouterr().out == f"planned: {out}\n"
    assert not out.exists()


def test_failing_row_is_isolated_and_retried(cfg_for, tmp_path, monkeypatch):
    """A model failure (transformers raising) on one row leaves the others done and is retried later."""
    from mllm_shapx.connectors.hf_text import load_text_model

    cfg = cfg_for()
    model = load_text_model(cfg.connector.model)
    real_generate = model.model.generate
    calls = {"n": 0}

    def flaky_generate(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(model.model, "generate", flaky_generate)
    out = tmp_path / "run"
    summary = run(cfg, out)
    assert summary["n_samples"] == 1 and summary["n_failed"] == 1
    (failure,) = (out / "failures").glob("*.json")
    assert "CUDA out of memory (simulated)" in json.loads(failure.read_text())["error"]
    summary = run(cfg, out)
    assert summary["n_samples"] == 2 and summary["n_failed"] == 0
    assert not failure.exists()


def test_run_dir_lock_is_released(tmp_path):
    with RunDir(tmp_path / "d"):
        pass
    with RunDir(tmp_path / "d"):
        pass


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["dataset=local", "dataset.path=/nonexistent/rows.parquet"], "/nonexistent/rows.parquet"),
        (["selection.balanced_token_counts=[4,99]", "selection.samples_per_token_count=2",
          "selection.max_samples=null"], "token_count=99: 0 of 2"),
    ],
)
def test_data_that_cannot_be_selected_is_a_config_error(cfg_for, tmp_path, overrides, message):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match=message):
        run(cfg_for(*overrides), out)
    assert not out.exists()


def comparable(out: Path) -> dict:
    """What must not depend on sharding: attributions per row, checkpoint rows, summary counts."""
    samples = {p.name: json.loads(p.read_text())["raw_shap_values"] for p in (out / "samples").glob("*.json")}
    checkpoint = json.loads((out / "checkpoint.json").read_text())
    summary = json.loads((out / "summary" / "aggregate_metrics.json").read_text())
    timing = {"runtime_sec_total", "runtime_sec_avg", "updated_at"}
    return {"samples": samples, "completed": sorted(checkpoint["completed_indices"]),
            "next": checkpoint["next_index"], "summary": {k: v for k, v in summary.items() if k not in timing}}


def test_shards_merge_into_the_unsharded_result(cfg_for, tmp_path):
    run(cfg_for("selection.max_samples=5"), tmp_path / "whole")
    sharded = tmp_path / "sharded"
    first = run(cfg_for("selection.max_samples=5", "shard.index=0", "shard.count=2"), sharded)
    assert first["n_samples"] == 3  # rows 0, 2, 4 of the selection
    run(cfg_for("selection.max_samples=5", "shard.index=1", "shard.count=2"), sharded)
    assert comparable(sharded) == comparable(tmp_path / "whole")
    states = {p.name: json.loads(p.read_text()) for p in (sharded / "status").glob("*.json")}
    assert sorted(states) == ["shard-0-of-2.json", "shard-1-of-2.json"]
    assert [(s["state"], s["rows_done"], s["rows_selected"]) for s in states.values()] in (
        [("completed", 3, 3), ("completed", 2, 2)], [("completed", 2, 2), ("completed", 3, 3)])


def test_a_failing_job_records_its_status(cfg_for, tmp_path, monkeypatch):
    import mllm_shapx.run as run_module

    def broken(*args, **kwargs):
        raise MemoryError("simulated out of memory")

    monkeypatch.setattr(run_module, "open_tracker", broken)
    out = tmp_path / "run"
    with pytest.raises(MemoryError):
        run(cfg_for(), out)
    monkeypatch.undo()
    status = json.loads((out / "status" / "shard-0-of-1.json").read_text())
    assert status["state"] == "failed" and "simulated out of memory" in status["error"]
    run(cfg_for(), out)
    status = json.loads((out / "status" / "shard-0-of-1.json").read_text())
    assert status["state"] == "completed" and "traceback" not in status


def test_summary_survives_a_sample_with_null_values(cfg_for, tmp_path):
    """NaN/inf are written as null: the summary leaves them out instead of failing every resume."""
    out = tmp_path / "run"
    run(cfg_for(), out)
    victim = sorted((out / "samples").glob("*.json"))[0]
    sample = json.loads(victim.read_text())
    sample["efficiency_gap"] = None
    victim.write_text(json.dumps(sample))
    other = json.loads(sorted((out / "samples").glob("*.json"))[1].read_text())
    summary = run(cfg_for(), out)
    assert summary["n_samples"] == 2
    assert summary["avg_abs_efficiency_gap"] == pytest.approx(abs(other["efficiency_gap"]))


def test_config_error_survives_pickling():
    import pickle

    error = pickle.loads(pickle.dumps(ConfigError(["shap.k: too small", "seed: must be >= 0"])))
    assert error.problems == ["shap.k: too small", "seed: must be >= 0"]


def test_temporary_files_of_killed_writers_are_removed_on_resume(cfg_for, tmp_path):
    import socket

    out = tmp_path / "run"
    run(cfg_for(), out)
    dead_pid = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process can have it
    host = socket.gethostname().replace(".", "_")
    stale = out / "samples" / f".sample_00001_result.json.{host}-{dead_pid}.abc123.tmp"
    stale.write_text('{"row_index": 1, "trunc')
    foreign = out / "samples" / ".sample_00002_result.json.otherhost-1.abc123.tmp"
    foreign.write_text("{}")
    run(cfg_for(), out)
    assert not stale.exists() and foreign.exists()  # another host's writer may still be alive


def test_written_files_get_the_usual_permissions(tmp_path):
    """Atomic writes go through mkstemp (0600); the result must be readable like any file the user writes."""
    import os

    from mllm_shapx.artifacts import atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "shared.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o644
