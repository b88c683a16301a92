"""The run directory: the only place results live, written so that nothing is ever half-written.

Layout (the original runner's)::

    <run_dir>/spec.json                       resolved config, written once
    <run_dir>/checkpoint.json                 completed row indices, rewritten after every sample
    <run_dir>/samples/sample_XXXXX_result.json one file per finished row
    <run_dir>/failures/sample_XXXXX_error.json a row that raised (retried by the next invocation)
    <run_dir>/summary/aggregate_metrics.json   run-level aggregates

Every file is written to a temporary file in the same folder, flushed, then renamed over the target.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

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


def atomic_write_json(path: Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(_clean(obj), handle, indent=2, ensure_ascii=False, allow_nan=False)
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


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.samples = self.path / "samples"
        self.failures = self.path / "failures"
        self._lock = FileLock(str(self.path / ".run.lock"), timeout=0)

    def sample_path(self, row_index: int) -> Path:
        return self.samples / f"sample_{row_index:05d}_result.json"

    def failure_path(self, row_index: int) -> Path:
        return self.failures / f"sample_{row_index:05d}_error.json"

    # --- ownership --------------------------------------------------------------------------------
    def __enter__(self) -> "RunDir":
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            raise RunDirError(
                f"{self.path} is in use by another process (lock {self._lock.lock_file}); "
                "wait for it to finish or stop it"
            ) from None
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
        aside = self.path.with_name(f"{self.path.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}")
        aside.mkdir(parents=True, exist_ok=False)
        for name in ("spec.json", "checkpoint.json", "samples", "failures", "summary", "wandb_run.json", "wandb"):
            if (self.path / name).exists():
                shutil.move(str(self.path / name), str(aside / name))
        print(f"resume=false: previous results moved to {aside}")

    # --- samples ----------------------------------------------------------------------------------
    def is_complete(self, row_index: int) -> bool:
        sample = read_json(self.sample_path(row_index))
        return isinstance(sample, dict) and sample.get("row_index") == row_index and "conversation" in sample

    def write_sample(self, row_index: int, sample: Dict[str, Any]) -> None:
        atomic_write_json(self.sample_path(row_index), sample)
        failure = self.failure_path(row_index)
        if failure.exists():
            failure.unlink()

    def write_failure(self, row_index: int, error: str) -> None:
        atomic_write_json(self.failure_path(row_index), {"row_index": row_index, "error": error, "time": time.time()})

    def write_checkpoint(self, completed: Iterable[int], next_index: Optional[int]) -> None:
        old = read_json(self.path / "checkpoint.json") or {}
        now = time.time()
        atomic_write_json(self.path / "checkpoint.json", {
            "version": CHECKPOINT_VERSION,
            "completed_indices": list(completed),
            "next_index": next_index,
            "created_at": old.get("created_at", now),
            "updated_at": now,
        })

    def write_summary(self, selected: Sequence[int]) -> Dict[str, Any]:
        """Aggregates over every finished sample file of the selection (recomputed from disk)."""
        samples = [read_json(self.sample_path(i)) for i in selected if self.is_complete(i)]
        failed = [i for i in selected if not self.is_complete(i) and self.failure_path(i).exists()]
        n = len(samples)

        def mean(key: str, block: str = "attr_summary") -> Optional[float]:
            values = [s[block][key] for s in samples if s.get(block, {}).get(key) is not None]
            return sum(values) / len(values) if values else None

        runtime = sum(s["runtime_sec"] for s in samples)
        summary = {
            "n_samples": n,
            "runtime_sec_total": runtime,
            "runtime_sec_avg": runtime / n if n else None,
            "avg_frac_text": mean("frac_text"),
            "avg_frac_audio": mean("frac_audio"),
            "n_selected": len(selected),
            "n_failed": len(failed),
            "failed_indices": failed,
            "n_calls_total": sum(s["n_calls"] for s in samples),
            "avg_abs_efficiency_gap": sum(abs(s["efficiency_gap"]) for s in samples) / n if n else None,
            "updated_at": time.time(),
        }
        atomic_write_json(self.path / "summary" / "aggregate_metrics.json", summary)
        return summary
