"""Weights & Biases tracking: one W&B run per run directory, configured entirely by the ``wandb`` node.

The runner only calls :func:`open_tracker` once the run directory is prepared, ``log_sample`` after
each sample file is written and ``finish`` after the summary is written. Everything else is here.

* ``wandb.enabled=false`` or ``wandb.mode=disabled``: a no-op tracker; ``wandb`` is not even imported
  and nothing is written.
* Otherwise one W&B run per run directory, named after the run slug, grouped by ``wandb.group`` or
  the ``experiment_set_id``, with the resolved spec as its config. Its id is kept in
  ``<run_dir>/wandb_run.json`` (written atomically, bound to the ``created_at`` of the directory's
  ``spec.json``), so re-running the same command resumes the same W&B run (``resume="allow"``); a
  directory started afresh with ``resume=false`` gets a new W&B run. wandb's own files go under
  ``<run_dir>/wandb/`` (``dir=<run_dir>``): an offline run is ``<run_dir>/wandb/offline-run-*-<id>/``,
  uploadable later with ``wandb sync <that folder>``. Each invocation (a resume included) writes its
  own ``offline-run-*`` folder carrying the same id.
* Per sample: ``progress/sample_index`` (the row index), ``timing/runtime_sec``, ``attr/abs_sum_text``,
  ``attr/abs_sum_audio``, ``attr/frac_text``, ``attr/frac_audio``, ``counts/text_tokens``,
  ``counts/audio_segments``, ``meta/language``, ``meta/input_modality``, ``meta/output_modality``
  (the original's names) plus ``estimator/n_calls``, ``estimator/efficiency_gap`` and
  ``estimator/shap_stderr_mean`` (absent for exact estimators). Missing or null values are left out.
* At the end: the summary's scalars into the W&B run summary as ``summary/<key>``, and the summary
  JSON as artifact ``<slug>-<id>-summary`` (type ``summary``).
* ``wandb.log_samples=true``: the sample files (and a sample's audio files, as
  ``audio/sample_XXXXX/<file>.wav``) as artifact ``<slug>-<id>-samples`` (type ``samples``), uploaded
  incrementally: each version adds only the files finished since the previous
  version (an *incremental* artifact: W&B merges it with the previous version, so ``:latest`` holds
  every sample; only new files are hashed and uploaded, so the total work is linear in the number of
  samples, unlike the original, which re-uploaded the whole directory after every sample). A
  version is cut at a sample when ``SAMPLES_FLUSH_INTERVAL_S`` have passed since the last one (so
  with slow rows every sample is its own version), when ``SAMPLES_MAX_PENDING`` files are waiting,
  and at the end; an interrupted run has uploaded all but at most the last interval's samples
  (which stay in the run directory). Files are referenced in place (``policy="immutable"``: sample
  files are never rewritten once valid), the summary is copied (it is rewritten by later
  invocations).
* Failures (wandb missing, no network, bad entity, no API key, quota, anything wandb raises) never
  fail the run: one ``logging.warning`` naming the problem, then the tracker is a no-op for the rest
  of the run; the run directory stays the source of truth. ``wandb.init`` is bounded by
  ``INIT_TIMEOUT_S`` (wandb's own default, 90 s, is what an unreachable endpoint costs otherwise:
  measured against a loopback port with nothing listening, init fails after the timeout + ~0.4 s),
  and the final upload by ``FINISH_TIMEOUT_S`` (wandb's default waits forever; after it the W&B run
  is marked crashed and its local files can still be synced). Both can be overridden by
  ``wandb.init_timeout`` / ``wandb.finish_timeout`` keys if the schema has them. An online init that
  failed is not retried by later runs of the same process (a sweep would otherwise pay the timeout
  once per job): they warn once and track nothing.
* wandb-core writes its log asynchronously: ``run.finish()`` can return before the offline
  ``.wandb`` file is complete; it is completed by the time the process exits (wandb's atexit hook).
* wandb's console capture is off (``console="off"``): output is in the Hydra job log already.
"""

from __future__ import annotations

import logging
import math
import os
import re
import secrets
import string
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, Set, Tuple

from .artifacts import atomic_write_json, audio_folder, read_json, sample_file

log = logging.getLogger(__name__)

RUN_ID_FILE = "wandb_run.json"
INIT_TIMEOUT_S = 20.0
FINISH_TIMEOUT_S = 60.0
SAMPLES_FLUSH_INTERVAL_S = 30.0
SAMPLES_MAX_PENDING = 50

# Online endpoints whose init failed in this process: later runs skip them instead of waiting again.
_FAILED_ONLINE: Set[Tuple[Optional[str], Optional[str], str]] = set()


class Tracker(Protocol):
    def log_sample(self, sample: dict) -> None: ...

    def finish(self, summary: dict, summary_path: Path) -> None: ...


class NullTracker:
    """Tracks nothing (tracking disabled, or given up after a failure)."""

    def log_sample(self, sample: dict) -> None:
        pass

    def finish(self, summary: dict, summary_path: Path) -> None:
        pass


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, dict):
        value = cfg.get(key, default)
    else:
        value = getattr(cfg, key, default)
    return getattr(value, "value", value)  # enums (WandbConf.mode) as their value


def _warn(problem: str, run_dir: Path) -> None:
    log.warning("W&B tracking is off for the rest of this run: %s. Local artifacts in %s are unaffected "
                "(they are the source of truth).", problem, run_dir)


def open_tracker(wandb_cfg: Any, *, run_dir: Path, run_slug: str, experiment_set_id: str,
                 spec: dict) -> Tracker:
    """The tracker the ``wandb`` config node asks for; never raises."""
    mode = str(_get(wandb_cfg, "mode", "offline"))
    if not _get(wandb_cfg, "enabled", False) or mode == "disabled":
        return NullTracker()
    run_dir = Path(run_dir)
    project, entity = _get(wandb_cfg, "project"), _get(wandb_cfg, "entity")
    endpoint = (entity, project, os.environ.get("WANDB_BASE_URL", ""))
    if mode == "online" and endpoint in _FAILED_ONLINE:
        _warn(f"W&B init already failed in this process for project {project!r} (entity {entity!r}); "
              "not retrying", run_dir)
        return NullTracker()
    started = time.monotonic()
    try:
        import wandb

        run_id = _run_id(run_dir, spec)
        timeout = float(_get(wandb_cfg, "init_timeout", None) or INIT_TIMEOUT_S)
        finish_timeout = float(_get(wandb_cfg, "finish_timeout", None) or FINISH_TIMEOUT_S)
        run = wandb.init(
            project=project,
            entity=entity,
            group=_get(wandb_cfg, "group") or experiment_set_id,
            tags=[str(tag) for tag in (_get(wandb_cfg, "tags") or [])],
            name=run_slug,
            id=run_id,
            resume="allow",
            mode=mode,
            dir=str(run_dir),
            config=spec,
            job_type="explain",
            reinit="finish_previous",
            settings=wandb.Settings(init_timeout=timeout, finish_timeout=finish_timeout, console="off"),
        )
    except Exception as error:  # noqa: BLE001 - tracking must never fail the run
        if mode == "online":
            _FAILED_ONLINE.add(endpoint)
        _warn(f"wandb.init ({mode}) failed after {time.monotonic() - started:.1f} s: "
              f"{type(error).__name__}: {_first_line(error)}", run_dir)
        return NullTracker()
    log.info("W&B run %s (%s) -> %s", run.id, mode, getattr(run, "dir", run_dir))
    return WandbTracker(wandb, run, run_dir=run_dir, run_slug=run_slug,
                        log_samples=bool(_get(wandb_cfg, "log_samples", False)))


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else "(no message)"


# --- the run id, kept in the run directory ----------------------------------------------------------
def _run_id(run_dir: Path, spec: dict) -> str:
    """The W&B run id of this run directory: stored once, reused by every later invocation."""
    bound_to = _spec_created_at(run_dir, spec)
    stored = read_json(run_dir / RUN_ID_FILE)
    if isinstance(stored, dict) and isinstance(stored.get("id"), str) and stored.get("spec_created_at") == bound_to:
        return stored["id"]
    alphabet = string.ascii_lowercase + string.digits
    run_id = "".join(secrets.choice(alphabet) for _ in range(12))
    atomic_write_json(run_dir / RUN_ID_FILE, {"id": run_id, "spec_created_at": bound_to})
    return run_id


def _spec_created_at(run_dir: Path, spec: dict) -> Any:
    """``created_at`` of the directory's spec.json: a directory started afresh gets a new W&B run."""
    on_disk = read_json(run_dir / "spec.json")
    if isinstance(on_disk, dict) and "created_at" in on_disk:
        return on_disk["created_at"]
    return spec.get("created_at")


# --- metrics ------------------------------------------------------------------------------------------
def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


def sample_metrics(sample: Dict[str, Any]) -> Dict[str, Any]:
    """The per-sample metrics (original names + ours); keys whose value is missing are left out."""
    attr = sample.get("attr_summary") or {}
    stderr = [float(v) for v in (sample.get("shap_stderr") or []) if _number(v) is not None]
    stderr = [v for v in stderr if math.isfinite(v)]
    metrics = {
        "progress/sample_index": sample.get("row_index"),
        "timing/runtime_sec": _number(sample.get("runtime_sec")),
        "attr/abs_sum_text": _number(attr.get("abs_sum_text")),
        "attr/abs_sum_audio": _number(attr.get("abs_sum_audio")),
        "attr/frac_text": _number(attr.get("frac_text")),
        "attr/frac_audio": _number(attr.get("frac_audio")),
        "counts/text_tokens": attr.get("count_text_tokens"),
        "counts/audio_segments": attr.get("count_audio_segments"),
        "meta/language": sample.get("language"),
        "meta/input_modality": sample.get("input_modality"),
        "meta/output_modality": sample.get("output_modality"),
        "estimator/n_calls": sample.get("n_calls"),
        "estimator/efficiency_gap": _number(sample.get("efficiency_gap")),
        "estimator/shap_stderr_mean": sum(stderr) / len(stderr) if stderr else None,
    }
    return {key: value for key, value in metrics.items() if value is not None}


def summary_metrics(summary: Dict[str, Any]) -> Dict[str, Any]:
    """The summary's scalars, as ``summary/<key>`` (lists such as ``failed_indices`` are left out)."""
    return {f"summary/{key}": value for key, value in summary.items()
            if isinstance(value, (int, float, str, bool)) and value is not None}


def _artifact_name(run_slug: str, run_id: str, kind: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", run_slug).strip("-.")[:96] or "run"
    return f"{safe}-{run_id}-{kind}"


class WandbTracker:
    """One live W&B run; any exception from wandb turns it into a no-op (warned once)."""

    def __init__(self, wandb: Any, run: Any, *, run_dir: Path, run_slug: str, log_samples: bool):
        self._wandb = wandb
        self._run = run
        self._run_dir = Path(run_dir)
        self._slug = run_slug
        self._log_samples = log_samples
        self._pending: List[Tuple[Path, str]] = []  # (file, name in the artifact)
        self._last_flush = -math.inf

    @property
    def active(self) -> bool:
        return self._run is not None

    def log_sample(self, sample: dict) -> None:
        if self._run is None:
            return
        try:
            self._run.log(sample_metrics(sample))
            if self._log_samples:
                self._queue_sample_file(sample.get("row_index"))
        except Exception as error:  # noqa: BLE001
            self._fail("logging a sample", error)

    def finish(self, summary: dict, summary_path: Path) -> None:
        if self._run is None:
            return
        try:
            self._flush_samples()
            self._run.summary.update(summary_metrics(summary))
            artifact = self._wandb.Artifact(_artifact_name(self._slug, self._run.id, "summary"), type="summary",
                                            metadata={"run_slug": self._slug})
            artifact.add_file(str(summary_path), name=Path(summary_path).name)
            self._run.log_artifact(artifact)
            run, self._run = self._run, None
            run.finish()
        except Exception as error:  # noqa: BLE001
            self._fail("finishing the run", error)

    # --- samples artifact -------------------------------------------------------------------------
    def _queue_sample_file(self, row_index: Any) -> None:
        try:
            row_index = int(row_index)
        except (TypeError, ValueError):
            return
        path = sample_file(self._run_dir, row_index)
        if path.is_file():
            self._pending.append((path, path.name))
        audio = audio_folder(self._run_dir, row_index)  # the sample's WAVs, if any
        self._pending += [(wav, f"audio/{audio.name}/{wav.name}") for wav in sorted(audio.glob("*.wav"))]
        if (len(self._pending) >= SAMPLES_MAX_PENDING
                or time.monotonic() - self._last_flush >= SAMPLES_FLUSH_INTERVAL_S):
            self._flush_samples()

    def _flush_samples(self) -> None:
        """One incremental artifact version holding only the files not uploaded yet."""
        if not self._pending:
            return
        name = _artifact_name(self._slug, self._run.id, "samples")
        artifact = self._wandb.Artifact(name, type="samples", metadata={"run_slug": self._slug})
        if hasattr(artifact, "_incremental"):
            artifact._incremental = True  # = incremental=True, minus its "experimental" warning at every version
        else:  # pragma: no cover - a later wandb without the attribute
            artifact = self._wandb.Artifact(name, type="samples", metadata={"run_slug": self._slug},
                                            incremental=True)
        for path, name in self._pending:
            artifact.add_file(str(path), name=name, policy="immutable")
        self._run.log_artifact(artifact)
        self._pending = []
        self._last_flush = time.monotonic()

    def _fail(self, what: str, error: BaseException) -> None:
        run, self._run = self._run, None
        self._pending = []
        _warn(f"wandb failed while {what}: {type(error).__name__}: {_first_line(error)}", self._run_dir)
        if run is not None:
            try:  # release wandb's resources; bounded by finish_timeout
                run.finish(exit_code=1)
            except Exception:  # noqa: BLE001
                pass
