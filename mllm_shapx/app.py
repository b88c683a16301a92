"""Hydra entry point: ``python -m mllm_shapx.app +experiment=mc_minimal [--multirun ...]``.

Thin on purpose: compose the config, then call :func:`mllm_shapx.run.run` on the job's output
directory. Configuration errors exit with code 2 (final: retrying cannot help); in a multirun sweep
the failing job is reported and the other jobs still run.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .artifacts import RunDirError
from .config import ConfigError, register_configs
from .naming import run_slug

log = logging.getLogger(__name__)

register_configs()
if not OmegaConf.has_resolver("mllm_shapx.run_slug"):
    OmegaConf.register_new_resolver("mllm_shapx.run_slug", run_slug)
if not OmegaConf.has_resolver("mllm_shapx.launchers_dir"):  # hydra.searchpath in conf/config.yaml
    OmegaConf.register_new_resolver("mllm_shapx.launchers_dir",
                                    lambda: str(Path(__file__).resolve().parent.parent / "launchers"))


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from .run import run

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        run(cfg, output_dir)
    except (ConfigError, RunDirError) as error:
        for line in str(error).splitlines():
            log.error(line)
            print(f"error: {line}", file=sys.stderr)
        _discard_if_only_hydra_files(output_dir)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the launcher records this job as failed and goes on with the others
        sys.exit(2)
    if cfg.dry_run:
        _discard_if_only_hydra_files(output_dir)


def _discard_if_only_hydra_files(output_dir: Path) -> None:
    """Hydra creates the job directory before the task runs; a run that never started leaves none."""
    if not output_dir.is_dir() or {p.name for p in output_dir.iterdir()} - {".hydra", "app.log"}:
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == output_dir:
            root.removeHandler(handler)
            handler.close()
    shutil.rmtree(output_dir)
    try:
        output_dir.parent.rmdir()  # the experiment-set folder, only while empty
    except OSError:
        pass


if __name__ == "__main__":
    main()
