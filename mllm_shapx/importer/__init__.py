"""Import the original runner's JSON experiment configs as Hydra experiment presets.

    python -m mllm_shapx.importer CONFIG.json [CONFIG2.json ...] --out DIR
    python -m mllm_shapx.importer CONFIG.json [...] --install
    python -m mllm_shapx.importer --check CONFIG.json [...] [--list]

One experiment file per variant of the JSON (``<experiment_set_id>__<variant name or index>.yaml``,
``# @package _global_``, ``override /group:`` defaults + every value spelled out), written to
``DIR/experiment/`` (``--out``) or to ``conf/experiment/`` (``--install``). stdout gets, one per line,
the ``python -m mllm_shapx.app --multirun ...`` commands that run everything the JSON described: a
variant's lists become Hydra sweeps (``shap.num_samples=300,400,500``); a variant with several budget
kinds (``num_samples`` and ``fractions``) gets one command per kind; the union over variants is one
command per variant, never a cross-variant product. Appending ``dry_run=true`` to the commands plans
exactly the original's run directories (same slugs, aliases resolved: ``neyman`` -> ``limited_neyman``).

The JSON is checked first, every problem named by its JSON path (``experiments[2].fractions[1]``):
unknown keys, wrong types and values outside the original's ranges are errors (exit 2, nothing
written); keys the original knew but ignored, and every place where the import has to decide
something, are warnings on stderr. ``--check`` imports into a temporary directory, composes every
planned run exactly as the app would, runs the config checks and prints the run count (exit 2 and
the problems when some run cannot start). Loads no model and no data.

Modules: ``reader`` (the JSON schema walker), ``original`` (the original's vocabulary and defaults),
``legacy`` (loading and converting a JSON), ``variants`` (its experiments, expanded into sweeps),
``writer`` (names, YAML, commands), ``compose`` (planned runs, ``--check``), ``cli`` (the command line).
"""

from .cli import main
from .compose import PlannedRun, check, compose_runs, planned_runs
from .legacy import Imported, _convert, load, load_all  # noqa: F401  (_convert: for the tests)
from .original import ALIASES, CONF_DIR, EXPLAINERS, HIER_FIELDS, HIER_LAYER_TYPES, ORIGINAL
from .reader import Report
from .variants import Sweep, Variant
from .writer import APP, assign_names, command, commands, render, write

__all__ = ["ALIASES", "APP", "CONF_DIR", "EXPLAINERS", "HIER_FIELDS", "HIER_LAYER_TYPES", "ORIGINAL", "Imported",
           "PlannedRun", "Report", "Sweep", "Variant", "assign_names", "check", "command", "commands",
           "compose_runs", "load", "load_all", "main", "planned_runs", "render", "write"]
