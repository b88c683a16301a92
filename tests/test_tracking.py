"""W&B tracking: offline end to end on a real tiny-model run, resume, disabled, unreachable endpoint.

The offline run is read back from wandb's own transaction log (``run-<id>.wandb``: a leveldb-style
record log of ``wandb.proto.wandb_internal_pb2.Record`` messages; wandb 0.31 ships no Python reader,
so ``wandb_records`` below decodes the framing and lets wandb's protobuf schema parse each record).
Nothing here touches the network except the loopback test (a local port with nothing listening).
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import struct
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import CONF_DIR, tiny_overrides
from mllm_shapx import tracking
from mllm_shapx.run import build_spec, run
from mllm_shapx.tracking import NullTracker, WandbTracker, open_tracker

ORIGINAL_METRICS = {
    "progress/sample_index", "timing/runtime_sec", "attr/abs_sum_text", "attr/abs_sum_audio",
    "attr/frac_text", "attr/frac_audio", "counts/text_tokens", "counts/audio_segments",
    "meta/language", "meta/input_modality", "meta/output_modality",
}
OUR_METRICS = {"estimator/n_calls", "estimator/efficiency_gap", "estimator/shap_stderr_mean"}


# --- wandb's offline files ----------------------------------------------------------------------------
def wandb_records(path: Path):
    """Every record of a ``.wandb`` transaction log, parsed with wandb's own protobuf schema."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a wandb transaction log"
    block, pos, parts = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding up to the block end
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        parts = chunk if kind in (1, 2) else parts + chunk  # FULL / FIRST start a record
        if kind in (1, 4):  # FULL / LAST end it
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            yield record


def finished_records(path: Path, timeout: float = 15.0) -> list:
    """The records of a finished run's log. wandb-core writes the log asynchronously: ``run.finish()``
    can return before the tail (from the run record on, for a short run) reaches the file."""
    deadline = time.monotonic() + timeout
    while True:
        records = list(wandb_records(path))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def offline_runs(run_dir: Path) -> list:
    """(run record, history rows, artifact records) of every offline W&B run under ``run_dir``, oldest first."""
    found = []
    for folder in sorted((run_dir / "wandb").glob("offline-run-*")):
        records = finished_records(next(folder.glob("run-*.wandb")))
        by_type = {}
        for record in records:
            by_type.setdefault(record.WhichOneof("record_type"), []).append(record)
        history = [{"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in r.history.item}
                   for r in by_type.get("history", [])]
        found.append((by_type["run"][0].run, history, [r.artifact for r in by_type.get("artifact", [])]))
    return found


# --- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def wandb_sandbox(tmp_path_factory):
    """wandb's own config/cache/data folders in a temporary place, quiet, no credentials."""
    import wandb

    home = tmp_path_factory.mktemp("wandb_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_SILENT", "true")
        for var, sub in (("WANDB_CONFIG_DIR", "config"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_DATA_DIR", "data")):
            mp.setenv(var, str(home / sub))
        for var in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_ENTITY", "WANDB_PROJECT", "WANDB_DIR", "WANDB_RUN_ID"):
            mp.delenv(var, raising=False)
        wandb.teardown()  # the wandb singleton reads the environment when it is set up
        yield
        wandb.teardown()


@pytest.fixture(scope="module")
def finished_run(tiny_model_dir, tmp_path_factory):
    """A real 2-row run of the tiny model: (its config, its run directory)."""
    root = tmp_path_factory.mktemp("tracked")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=tiny_overrides(tiny_model_dir, root))
    out = root / "run"
    assert run(cfg, out)["n_samples"] == 2
    return cfg, out


def fresh_copy(finished_run, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(finished_run[1], out)
    return out


def track(cfg, out: Path, wandb_cfg) -> object:
    """What the runner does: open the tracker, log every finished sample, finish with the summary."""
    slug = json.loads((out / "spec.json").read_text())["run_slug"]
    tracker = open_tracker(wandb_cfg, run_dir=out, run_slug=slug, experiment_set_id=cfg.experiment_set_id,
                           spec=build_spec(cfg, slug))
    for path in sorted((out / "samples").glob("*.json")):
        tracker.log_sample(json.loads(path.read_text()))
    summary_path = out / "summary" / "aggregate_metrics.json"
    tracker.finish(json.loads(summary_path.read_text()), summary_path)
    return tracker


def offline(**extra):
    return {"enabled": True, "mode": "offline", "project": "mllm-shapx-tests", "entity": None, "group": None,
            "tags": ["tests", "offline"], **extra}


def unreachable_url() -> str:
    """A loopback port with nothing listening (bound, read, released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def tracking_warnings(caplog) -> list:
    return [r for r in caplog.records if r.name == tracking.__name__ and r.levelno >= logging.WARNING]


# --- tests --------------------------------------------------------------------------------------------
def test_offline_run_holds_metrics_and_artifacts_and_resume_reuses_the_id(finished_run, tmp_path, caplog):
    cfg, _ = finished_run
    out = fresh_copy(finished_run, tmp_path)
    samples = {s["row_index"]: s for s in (json.loads(p.read_text()) for p in (out / "samples").glob("*.json"))}
    spec = json.loads((out / "spec.json").read_text())

    assert isinstance(track(cfg, out, offline(log_samples=True)), WandbTracker)
    run_id = json.loads((out / tracking.RUN_ID_FILE).read_text())["id"]
    [(record, history, artifacts)] = offline_runs(out)
    assert record.run_id == run_id and record.display_name == spec["run_slug"]
    assert record.run_group == cfg.experiment_set_id and list(record.tags) == ["tests", "offline"]
    config = {item.key: json.loads(item.value_json) for item in record.config.update}
    assert config["run_slug"] == spec["run_slug"] and config["config"] == spec["config"]

    assert len(history) == 2
    for row in history:
        assert ORIGINAL_METRICS | OUR_METRICS <= set(row)
        sample = samples[row["progress/sample_index"]]
        assert row["timing/runtime_sec"] == pytest.approx(sample["runtime_sec"])
        assert row["attr/frac_text"] == pytest.approx(sample["attr_summary"]["frac_text"])
        assert row["counts/text_tokens"] == sample["attr_summary"]["count_text_tokens"]
        assert row["meta/language"] == sample["language"] and row["meta/input_modality"] == "text"
        assert row["estimator/n_calls"] == sample["n_calls"]
        assert row["estimator/efficiency_gap"] == pytest.approx(sample["efficiency_gap"])
        stderr = sample["shap_stderr"]
        assert row["estimator/shap_stderr_mean"] == pytest.approx(sum(stderr) / len(stderr))

    summaries = [a for a in artifacts if a.type == "summary"]
    assert [[c.path for c in a.manifest.contents] for a in summaries] == [["aggregate_metrics.json"]]
    versions = [[c.path for c in a.manifest.contents] for a in artifacts if a.type == "samples"]
    assert all(a.incremental_beta1 for a in artifacts if a.type == "samples")
    uploaded = [name for version in versions for name in version]
    assert sorted(uploaded) == sorted(p.name for p in (out / "samples").glob("*.json"))  # each file exactly once
    assert not tracking_warnings(caplog)

    # Re-running the same directory resumes the same W&B run (a new offline folder, the same id).
    track(cfg, out, offline())
    runs = offline_runs(out)
    assert len(runs) == 2 and {r.run_id for r, _, _ in runs} == {run_id}
    assert json.loads((out / tracking.RUN_ID_FILE).read_text())["id"] == run_id


def test_a_directory_started_afresh_gets_a_new_run_and_group_is_configurable(finished_run, tmp_path):
    cfg, _ = finished_run
    out = fresh_copy(finished_run, tmp_path)
    track(cfg, out, offline(group="my-group"))
    first = json.loads((out / tracking.RUN_ID_FILE).read_text())["id"]
    spec = json.loads((out / "spec.json").read_text())
    spec["created_at"] += 1  # what resume=false does: a new spec.json for the same directory
    (out / "spec.json").write_text(json.dumps(spec))
    track(cfg, out, offline(group="my-group"))
    ids = [r.run_id for r, _, _ in offline_runs(out)]
    assert len(set(ids)) == 2 and first in ids
    assert {r.run_group for r, _, _ in offline_runs(out)} == {"my-group"}


@pytest.mark.parametrize("wandb_cfg", [offline(enabled=False), offline(mode="disabled"),
                                      {"enabled": True, "mode": "disabled"}])
def test_disabled_touches_nothing(finished_run, tmp_path, monkeypatch, caplog, wandb_cfg):
    cfg, _ = finished_run
    out = fresh_copy(finished_run, tmp_path)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    monkeypatch.setitem(sys.modules, "wandb", None)  # importing wandb would raise
    assert isinstance(track(cfg, out, wandb_cfg), NullTracker)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert not tracking_warnings(caplog)


def test_composed_wandb_node_is_accepted(finished_run, compose_cfg, tiny_model_dir, tmp_path):
    """The real config node (mode is an Enum there) drives the tracker."""
    cfg = compose_cfg(*tiny_overrides(tiny_model_dir, tmp_path), "wandb.enabled=true", "wandb.mode=offline",
                      "wandb.tags=[a,b]")
    out = fresh_copy(finished_run, tmp_path)
    assert isinstance(track(cfg, out, cfg.wandb), WandbTracker)
    [(record, history, _)] = offline_runs(out)
    assert record.project == cfg.wandb.project and list(record.tags) == ["a", "b"] and len(history) == 2
    disabled = compose_cfg(*tiny_overrides(tiny_model_dir, tmp_path))
    assert isinstance(open_tracker(disabled.wandb, run_dir=tmp_path / "x", run_slug="s", experiment_set_id="e",
                                   spec={}), NullTracker)
    assert not (tmp_path / "x").exists()


def test_unreachable_online_endpoint_does_not_fail_or_slow_the_run(finished_run, tmp_path, monkeypatch, caplog):
    import wandb

    cfg, _ = finished_run
    out = fresh_copy(finished_run, tmp_path)
    monkeypatch.setenv("WANDB_BASE_URL", unreachable_url())
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef" * 2 + "01234567")
    monkeypatch.setattr(tracking, "INIT_TIMEOUT_S", 3.0)
    monkeypatch.setattr(tracking, "_FAILED_ONLINE", set())
    wandb.teardown()  # let the wandb singleton see this environment
    try:
        before = sorted(p.relative_to(out) for p in (out / "samples").rglob("*"))
        started = time.monotonic()
        tracker = track(cfg, out, offline(mode="online", log_samples=True))
        elapsed = time.monotonic() - started
        assert isinstance(tracker, NullTracker) and elapsed < 3.0 + 7.0
        [warning] = tracking_warnings(caplog)
        assert "wandb.init (online) failed" in warning.getMessage() and "unaffected" in warning.getMessage()
        assert sorted(p.relative_to(out) for p in (out / "samples").rglob("*")) == before

        # A later run of the same process (a sweep) does not wait for the same endpoint again.
        started = time.monotonic()
        assert isinstance(track(cfg, out, offline(mode="online")), NullTracker)
        assert time.monotonic() - started < 1.0 and len(tracking_warnings(caplog)) == 2
    finally:
        wandb.teardown()


class _BrokenRun:
    id = "broken"

    def __init__(self):
        self.calls, self.finished = 0, []

    def log(self, metrics):
        self.calls += 1
        raise OSError("quota exceeded")

    def finish(self, exit_code=None):
        self.finished.append(exit_code)


def test_a_failure_after_init_warns_once_and_stops_tracking(tmp_path, caplog):
    broken = _BrokenRun()
    tracker = WandbTracker(None, broken, run_dir=tmp_path, run_slug="s", log_samples=True)
    for index in range(3):
        tracker.log_sample({"row_index": index, "runtime_sec": 1.0, "attr_summary": {}})
    tracker.finish({"n_samples": 3}, tmp_path / "summary.json")
    assert broken.calls == 1 and broken.finished == [1] and not tracker.active
    [warning] = tracking_warnings(caplog)
    assert "quota exceeded" in warning.getMessage() and "unaffected" in warning.getMessage()


def test_sample_metrics_leave_out_missing_values():
    metrics = tracking.sample_metrics({"row_index": 4, "runtime_sec": 2, "language": None, "shap_stderr": None,
                                       "attr_summary": {"frac_text": 1.0, "frac_audio": None}})
    assert metrics == {"progress/sample_index": 4, "timing/runtime_sec": 2.0, "attr/frac_text": 1.0}


def test_the_runner_tracks_each_run_directory(compose_cfg, tiny_model_dir, tmp_path, monkeypatch, wandb_sandbox):
    def cfg_for(*overrides):
        return compose_cfg(*tiny_overrides(tiny_model_dir, tmp_path), *overrides)

    untracked = tmp_path / "untracked"
    run(cfg_for(), untracked)  # wandb.enabled defaults to false: nothing of W&B in the directory
    assert not (untracked / "wandb").exists() and not (untracked / tracking.RUN_ID_FILE).exists()

    out = tmp_path / "tracked"
    on = ("wandb.enabled=true", "wandb.mode=offline", "wandb.log_samples=true")
    run(cfg_for(*on), out)
    run(cfg_for(*on, "selection.max_samples=3"), out)  # resumes: one more row, the same W&B run
    (first, first_history, first_artifacts), (second, second_history, second_artifacts) = offline_runs(out)
    run_id = json.loads((out / tracking.RUN_ID_FILE).read_text())["id"]
    assert first.run_id == second.run_id == run_id and first.display_name == "minimal_mc_limited_mc_ns12"
    assert [len(first_history), len(second_history)] == [2, 1]
    assert all(ORIGINAL_METRICS | OUR_METRICS <= set(row) for row in first_history + second_history)
    artifacts = first_artifacts + second_artifacts
    assert [a.type for a in artifacts].count("summary") == 2
    uploaded = [c.path for a in artifacts if a.type == "samples" for c in a.manifest.contents]
    assert sorted(uploaded) == sorted(p.name for p in (out / "samples").glob("*.json"))  # each once

    # An unreachable online endpoint: the run completes, locally complete, and fast.
    monkeypatch.setenv("WANDB_BASE_URL", unreachable_url())
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr(tracking, "INIT_TIMEOUT_S", 3.0)
    monkeypatch.setattr(tracking, "_FAILED_ONLINE", set())
    import wandb

    wandb.teardown()
    try:
        summary = run(cfg_for("wandb.enabled=true", "wandb.mode=online"), tmp_path / "online")
    finally:
        wandb.teardown()
    assert summary["n_samples"] == 2 and summary["n_failed"] == 0


def test_an_audio_run_uploads_its_wav_files_with_the_samples(compose_cfg, tiny_audio_dir, tmp_path):
    cfg = compose_cfg(
        "+experiment=mc_minimal", "connector=hf_audio", f"connector.model={tiny_audio_dir}", f"output_root={tmp_path}",
        "modality.input_modality=audio__female", "selection.max_samples=2", "selection.min_prompt_tokens=null",
        "selection.max_prompt_tokens=null", "shap.num_samples=6", "generation.max_new_tokens=3",
        "runtime.progress_bar=false", "wandb.enabled=true", "wandb.mode=offline", "wandb.log_samples=true")
    out = tmp_path / "audio_run"
    run(cfg, out)
    [(_, history, artifacts)] = offline_runs(out)
    assert all(row["counts/audio_segments"] > 0 and row["attr/frac_audio"] == 1.0 for row in history)
    uploaded = sorted(c.path for a in artifacts if a.type == "samples" for c in a.manifest.contents)
    on_disk = sorted([p.name for p in (out / "samples").glob("*.json")]
                     + [str(p.relative_to(out)) for p in (out / "audio").rglob("*.wav")])
    assert uploaded == on_disk and sum(name.endswith(".wav") for name in uploaded) == 2
