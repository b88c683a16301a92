"""On a real Slurm (with accounting): sweeps through submitit_slurm, requeue after a time limit, sharding
over a job array, submit-and-walk-away.

Needs a running cluster: CI brings one up with ``bash launchers/slurm_local.sh up`` before the tests
(a single node, ``localhost``). Without one these tests fail (they are not skipped); deselect them
with ``-m 'not slurm'``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, tiny_overrides
from mllm_shapx.artifacts import identity_diff
from mllm_shapx.config import NON_IDENTITY_KEYS

pytestmark = pytest.mark.slurm

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# Small jobs: one CPU each (the local node advertises more CPUs than cores, so array tasks run together).
SLURM = ["+launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=15"]
TIMING_KEYS = {"runtime_sec", "model_time_sec"}


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster():
    """A reachable Slurm with accounting, or a failure that says how to get one."""
    missing = [tool for tool in ("sinfo", "sbatch", "sacct", "scontrol") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"no Slurm here ({', '.join(missing)} not on PATH): run `bash launchers/slurm_local.sh up` "
                    "as root first, or deselect these tests with -m 'not slurm'", pytrace=False)
    for command in (["sinfo", "-h", "-o", "%a %T"], ["sacct", "-n", "-X", "-S", "now"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            pytest.fail(f"Slurm is not usable: `{' '.join(command)}` failed: {result.stderr.strip()} "
                        "(is the cluster up? `bash launchers/slurm_local.sh up`)", pytrace=False)


def app(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mllm_shapx.app", *args], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def read(path: Path):
    return json.loads(path.read_text())


def sacct_states(job_id: str) -> list:
    """Every state the job went through (-D: requeued attempts included), e.g. ['REQUEUED', 'COMPLETED']."""
    for _ in range(20):  # accounting lags a little behind the job's end
        out = subprocess.run(["sacct", "-n", "-X", "-D", "-P", "-o", "State", "-j", job_id], capture_output=True,
                             text=True, timeout=30).stdout.split()
        if out and out[-1] not in ("RUNNING", "PENDING", "REQUEUED"):
            return out
        time.sleep(0.5)
    return out


def test_two_run_sweep_through_submitit_slurm(tiny_model_dir, tmp_path):
    result = app("--multirun", *tiny_overrides(tiny_model_dir, tmp_path), *SLURM, "shap.num_samples=8,10")
    assert result.returncode == 0, result.stderr
    sweep = tmp_path / "testing_and_experiments"
    array_ids = set()
    for slug in ("minimal_mc_limited_mc_ns8", "minimal_mc_limited_mc_ns10"):
        run_dir = sweep / slug
        assert len(list((run_dir / "samples").glob("sample_*_result.json"))) == 2
        assert len(read(run_dir / "checkpoint.json")["completed_indices"]) == 2
        assert read(run_dir / "summary" / "aggregate_metrics.json")["n_samples"] == 2
        assert read(run_dir / "spec.json")["run_slug"] == slug
        shard = read(run_dir / "status" / "shard-0-of-1.json")
        assert shard["state"] == "completed" and shard["rows_done"] == 2
        assert re.fullmatch(r"\d+_[01]", shard["slurm_job_id"]), shard["slurm_job_id"]
        array_ids.add(shard["slurm_job_id"].split("_")[0])
        assert sacct_states(shard["slurm_job_id"])[-1] == "COMPLETED"
    assert len(array_ids) == 1  # one job array for the sweep
    assert list((sweep / ".submitit").glob(f"{array_ids.pop()}_*/*_log.out"))
    status = subprocess.run([sys.executable, "-m", "mllm_shapx.status", str(sweep)], capture_output=True,
                            text=True, env=ENV, cwd=REPO)
    assert status.stdout.splitlines()[0] == f"{sweep}: 2 run(s): 2 done"


class SampleWatcher:
    """Records the first (inode, mtime) seen of every sample file: a row written twice changes them."""

    def __init__(self, samples: Path):
        self.samples, self.first_seen, self.stop = samples, {}, threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self):
        while not self.stop.is_set():
            for path in self.samples.glob("sample_*_result.json") if self.samples.is_dir() else []:
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                self.first_seen.setdefault(path.name, (stat.st_ino, stat.st_mtime_ns))
            time.sleep(0.05)


def release_requeued_jobs(stop: threading.Event, released: list):
    """A requeued job waits ~2 minutes before it may start again (Slurm's BeginTime hold); cut that short."""
    while not stop.is_set():
        out = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i %r"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            job, _, reason = line.partition(" ")
            if reason.strip() == "BeginTime":
                subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
                released.append(job)
        time.sleep(1)


def test_a_job_killed_by_its_time_limit_is_requeued_and_resumes(tiny_model_dir, tmp_path):
    """A 1-minute limit on a run of ~2 minutes (2 cores): submitit catches Slurm's warning signal (USR2,
    30-60 s into each attempt), requeues the job, and the requeued job resumes from the run directory."""
    run_dir = tmp_path / "testing_and_experiments" / "minimal_mc_limited_mc_ns150"
    args = [*tiny_overrides(tiny_model_dir, tmp_path), "selection.max_samples=200", "selection.min_prompt_tokens=1",
            "selection.max_prompt_tokens=100", "shap.num_samples=150", "generation.max_new_tokens=8",
            "generation.batch_size=1", "+launcher=slurm", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=1", "hydra.launcher.max_num_timeout=8"]
    watcher = SampleWatcher(run_dir / "samples")
    stop, released = threading.Event(), []
    releaser = threading.Thread(target=release_requeued_jobs, args=(stop, released), daemon=True)
    releaser.start()
    try:
        result = app("--multirun", *args, timeout=900)
    finally:
        stop.set()
        watcher.stop.set()
        releaser.join()
        watcher.thread.join()
    assert result.returncode == 0, result.stderr[-3000:]

    shard = read(run_dir / "status" / "shard-0-of-1.json")
    attempts = re.findall(r"(\d+) to do", (run_dir / "app.log").read_text())
    states = sacct_states(shard["slurm_job_id"])
    assert "REQUEUED" in states and len(attempts) >= 2, (
        f"the run finished before its time limit (attempts: {attempts}, states: {states}): make it slower")
    assert states[-1] == "COMPLETED" and shard["state"] == "completed"
    # Each attempt resumed where the previous one stopped: fewer rows to do every time.
    todo = [int(n) for n in attempts]
    assert todo[0] == 128 and all(later < earlier for earlier, later in zip(todo, todo[1:]))

    samples = sorted((run_dir / "samples").glob("sample_*_result.json"))
    assert len(samples) == 128 == shard["rows_selected"] == shard["rows_done"]  # no row lost
    for path in samples:  # no row redone: every sample file is the one first written
        stat = path.stat()
        assert watcher.first_seen[path.name] == (stat.st_ino, stat.st_mtime_ns), f"{path.name} was rewritten"
    checkpoint = read(run_dir / "checkpoint.json")
    assert len(checkpoint["completed_indices"]) == 128 and checkpoint["next_index"] is None
    summary = read(run_dir / "summary" / "aggregate_metrics.json")
    assert summary["n_samples"] == 128 and summary["n_failed"] == 0
    assert not list(run_dir.rglob("*.tmp"))


def _comparable_sample(path: Path) -> dict:
    return {k: v for k, v in read(path).items() if k not in TIMING_KEYS}


def test_a_sharded_run_over_a_slurm_array_equals_an_unsharded_run(tiny_model_dir, tmp_path):
    common = [*tiny_overrides(tiny_model_dir, tmp_path / "sharded"), "selection.max_samples=7", "shap.num_samples=16"]
    sharded = app("--multirun", *common, *SLURM, "shard.index=range(0,2)", "shard.count=2")
    assert sharded.returncode == 0, sharded.stderr
    single = app(*[a.replace(str(tmp_path / "sharded"), str(tmp_path / "single")) for a in common])
    assert single.returncode == 0, single.stderr
    a = tmp_path / "sharded" / "testing_and_experiments" / "minimal_mc_limited_mc_ns16"
    b = tmp_path / "single" / "testing_and_experiments" / "minimal_mc_limited_mc_ns16"

    shards = [read(a / "status" / f"shard-{i}-of-2.json") for i in range(2)]
    assert [s["state"] for s in shards] == ["completed", "completed"]
    assert [s["rows_selected"] for s in shards] == [4, 3] and [s["rows_done"] for s in shards] == [4, 3]
    jobs = [s["slurm_job_id"] for s in shards]
    assert jobs[0].split("_")[0] == jobs[1].split("_")[0] and jobs[0] != jobs[1]  # two tasks of one array

    names = sorted(p.name for p in (a / "samples").iterdir())
    assert names == sorted(p.name for p in (b / "samples").iterdir()) and len(names) == 7
    for name in names:  # same attributions, everything but timings identical
        assert _comparable_sample(a / "samples" / name) == _comparable_sample(b / "samples" / name), name
    ca, cb = read(a / "checkpoint.json"), read(b / "checkpoint.json")
    assert ca["completed_indices"] == cb["completed_indices"] and ca["next_index"] is cb["next_index"] is None
    volatile = {"updated_at", "runtime_sec_total", "runtime_sec_avg"}
    sa, sb = (read(d / "summary" / "aggregate_metrics.json") for d in (a, b))
    assert {k: v for k, v in sa.items() if k not in volatile} == {k: v for k, v in sb.items() if k not in volatile}
    assert sa["runtime_sec_total"] > 0
    assert identity_diff(read(a / "spec.json")["config"], read(b / "spec.json")["config"],
                         [*NON_IDENTITY_KEYS, "output_root"]) == []
    assert not list(a.rglob("*.tmp"))


def test_submit_a_sweep_and_walk_away(tiny_model_dir, tmp_path):
    started = time.monotonic()
    submit = subprocess.run(["bash", str(REPO / "launchers" / "submit_sweep.sh"), "--time=10", "--",
                             *tiny_overrides(tiny_model_dir, tmp_path), *SLURM, "shap.num_samples=8,10"],
                            cwd=REPO, env={**ENV, "PYTHON": sys.executable}, capture_output=True, text=True,
                            timeout=120)
    assert submit.returncode == 0, submit.stderr
    assert time.monotonic() - started < 30  # returns at once, the sweep runs on
    job = re.search(r"as Slurm job (\d+)", submit.stdout).group(1)
    sweep = tmp_path / "testing_and_experiments"
    deadline = time.monotonic() + 300
    while subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip():
        assert time.monotonic() < deadline, "the driver job did not finish"
        time.sleep(1)
    log = (sweep / f"driver-{job}.log").read_text()
    assert "driver: the sweep ended with exit code 0" in log, log
    assert f"{sweep}: 2 run(s): 2 done" in log  # the status view, written when the sweep ended
    assert sacct_states(job)[-1] == "COMPLETED"
    for slug in ("minimal_mc_limited_mc_ns8", "minimal_mc_limited_mc_ns10"):
        assert read(sweep / slug / "status" / "shard-0-of-1.json")["state"] == "completed"
        assert len(list((sweep / slug / "samples").glob("*.json"))) == 2
