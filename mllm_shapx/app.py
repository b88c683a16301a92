"""Hydra entry point: ``python -m mllm_shapx.app +experiment=mc_minimal [--multirun ...]``.

Thin on purpose: compose the config, then call :func:`mllm_shapx.run.run` on the job's output
directory. Configuration errors exit with code 2 (final: retrying cannot help).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .artifacts import RunDirError
from .config import ConfigError, register_configs
from .naming import run_slug

log = logging.getLogger(__name__)

register_configs()
if not OmegaConf.has_resolver("mllm_shapx.run_slug"):
    OmegaConf.register_new_resolver("mllm_shapx.run_slug", run_slug)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from .run import run

    try:
        run(cfg, Path(HydraConfig.get().runtime.output_dir))
    except (ConfigError, RunDirError) as error:
        for line in str(error).splitlines():
            log.error(line)
            print(f"error: {line}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
