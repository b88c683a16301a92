"""The run directory: the only place results live, written so that nothing is ever half-written.

Layout (the original runner's)::

    <run_dir>/spec.json                       resolved config, written once
    <run_dir>/checkpoint.json                 completed row indices, rewritten after every sample
    <run_dir>/samples/sample_XXXXX_result.json one file per finished row
    <run_dir>/failures/sample_XXXXX_error.json a row that raised (retried by the next invocation)
    <run_dir>/summary/aggregate_metrics.json   run-level aggregates
    <run_dir>/status/shard-I-of-N.json          state of each job (shard) that worked on the run
    <run_dir>/audio/sample_XXXXX/*.wav          a sample's input (and spoken output) audio

Every file is written to a temporary file in the same folder, flushed, then renamed over the target.
Several shards of one run may work in the directory at once: each holds its own lock, and the
shared files (spec, checkpoint, summary) are rewritten under a short directory lock from what is on
disk, so no update is lost.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from filelock import FileLock, Timeout

CHECKPOINT_VERSION = 2


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked (busy, or holding a different config)."""


def _clean(value: Any) -> Any:
    """Replace NaN/inf by None so that every file is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


_HOST = socket.gethostname().replace(".", "_")
_WRITER = f"{_HOST}-{os.getpid()}"  # in temporary file names: who may still rename them


def pid_is_gone(pid: int) -> bool:
    """True only when we can tell that process ``pid`` of this host no longer exists."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


def _writer_is_gone(tmp: Path) -> bool:
    """A temporary file left by a process of this host that no longer exists (killed mid-write)."""
    host, _, pid = tmp.name.rsplit(".", 3)[-3].rpartition("-")
    if host != _HOST or not pid.isdigit():
        return False  # another host's writer: it may still be alive
    return pid_is_gone(int(pid))


def sample_stem(row_index: int) -> str:
    """``sample_XXXXX``: the name every file of one row starts with (XXXXX = its index in the split)."""
    return f"sample_{row_index:05d}"


def sample_file(run_dir: Path, row_index: int) -> Path:
    return Path(run_dir) / "samples" / f"{sample_stem(row_index)}_result.json"


def audio_folder(run_dir: Path, row_index: int) -> Path:
    return Path(run_dir) / "audio" / sample_stem(row_index)


def summary_file(run_dir: Path) -> Path:
    return Path(run_dir) / "summary" / "aggregate_metrics.json"


def remove_stale_temp_files(folder: Path) -> None:
    for tmp in Path(folder).rglob(".*.tmp"):
        if _writer_is_gone(tmp):
            tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(_clean(obj), indent=2, ensure_ascii=False, allow_nan=False)
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, rename: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_WRITER}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared like any other file
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Optional[Any]:
    """The parsed file, or None when it is missing or not valid JSON (a corrupt file is redone)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _flatten(tree: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def identity_diff(old: Dict[str, Any], new: Dict[str, Any], ignore: Sequence[str]) -> List[str]:
    """Dotted keys whose values differ between two configs, leaving out ``ignore`` (and their children)."""

    def relevant(key: str) -> bool:
        return not any(key == skip or key.startswith(skip + ".") for skip in ignore)

    a, b = _flatten(old), _flatten(new)
    return sorted(k for k in a.keys() | b.keys() if relevant(k) and a.get(k) != b.get(k))


SHARED_LOCK_TIMEOUT_S = 300


class RunDir:
    def __init__(self, path: Path, shard_index: int = 0, shard_count: int = 1):
        self.path = Path(path)
        self.samples = self.path / "samples"
        self.failures = self.path / "failures"
        self.shard_index, self.shard_count = shard_index, shard_count
        self.shard = f"shard-{shard_index}-of-{shard_count}"
        self.status_path = self.path / "status" / f"{self.shard}.json"
        self._lock = FileLock(str(self.path / f".{self.shard}.lock"), timeout=0)
        self.shared = FileLock(str(self.path / ".directory.lock"), timeout=SHARED_LOCK_TIMEOUT_S)

    def sample_path(self, row_index: int) -> Path:
        return sample_file(self.path, row_index)

    def failure_path(self, row_index: int) -> Path:
        return self.failures / f"{sample_stem(row_index)}_error.json"

    # --- ownership --------------------------------------------------------------------------------
    def __enter__(self) -> "RunDir":
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise RunDirError(
                f"{self.path} ({self.shard}) is in use by another process (lock {self._lock.lock_file}); "
                "wait for it to finish or stop it"
            ) from None
        with self.shared:
            remove_stale_temp_files(self.path)
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()

    # --- spec -------------------------------------------------------------------------------------
    def prepare(self, spec: Dict[str, Any], *, config_key: str, ignore: Sequence[str], resume: bool) -> None:
        """Write spec.json for a new directory; for an existing one, resume or move the old results aside."""
        existing = read_json(self.path / "spec.json")
        if existing is not None and not resume:
            self._move_aside()
            existing = None
        if existing is None:
            atomic_write_json(self.path / "spec.json", spec)
            return
        differing = identity_diff(existing.get(config_key, {}), spec[config_key], ignore)
        if differing:
            raise RunDirError(
                f"{self.path} holds a run with a different config; differing keys: {', '.join(differing)}. "
                "Use another experiment_set_id or shap.name, restore those values, or pass resume=false "
                "to move the old results aside and start afresh."
            )

    def _move_aside(self) -> None:
        aside = Path(tempfile.mkdtemp(prefix=f"{self.path.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}-",
                                      dir=self.path.parent))
        for name in ("spec.json", "checkpoint.json", "samples", "audio", "failures", "summary", "status",
                     "wandb_run.json", "wandb"):
            if (self.path / name).exists():
                shutil.move(str(self.path / name), str(aside / name))
        print(f"resume=false: previous results moved to {aside}")

    # --- samples ----------------------------------------------------------------------------------
    def finished_sample(self, row_index: int) -> Optional[Dict[str, Any]]:
        """The row's sample when its file is valid; None when missing, corrupt or partial (to redo)."""
        sample = read_json(self.sample_path(row_index))
        valid = isinstance(sample, dict) and sample.get("row_index") == row_index and "conversation" in sample
        return sample if valid else None

    def is_complete(self, row_index: int) -> bool:
        return self.finished_sample(row_index) is not None

    def write_sample(self, row_index: int, sample: Dict[str, Any]) -> None:
        atomic_write_json(self.sample_path(row_index), sample)
        failure = self.failure_path(row_index)
        if failure.exists():
            failure.unlink()

    def write_audio(self, row_index: int, files: Dict[str, bytes]) -> None:
        """A sample's audio files, under ``audio/sample_XXXXX/``; written before its sample file."""
        for name, data in files.items():
            atomic_write_bytes(audio_folder(self.path, row_index) / name, data)

    def write_failure(self, row_index: int, error: str) -> None:
        atomic_write_json(self.failure_path(row_index), {"row_index": row_index, "error": error, "time": time.time()})

    def write_checkpoint(self, selected: Sequence[int]) -> None:
        """Completed rows of the selection as found on disk (sample files are written atomically)."""
        on_disk = set(os.listdir(self.samples)) if self.samples.is_dir() else set()  # one listing, not N stats
        done = {i: self.sample_path(i).name in on_disk for i in selected}
        completed = [i for i in selected if done[i]]
        pending = [i for i in selected if not done[i]]
        old = read_json(self.path / "checkpoint.json") or {}
        now = time.time()
        atomic_write_json(self.path / "checkpoint.json", {
            "version": CHECKPOINT_VERSION,
            "completed_indices": completed,
            "next_index": pending[0] if pending else None,
            "created_at": old.get("created_at", now),
            "updated_at": now,
        })

    def write_status(self, state: str, **fields: Any) -> None:
        """This job's own record (Slurm is told COMPLETED even when a Hydra task raised)."""
        old = read_json(self.status_path) or {}
        now = time.time()
        started = old.get("started_at", now) if old.get("pid") == os.getpid() else now
        job = os.environ.get("SLURM_ARRAY_JOB_ID")
        job_id = f"{job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if job else os.environ.get("SLURM_JOB_ID")
        atomic_write_json(self.status_path, {
            **{k: v for k, v in old.items() if k not in ("error", "traceback")},
            "state": state, **fields, "shard_index": self.shard_index, "shard_count": self.shard_count,
            "hostname": socket.gethostname(), "pid": os.getpid(),
            "slurm_job_id": job_id, "started_at": started, "updated_at": now,
        })

    def write_summary(self, selected: Sequence[int]) -> Dict[str, Any]:
        """Aggregates over every finished sample file of the selection (recomputed from disk)."""
        finished = {i: self.finished_sample(i) for i in selected}  # each file read once
        samples = [s for s in finished.values() if s is not None]
        failed = [i for i in selected if finished[i] is None and self.failure_path(i).exists()]
        n = len(samples)

        def present(key: str, block: Optional[str] = None) -> List[float]:
            """Values of a key across samples, leaving out null ones (NaN/inf are written as null)."""
            return [v for s in samples if (v := (s.get(block) or {} if block else s).get(key)) is not None]

        def mean(key: str, block: Optional[str] = "attr_summary") -> Optional[float]:
            values = present(key, block)
            return sum(values) / len(values) if values else None

        runtime = sum(present("runtime_sec"))
        gaps = [abs(g) for g in present("efficiency_gap")]
        summary = {
            "n_samples": n,
            "runtime_sec_total": runtime,
            "runtime_sec_avg": runtime / n if n else None,
            "avg_frac_text": mean("frac_text"),
            "avg_frac_audio": mean("frac_audio"),
            "n_selected": len(selected),
            "n_failed": len(failed),
            "failed_indices": failed,
            "n_calls_total": sum(present("n_calls")),
            "avg_abs_efficiency_gap": sum(gaps) / len(gaps) if gaps else None,
            "updated_at": time.time(),
        }
        atomic_write_json(summary_file(self.path), summary)
        return summary
