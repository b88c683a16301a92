"""Writing the import: experiment file names, the YAML presets, the app commands that run them."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

from ..artifacts import atomic_write_bytes
from .legacy import Imported
from .original import CONF_DIR
from .variants import Sweep, Variant

APP = ("python", "-m", "mllm_shapx.app", "--multirun")


def _safe_name(text: str) -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "experiment"
    try:
        parsed = OverridesParser.create().parse_override(f"+experiment={name}").value()
    except Exception:  # noqa: BLE001  (anything Hydra cannot read back as this very string)
        parsed = None
    return name if parsed == name else f"x_{name}"


def _marker(imp: Imported, variant: Variant) -> str:
    return f"# Imported by mllm_shapx.importer from {imp.source} experiments[{variant.index}]"


def _file_marker(path: Path) -> Optional[str]:
    try:
        with path.open(encoding="utf-8") as handle:
            head = [handle.readline().rstrip("\n") for _ in range(3)]
    except OSError:
        return None
    return next((line for line in head if line.startswith("# Imported by mllm_shapx.importer from ")), None)


def assign_names(imports: Sequence[Imported], experiment_dir: Path, quiet: bool = False) -> None:
    """``<set_id>__<variant name or index>``, unique, never shadowing or clobbering another file.

    An existing file is overwritten only when it was imported from the same JSON variant. Outside
    ``conf/experiment`` a name that exists there is avoided too: the app's own presets win the lookup.
    """
    installed = CONF_DIR / "experiment"
    taken: set = set()
    for imp in imports:
        for variant in imp.variants:
            base = _safe_name(f"{imp.set_id}__{variant.name if variant.name else variant.index}")
            stem, n = base, 2
            while True:
                target = experiment_dir / f"{stem}.yaml"
                shadow = installed / f"{stem}.yaml"
                free = stem not in taken and (not target.exists() or _file_marker(target) == _marker(imp, variant))
                if free and experiment_dir.resolve() != installed.resolve() and shadow.exists():
                    free = False
                if free:
                    break
                stem, n = f"{base}_{n}", n + 1
            if stem != base and not quiet:
                imp.report.warn(f"experiments[{variant.index}]", f"experiment name {base} is taken; using {stem}")
            taken.add(stem)
            variant.stem = stem


def _fmt(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def command(variant: Variant, sweep: Sweep, config_dir: Optional[Path]) -> List[str]:
    argv = list(APP)
    if config_dir is not None:
        argv += ["--config-dir", str(config_dir)]
    argv.append(f"+experiment={variant.stem}")
    argv += [f"shap.{key}={','.join(_fmt(v) for v in values)}" for key, values in variant.swept(sweep)]
    return argv


def commands(imp: Imported, config_dir: Optional[Path]) -> List[str]:
    return [shlex.join(command(v, sweep, config_dir)) for v in imp.variants for sweep in v.commands]


def _escape(value: Any) -> Any:
    """Strings reach OmegaConf: keep ``${...}`` literal."""
    if isinstance(value, str):
        return value.replace("${", "\\${")
    if isinstance(value, list):
        return [_escape(v) for v in value]
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    return value


def render(imp: Imported, variant: Variant, config_dir: Optional[Path]) -> str:
    runs = len(variant.expand())
    lines = [
        "# @package _global_",
        _marker(imp, variant),
        "# Do not edit by hand: re-import the JSON instead (python -m mllm_shapx.importer --help).",
        f"# Runs ({runs}{', the union of the commands' if len(variant.commands) > 1 else ''}):",
        *(f"#   {shlex.join(command(variant, sweep, config_dir))}" for sweep in variant.commands),
    ]
    group = {"dataset": imp.defaults["dataset"], "shap": variant.explainer, "modality": imp.defaults["modality"],
             "connector": imp.defaults["connector"]}
    body: Dict[str, Any] = {"defaults": [{f"override /{g}": option} for g, option in group.items()]}
    body.update({key: value for key, value in imp.body.items() if value != {}})
    body["shap"] = variant.shap
    text = yaml.safe_dump(_escape(body), sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
    return "\n".join(lines) + "\n" + text


def write(imports: Sequence[Imported], experiment_dir: Path, config_dir: Optional[Path],
          quiet: bool = False) -> List[Path]:
    assign_names(imports, experiment_dir, quiet)
    files = [(experiment_dir / f"{v.stem}.yaml", render(imp, v, config_dir)) for imp in imports for v in imp.variants]
    for path, text in files:
        atomic_write_bytes(path, text.encode("utf-8"))
    return [path for path, _ in files]
