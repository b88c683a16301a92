"""Where a sweep stands: ``python -m mllm_shapx.status SWEEP_OR_SET_DIR [...]``.

One line per run directory: slug, state, rows done/selected, and each failed shard with its error
line. States: ``done`` (every shard completed; ``, K rows failed`` if rows raised), ``running``,
``failed`` (a shard's task raised: its ``status/shard-I-of-N.json`` holds the traceback),
``stopped`` (a shard recorded as running whose process is gone, or was interrupted: rerun the
command to resume), ``incomplete`` (some shards have not started yet: pending in Slurm, or never
submitted) and ``not started``. Then the sweep's submitit jobs (``.submitit/``) that failed without a
run directory to say so (e.g. a configuration error, exit 2), with the line that says why.

Reads only files (status files, samples, checkpoint, summary, submitit logs); always exits 0
(2 when the directory does not exist).
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .artifacts import pid_is_gone, read_json, summary_file

_INTERRUPTS = ("SystemExit", "KeyboardInterrupt", "UncompletedJobError")


def _is_run_dir(path: Path) -> bool:
    return any((path / name).exists() for name in ("spec.json", "status", "samples", ".hydra"))


def run_dirs(root: Path) -> List[Path]:
    """``root`` itself when it is a run directory, else its run directories (two levels deep at most)."""
    if _is_run_dir(root) and not (root / "multirun.yaml").exists():
        return [root]
    found = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if _is_run_dir(child):
            found.append(child)
        else:  # an output root: <root>/<experiment_set_id>/<run_slug>
            found += [g for g in sorted(child.iterdir())
                      if g.is_dir() and not g.name.startswith(".") and _is_run_dir(g)]
    return found


def _alive(status: Dict[str, Any]) -> bool:
    """False only when we can tell: the recorded process ran on this host and is gone."""
    if status.get("hostname") != socket.gethostname() or not status.get("pid"):
        return True
    return not pid_is_gone(status["pid"])


def _error_line(status: Dict[str, Any]) -> str:
    for text in (status.get("error"), status.get("traceback")):
        lines = [line.strip() for line in str(text or "").splitlines() if line.strip()]
        if lines:
            return lines[-1]
    return "unknown error"


def shard_statuses(run_dir: Path) -> List[Dict[str, Any]]:
    """The status files of the latest sharding (a run may be resumed with another shard.count)."""
    statuses = [s for s in (read_json(p) for p in sorted((run_dir / "status").glob("shard-*.json"))) if isinstance(s, dict)]
    if not statuses:
        return []
    latest = max(statuses, key=lambda s: s.get("updated_at") or 0)
    count = latest.get("shard_count")
    if count is None:  # older status files without shard fields: take them all
        return statuses
    return [s for s in statuses if s.get("shard_count") == count]


def describe_run(run_dir: Path) -> Dict[str, Any]:
    """state, rows done/selected, failed shards (index, error line) of one run directory."""
    samples = len(list((run_dir / "samples").glob("sample_*_result.json")))
    checkpoint = read_json(run_dir / "checkpoint.json") or {}
    summary = read_json(summary_file(run_dir)) or {}
    statuses = shard_statuses(run_dir)
    done = max(samples, len(checkpoint.get("completed_indices") or []))
    count = statuses[0].get("shard_count", 1) if statuses else 1
    selected: Optional[int] = summary.get("n_selected")
    if statuses and len({s.get("shard_index") for s in statuses}) == count:
        selected = sum(s.get("rows_selected") or 0 for s in statuses)
    failed, stopped, running, rows_failed = [], [], [], 0
    for s in statuses:
        state = s.get("state")
        if state == "interrupted":
            stopped.append(s)
        elif state == "failed":
            (stopped if _error_line(s).startswith(_INTERRUPTS) else failed).append(s)
        elif state == "running":
            (running if _alive(s) else stopped).append(s)
        elif state == "completed":
            rows_failed += s.get("rows_failed") or 0
    completed = [s for s in statuses if s.get("state") == "completed"]
    if failed:
        state = "failed"
    elif running:
        state = "running"
    elif stopped:
        state = "stopped"
    elif statuses and len(completed) == count and len({s.get("shard_index") for s in completed}) == count:
        state = "done"
    elif statuses:
        state = "incomplete"
    else:
        state = "not started" if not done else "stopped"
    return {
        "run": run_dir.name, "state": state, "rows_done": done, "rows_selected": selected,
        "rows_failed": rows_failed, "shard_count": count, "shards_reporting": len(statuses),
        "failed_shards": [(s.get("shard_index"), _error_line(s)) for s in failed],
        "stopped_shards": [s.get("shard_index") for s in stopped],
    }


def _format_run(info: Dict[str, Any], width: int) -> str:
    selected = "?" if info["rows_selected"] is None else info["rows_selected"]
    line = f"{info['run']:<{width}}  {info['state']:<11}  {info['rows_done']}/{selected} rows"
    extra = []
    if info["shard_count"] > 1:
        extra.append(f"{info['shards_reporting']}/{info['shard_count']} shards reporting")
    if info["rows_failed"]:
        extra.append(f"{info['rows_failed']} rows failed (retried by a rerun)")
    if info["stopped_shards"]:
        extra.append("stopped shards: " + ", ".join(map(str, info["stopped_shards"])))
    if extra:
        line += "  (" + "; ".join(extra) + ")"
    for index, error in info["failed_shards"]:
        line += f"\n    shard {index}: {error}"
    return line


# --- submitit jobs -------------------------------------------------------------------------------
def _job_error(folder: Path) -> Optional[str]:
    """The error line of a finished-and-failed submitit job in ``folder``, None if it did not fail (yet)."""
    for result in folder.glob("*_result.pkl"):
        try:
            import pickle

            with open(result, "rb") as handle:
                outcome, value = pickle.load(handle)
        except Exception:  # noqa: BLE001 (an unreadable result says nothing)
            continue
        if outcome == "error":
            lines = str(value).strip().splitlines()
            return lines[-1] if lines else "error"
        status = getattr(value, "status", None)
        if status is not None and getattr(status, "name", "") == "FAILED":  # Hydra's JobReturn (#1928)
            error = getattr(value, "_return_value", None)
            return f"{type(error).__name__}: {error}" if error is not None else "task failed"
        return None
    for log in folder.glob("*_log.err"):
        try:
            lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            continue
        errors = [line for line in lines if line.startswith("error:") or "Error" in line.split(":")[0]]
        if errors and not any("Exiting gracefully after preemption/timeout" in line for line in lines[-3:]):
            return errors[-1]
    return None


def _job_overrides(folder: Path) -> Optional[Tuple[str, ...]]:
    """The Hydra overrides the job ran with (from submitit's pickle), None if unreadable."""
    for pickled in folder.glob("*_submitted.pkl"):
        try:
            from submitit.core.utils import DelayedSubmission

            return tuple(DelayedSubmission.load(pickled).args[0])
        except Exception:  # noqa: BLE001
            return None
    return None


def failed_jobs(sweep_dir: Path) -> List[Tuple[str, str, Path]]:
    """(overrides, error line, log folder) of the sweep's latest submitit job per override set that failed."""
    base = sweep_dir / ".submitit"
    if not base.is_dir():
        return []
    latest: Dict[Any, Tuple[float, Path]] = {}
    for folder in (p for p in base.iterdir() if p.is_dir()):
        key = _job_overrides(folder) or folder.name
        mtime = folder.stat().st_mtime
        if key not in latest or mtime > latest[key][0]:
            latest[key] = (mtime, folder)
    override_sets = [set(key) for key in latest if isinstance(key, tuple)]
    common = set.intersection(*override_sets) if len(override_sets) > 1 else set()
    failed = []
    for key, (_, folder) in sorted(latest.items(), key=lambda kv: kv[1][0]):
        error = _job_error(folder)
        if error:  # name the job by what sets it apart from the sweep's other jobs
            overrides = " ".join(o for o in key if o not in common) if isinstance(key, tuple) else f"job {key}"
            failed.append((overrides, error, folder))
    return failed


def report(root: Path) -> str:
    runs = [describe_run(d) for d in run_dirs(root)]
    lines = [f"{root}: {len(runs)} run(s)"]
    if runs:
        counts: Dict[str, int] = {}
        for info in runs:
            counts[info["state"]] = counts.get(info["state"], 0) + 1
        lines[0] += ": " + ", ".join(f"{n} {state}" for state, n in counts.items())
        width = max(len(info["run"]) for info in runs)
        lines += [_format_run(info, width) for info in runs]
    jobs = failed_jobs(root)
    if jobs:
        lines.append(f"{len(jobs)} submitted job(s) failed:")
        lines += [f"  {overrides}\n    {error}\n    logs: {folder}" for overrides, error, folder in jobs]
    lines.append(time.strftime("as of %Y-%m-%d %H:%M:%S"))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0].split(": ", 1)[1])
        return 0 if args else 2
    code = 0
    for arg in args:
        root = Path(arg)
        if not root.is_dir():
            print(f"{root}: no such directory", file=sys.stderr)
            code = 2
            continue
        print(report(root))
    return code


if __name__ == "__main__":
    sys.exit(main())
