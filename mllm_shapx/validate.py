"""Check a configuration without running it.

    python -m mllm_shapx.validate +experiment=mc_minimal [OVERRIDES ...] [check_dataset=true]

Composes the config exactly as the app would (same overrides), runs every config check, and with
``check_dataset=true`` also reads the dataset shard. Prints ``config ok`` (exit 0) or one problem per
line (exit 2). Loads no model.
"""

from __future__ import annotations

import sys
from typing import List, Sequence

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from . import app  # noqa: F401  (registers the schema and the run-slug resolver)
from .config import CONF_DIR, check_config


def problems_of(overrides: Sequence[str], check_dataset: bool = False) -> List[str]:
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as error:
        causes = [error] + ([error.__cause__] if error.__cause__ else [])
        return [" ".join(" ".join(str(e).split()) for e in causes)]
    problems = check_config(cfg)
    if check_dataset and not problems:
        problems += _dataset_problems(cfg)
    return problems


def _dataset_problems(cfg) -> List[str]:
    from .data import load_split

    try:
        dataset = load_split(cfg.dataset)  # checks the columns too
    except Exception as error:  # any failure to read the shard is a finding to report, not a crash
        return [f"dataset: cannot be read: {type(error).__name__}: {error}"]
    if len(dataset) == 0:
        return ["dataset: the split holds no rows"]
    return []


def main(argv: Sequence[str]) -> int:
    check_dataset, overrides, problems = False, [], []
    for arg in argv:
        if arg.startswith("check_dataset="):
            value = arg.split("=", 1)[1].lower()
            if value not in ("true", "false"):
                problems.append(f"check_dataset: {value!r} is not true or false")
            check_dataset = value == "true"
        else:
            overrides.append(arg)
    problems = problems or problems_of(overrides, check_dataset)
    if problems:
        for line in problems:
            print(line)
        return 2
    print("config ok" + (" (dataset readable)" if check_dataset else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
