"""The reverse check (``--check``): plan every run the commands start and compose each as the app would."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .legacy import Imported, _print_warnings
from .original import CONF_DIR
from .variants import Variant
from .writer import _fmt, write


@dataclass
class PlannedRun:
    variant: Variant
    overrides: List[str]  # as on the app's command line, after +experiment=<name>
    run_dir: str = ""
    composed_dir: Optional[str] = None  # what the app composes for it (None: it does not compose)
    problems: List[str] = field(default_factory=list)


def planned_runs(imp: Imported) -> List[PlannedRun]:
    """Every run the printed commands start, in their order (= the original expander's order)."""
    from ..naming import run_slug

    return [PlannedRun(variant, [f"shap.{key}={_fmt(value)}" for key, value in swept.items()],
                       f"{imp.output_root}/{imp.set_id}/{run_slug(shap)}")
            for variant in imp.variants for shap, swept in variant.expand()]


def compose_runs(imp: Imported, search_dir: Path) -> List[PlannedRun]:
    """Compose each planned run from ``search_dir/experiment`` as the app would; record dir and problems."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    from .. import app  # noqa: F401  (registers the schema and the run-slug resolver)
    from ..config import check_config

    runs = planned_runs(imp)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for run in runs:
            overrides = [f"+experiment={run.variant.stem}", f"hydra.searchpath=[file://{search_dir}]", *run.overrides]
            try:
                cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
            except (HydraException, OmegaConfBaseException) as error:
                run.problems = [" ".join(str(error).strip().splitlines()[0].split())]
                continue
            sweep = cfg.hydra.sweep  # the commands are --multirun: the job runs in sweep.dir/sweep.subdir
            run.composed_dir = f"{sweep.dir}/{sweep.subdir}"
            with open_dict(cfg):
                del cfg["hydra"]  # the app's cfg has none (and hydra.runtime.* are unset outside a launch)
            run.problems = check_config(cfg)
            if run.composed_dir != run.run_dir:  # cannot happen unless the presets and the plan disagree
                run.problems.append(f"composes to {run.composed_dir}, planned {run.run_dir}")
    return runs


def check(imports: Sequence[Imported], list_runs: bool = False) -> int:
    status = 0
    with tempfile.TemporaryDirectory(prefix="mllm_shapx_import_") as tmp:
        write(imports, Path(tmp) / "experiment", None, quiet=True)
        for imp in imports:
            _print_warnings(imp)
            runs = compose_runs(imp, Path(tmp))
            failing = [run for run in runs if run.problems]
            n = len(runs)
            if list_runs:
                for run in runs:
                    print(f"planned: {run.run_dir}" + (" (cannot run)" if run.problems else ""))
            if not failing:
                print(f"{imp.report.source}: {n} run{'s' if n != 1 else ''}, all compose and pass the config checks")
                continue
            status = 2
            print(f"{imp.report.source}: {n} run{'s' if n != 1 else ''}, {len(failing)} cannot run:")
            by_problem: Dict[str, List[str]] = {}
            for run in failing:
                for problem in run.problems:
                    by_problem.setdefault(problem, []).append(run.run_dir.rsplit("/", 1)[-1])
            for problem, slugs in by_problem.items():
                shown = ", ".join(slugs[:3]) + (f", ... ({len(slugs)} runs)" if len(slugs) > 3 else "")
                print(f"  {problem}  [{shown}]")
    return status
