"""The task: execute one run into its directory, resuming whatever an earlier invocation finished.

A run selects its rows (a pure function of data + config), skips rows that already have a valid
sample file, explains the rest one by one, and writes each result, the checkpoint and the summary
atomically. A row that raises is recorded under ``failures/`` and the run goes on; the next
invocation retries it.
"""

from __future__ import annotations

import logging
import subprocess
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from . import __version__
from .artifacts import RunDir, summary_file
from .config import NON_IDENTITY_KEYS, ConfigError, check_config, to_container
from .naming import run_slug
from .tracking import open_tracker

log = logging.getLogger(__name__)


def build_spec(cfg: DictConfig, slug: str) -> Dict[str, Any]:
    return {
        "experiment_set_id": cfg.experiment_set_id,
        "run_slug": slug,
        "config": to_container(cfg),
        "mllm_shapx_version": __version__,
        "git_commit": _git_commit(),
        "created_at": time.time(),
    }


def _git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def run(cfg: DictConfig, output_dir: Path) -> Optional[Dict[str, Any]]:
    """Run (or resume) one configuration into ``output_dir``; returns the summary (None for a dry run)."""
    problems = check_config(cfg)
    if problems:
        raise ConfigError(problems)
    slug = run_slug(cfg.shap)
    if cfg.dry_run:
        print(f"planned: {output_dir}", flush=True)
        return None
    if cfg.shap.similarity.value == "TfIdfCosineSimilarity" and cfg.embedding.model_id:
        log.warning("embedding.model_id is not used: TfIdfCosineSimilarity compares answer token ids")
    from transformers.utils import logging as hf_logging

    threads, bars = torch.get_num_threads(), hf_logging.is_progress_bar_enabled()
    try:
        if cfg.runtime.num_threads:
            torch.set_num_threads(cfg.runtime.num_threads)
        if not cfg.runtime.progress_bar:
            hf_logging.disable_progress_bar()  # transformers' "Loading weights" bars too
        return _run(cfg, output_dir, slug)
    finally:  # nothing process-global leaks into the next job of a sweep
        torch.set_num_threads(threads)
        if bars:
            hf_logging.enable_progress_bar()


def _run(cfg: DictConfig, output_dir: Path, slug: str) -> Dict[str, Any]:
    from .connectors import load_connector
    from .data import load_split

    dataset = _config_step(load_split, cfg.dataset)
    model = _config_step(load_connector, cfg.connector, cfg.device.value if cfg.device else None)
    selected = _select(cfg, dataset, model)
    mine = selected[cfg.shard.index::cfg.shard.count]

    with RunDir(output_dir, cfg.shard.index, cfg.shard.count) as run_dir:
        spec = build_spec(cfg, slug)
        with run_dir.shared:
            run_dir.prepare(spec, config_key="config", ignore=NON_IDENTITY_KEYS, resume=cfg.resume)
        try:
            tracker = open_tracker(cfg.wandb, run_dir=output_dir, run_slug=slug,
                                   experiment_set_id=cfg.experiment_set_id, spec=spec)
            failed = _explain_rows(cfg, slug, dataset, model, selected, mine, run_dir, tracker)
        except BaseException as error:
            stopped = isinstance(error, (KeyboardInterrupt, SystemExit))  # submitit requeues by SystemExit
            run_dir.write_status("interrupted" if stopped else "failed",
                                 error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
            raise
        with run_dir.shared:
            run_dir.write_checkpoint(selected)
            summary = run_dir.write_summary(selected)
        run_dir.write_status("completed", rows_selected=len(mine), rows_done=len(mine) - failed,
                             rows_failed=failed)
        tracker.finish(summary, summary_file(run_dir.path))
    log.info("run %s (%s): %d/%d rows done, %d failed -> %s", slug, run_dir.shard, summary["n_samples"],
             len(selected), summary["n_failed"], output_dir)
    return summary


def _explain_rows(cfg, slug, dataset, model, selected, mine, run_dir: RunDir, tracker) -> int:
    """Explain this job's unfinished rows; returns how many of its rows are left failed."""
    from .data import get_row
    from .explain import explain_row

    todo = [i for i in mine if not run_dir.is_complete(i)]
    log.info("run %s (%s): %d rows selected, %d for this job, %d to do", slug, run_dir.shard, len(selected),
             len(mine), len(todo))
    progress = cfg.runtime.progress_bar
    done, failed = len(mine) - len(todo), 0
    run_dir.write_status("running", rows_selected=len(mine), rows_done=done, rows_failed=0)
    for index in tqdm(todo, desc=slug, unit="row", disable=not progress):
        try:
            sample, audio_files = explain_row(get_row(dataset, index), model, cfg, slug, progress=progress)
            run_dir.write_audio(index, audio_files)
        except Exception:  # one bad row must not stop the run; it is recorded and retried next time
            log.exception("row %d failed", index)
            run_dir.write_failure(index, traceback.format_exc())
            failed += 1
        else:
            run_dir.write_sample(index, sample)
            done += 1
            with run_dir.shared:
                run_dir.write_checkpoint(selected)
            tracker.log_sample(sample)
        run_dir.write_status("running", rows_selected=len(mine), rows_done=done, rows_failed=failed)
    return failed


def _select(cfg: DictConfig, dataset, model) -> list:
    """The run's rows. Rows without the audio the modality needs are left out (one warning); a row
    whose chat cannot be built is left out with a warning of its own."""
    from .data import MissingAudio, select_rows
    from .explain import selection_count

    no_audio = []

    def count(row) -> int:
        try:
            return selection_count(row, model, cfg)
        except MissingAudio:
            no_audio.append(row.index)
            return -1
        except Exception as error:  # one bad row must not stop the selection of the others
            log.warning("row %d left out of the selection: %s: %s", row.index, type(error).__name__, error)
            return -1

    selected = _config_step(select_rows, dataset, _at_least_one_player(cfg.selection), count)
    if no_audio:
        message = (f"{len(no_audio)} rows have no {cfg.modality.input_modality.value} audio and were left out "
                   f"(the bundled shards carry speech for their first rows only)")
        if not selected:
            raise ConfigError([f"selection: no row selected; {message}"])
        log.warning(message)
    return selected


def _config_step(step, *args):
    """Data that cannot be read or selected as configured, or a connector whose optional package is
    missing, is a configuration problem (final)."""
    from .connectors import ConnectorUnavailable

    try:
        return step(*args)
    except (ValueError, FileNotFoundError, ConnectorUnavailable) as error:
        raise ConfigError([str(error)]) from error


def _at_least_one_player(selection: DictConfig):
    """A row without any explainable token has nothing to explain: the minimum is at least 1."""
    plain = OmegaConf.to_object(selection)
    return replace(plain, min_prompt_tokens=max(1, plain.min_prompt_tokens or 1))
