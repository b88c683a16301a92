"""Launcher presets, the submitit_local launcher, the status view and the retrying batch (no Slurm needed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, tiny_overrides
from mllm_shapx import batch, status

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def cli(module: str, *args: str, cwd: Path = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**ENV, "PYTHONPATH": str(REPO)}  # this checkout's package, whatever the working directory
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


# --- presets --------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset, target", [("local", "LocalLauncher"), ("slurm", "SlurmLauncher")])
def test_launcher_presets_compose(compose_cfg, preset, target):
    cfg = compose_cfg("+experiment=mc_minimal", f"+launcher={preset}", return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == f"hydra_plugins.hydra_submitit_launcher.submitit_launcher.{target}"
    assert launcher.submitit_folder == f"{cfg.hydra.sweep.dir}/.submitit/%j"  # next to the sweep's runs
    assert cfg.hydra.runtime.choices["hydra/launcher"] == f"submitit_{preset}"
    if preset == "slurm":
        assert launcher.partition is None and launcher.account is None and launcher.gpus_per_node is None
        assert launcher.max_num_timeout > 0 and launcher.signal_delay_s > 0 and launcher.setup == []
    # The preset only configures Hydra: the run's own config (and so its directory) is unchanged.
    assert compose_cfg("+experiment=mc_minimal", f"+launcher={preset}") == compose_cfg("+experiment=mc_minimal")


def test_launcher_presets_are_found_from_any_working_directory(tmp_path):
    result = cli("mllm_shapx.app", "+experiment=mc_minimal", "+launcher=slurm", "--cfg", "hydra", "-p",
                 "hydra.launcher._target_", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"


# --- a submitit_local sweep, then the status view on it ----------------------------------------------
@pytest.fixture(scope="module")
def local_sweep(tiny_model_dir, tmp_path_factory):
    """Three jobs through submitit_local: two runs, and one configuration error (shap.num_samples=0)."""
    out = tmp_path_factory.mktemp("local_sweep")
    result = cli("mllm_shapx.app", "--multirun", *tiny_overrides(tiny_model_dir, out), "+launcher=local",
                 "shap.num_samples=8,10,0")
    return out / "testing_and_experiments", result


def test_submitit_local_sweep_completes(local_sweep):
    sweep, result = local_sweep
    assert result.returncode != 0  # Hydra's driver reports the failed job
    for slug in ("minimal_mc_limited_mc_ns8", "minimal_mc_limited_mc_ns10"):
        run_dir = sweep / slug
        assert len(list((run_dir / "samples").glob("*.json"))) == 2
        shard = json.loads((run_dir / "status" / "shard-0-of-1.json").read_text())
        assert shard["state"] == "completed" and shard["rows_done"] == 2 and shard["rows_selected"] == 2
        assert json.loads((run_dir / "summary" / "aggregate_metrics.json").read_text())["n_samples"] == 2
    assert not (sweep / "minimal_mc_limited_mc_ns0").exists()  # a config error leaves no run directory
    assert len([p for p in (sweep / ".submitit").iterdir() if list(p.glob("*_submitted.pkl"))]) == 3


def test_status_of_a_finished_sweep_names_the_failed_job(local_sweep):
    sweep, _ = local_sweep
    result = cli("mllm_shapx.status", str(sweep))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{sweep}: 2 run(s): 2 done"
    assert lines[1].split() == ["minimal_mc_limited_mc_ns10", "done", "2/2", "rows"]
    assert lines[2].split() == ["minimal_mc_limited_mc_ns8", "done", "2/2", "rows"]
    assert lines[3] == "1 submitted job(s) failed:"
    assert lines[4].strip() == "shap.num_samples=0"
    # a config error in a multirun job fails that job only (the sweep goes on) and is reported as such
    assert lines[5].strip() == "ConfigError: shap.num_samples: 0 is not a positive count or -1 (minimal)"


def _write_status(run_dir: Path, index: int, count: int, state: str, **fields) -> None:
    record = {"state": state, "shard_index": index, "shard_count": count, "rows_selected": 2, "rows_done": 0,
              "rows_failed": 0, "hostname": "elsewhere", "pid": 1, "slurm_job_id": f"7_{index}",
              "started_at": time.time(), "updated_at": time.time(), **fields}
    (run_dir / "status").mkdir(parents=True, exist_ok=True)
    (run_dir / "status" / f"shard-{index}-of-{count}.json").write_text(json.dumps(record))


def test_status_of_failed_partial_running_and_stopped_runs(local_sweep, tmp_path):
    import socket

    sweep, _ = local_sweep
    done = sweep / "minimal_mc_limited_mc_ns8"
    runs = {name: tmp_path / name for name in ("a_done", "b_failed", "c_partial", "d_running", "e_stopped",
                                                "f_not_started")}
    shutil.copytree(done, runs["a_done"])
    shutil.copytree(done, runs["b_failed"])
    _write_status(runs["b_failed"], 0, 1, "failed", rows_done=2, error="RuntimeError: disk full",
                  traceback="Traceback (most recent call last):\n  ...\nRuntimeError: disk full\n")
    _write_status(runs["c_partial"], 0, 2, "completed", rows_selected=1, rows_done=1)
    _write_status(runs["d_running"], 0, 1, "running", rows_done=1, hostname=socket.gethostname(), pid=os.getpid())
    dead = subprocess.Popen(["true"])
    dead.wait()
    _write_status(runs["e_stopped"], 0, 1, "running", rows_done=1, hostname=socket.gethostname(), pid=dead.pid)
    (runs["f_not_started"] / ".hydra").mkdir(parents=True)
    result = cli("mllm_shapx.status", str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{tmp_path}: 6 run(s): 1 done, 1 failed, 1 incomplete, 1 running, 1 stopped, 1 not started"
    by_run = {line.split()[0]: line for line in lines[1:] if line and not line.startswith(" ")}
    assert by_run["a_done"].split()[1:4] == ["done", "2/2", "rows"]
    assert by_run["b_failed"].split()[1:3] == ["failed", "2/2"]
    assert lines[lines.index(by_run["b_failed"]) + 1].strip() == "shard 0: RuntimeError: disk full"
    assert "incomplete" in by_run["c_partial"] and "1/2 shards reporting" in by_run["c_partial"]
    assert by_run["d_running"].split()[1] == "running"
    assert by_run["e_stopped"].split()[1] == "stopped"
    assert by_run["f_not_started"].split()[1:3] == ["not", "started"]
    assert status.describe_run(runs["c_partial"])["rows_selected"] is None  # unknown until every shard reports
    assert cli("mllm_shapx.status", str(tmp_path / "missing")).returncode == 2


def test_status_files_written_by_the_runner_carry_their_shard(tmp_path):
    """Statuses as RunDir writes them (not hand-made): a 2-shard run whose shards finished is done."""
    from mllm_shapx.artifacts import RunDir

    run_dir = tmp_path / "sharded"
    for index in range(2):
        with RunDir(run_dir, index, 2) as shard:
            shard.write_status("completed", rows_selected=3, rows_done=3, rows_failed=0)
    assert [read_json_file(p)["shard_index"] for p in sorted((run_dir / "status").glob("*.json"))] == [0, 1]
    info = status.describe_run(run_dir)
    assert (info["state"], info["shard_count"], info["rows_selected"]) == ("done", 2, 6)
    with RunDir(run_dir, 0, 1) as resharded:  # resumed unsharded: the old 2-shard files no longer count
        resharded.write_status("running", rows_selected=6, rows_done=6, rows_failed=0)
    info = status.describe_run(run_dir)
    assert (info["state"], info["shard_count"], info["shards_reporting"]) == ("running", 1, 1)


def read_json_file(path: Path) -> dict:
    return json.loads(path.read_text())


# --- batch --------------------------------------------------------------------------------------
FAKE_APP = """
import os, pathlib, sys
name = next(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("+experiment="))
print("fake app", *sys.argv[1:])
counter = pathlib.Path(os.environ["BATCH_TEST_DIR"]) / f"{name}.count"
attempt = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(attempt))
if name == "broken":
    raise RuntimeError(f"broken, attempt {attempt}")
if name == "flaky" and attempt < 3:
    sys.exit(1)
if name == "misconfigured":
    print("error: shap.num_samples: 0 is not a positive count", file=sys.stderr)
    sys.exit(2)
"""


def test_batch_retries_failures_but_not_config_errors(tmp_path, monkeypatch):
    fake = tmp_path / "fake_app.py"
    fake.write_text(FAKE_APP)
    monkeypatch.setenv("BATCH_TEST_DIR", str(tmp_path))
    listing = tmp_path / "experiments.txt"
    listing.write_text("# one experiment per line\nok shap.num_samples=20\n\nflaky\n")
    code = batch.main(["--retries", "2", "--retry-delay", "0", "--log-dir", str(tmp_path / "logs"),
                       "--app", f"{sys.executable} {fake}", "--file", str(listing), "--", "broken", "misconfigured"])
    assert code == 1
    attempts = {name: int((tmp_path / f"{name}.count").read_text()) for name in ("ok", "flaky", "broken",
                                                                                  "misconfigured")}
    assert attempts == {"ok": 1, "flaky": 3, "broken": 3, "misconfigured": 1}
    logs = sorted(p.name for p in (tmp_path / "logs").glob("*.log"))
    assert logs == ["01_ok_shap.num_samples=20.log", "02_flaky.log", "03_broken.log", "04_misconfigured.log"]
    broken_log = (tmp_path / "logs" / "03_broken.log").read_text()
    assert broken_log.count("===== attempt") == 6 and "RuntimeError: broken, attempt 3" in broken_log
    ok_log = (tmp_path / "logs" / "01_ok_shap.num_samples=20.log").read_text()
    assert "fake app +experiment=ok shap.num_samples=20" in ok_log
    summary = (tmp_path / "logs" / "summary.txt").read_text().splitlines()
    assert [line.split()[0] for line in summary[:4]] == ["ok", "ok", "FAILED", "FAILED"]
    assert "[3 attempts" in summary[1] and "exit codes 1, 1, 1" in summary[2]
    assert "exit 2: configuration error, not retried" in summary[3]
    assert summary[4] == "2/4 experiments succeeded"


def test_batch_runs_the_real_app(tiny_model_dir, tmp_path):
    overrides = " ".join(tiny_overrides(tiny_model_dir, tmp_path / "out")[1:])
    result = cli("mllm_shapx.batch", "--retries", "3", "--retry-delay", "0", "--log-dir", str(tmp_path / "logs"), "--",
                 f"mc_minimal {overrides}", f"mc_minimal {overrides} shap.num_samples=0")
    assert result.returncode == 1, result.stderr
    summary = result.stdout.splitlines()[-3:]
    assert summary[0].startswith("ok ") and "[1 attempt," in summary[0]
    assert summary[1].startswith("FAILED (exit 2: configuration error, not retried)") and "[1 attempt," in summary[1]
    assert summary[2] == "1/2 experiments succeeded"
    run_dir = tmp_path / "out" / "testing_and_experiments" / "minimal_mc_limited_mc_ns12"
    assert len(list((run_dir / "samples").glob("*"))) == 2
    logs = sorted((tmp_path / "logs").glob("*.log"))
    assert len(logs) == 2 and "shap.num_samples: 0" in logs[1].read_text()


def test_batch_entry_parsing():
    assert batch.app_args("mc_minimal shap.num_samples=20") == ["+experiment=mc_minimal", "shap.num_samples=20"]
    assert batch.app_args("--multirun +experiment=mc_minimal a=1,2") == ["--multirun", "+experiment=mc_minimal",
                                                                        "a=1,2"]
    assert batch.app_args("+experiment=mc_minimal 'selection.max_samples=3'") == ["+experiment=mc_minimal",
                                                                                 "selection.max_samples=3"]
