"""The experiments of a legacy JSON: one ``Variant`` each, its lists expanded into sweeps (commands).

A variant's budget lists become one sweep per budget kind; a hierarchical variant's lists become one
sweep whose product is the original expander's cartesian product. Aliases are resolved here.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..estimators import BUDGET_FREE
from ..naming import hier_slug_part
from .original import ALIASES, EXPLAINERS, HIER_FIELDS, HIER_IGNORED, HIER_LAYER_TYPES, ORIGINAL
from .reader import _BAD, Report, _count, _group_count, _ignored, _join, _json_type, _linear, _Reader, _unit

Sweep = List[Tuple[str, List[Any]]]  # ordered shap keys -> values; a command's runs are their product


@dataclass
class Variant:
    index: int
    name: Optional[str]
    explainer: str
    shap: Dict[str, Any]  # the file's shap values (first run of the first command for swept keys)
    commands: List[Sweep]
    stem: str = ""

    def expand(self) -> List[Tuple[Dict[str, Any], Dict[str, Any]]]:
        """Every planned run, in the original expander's order: (its full shap values, the values its
        command sets on the command line, in the command's order)."""
        out = []
        for sweep in self.commands:
            keys = [key for key, _ in sweep]
            swept = {key for key, _ in self.swept(sweep)}
            for combo in itertools.product(*(values for _, values in sweep)):
                values = dict(zip(keys, combo))
                out.append(({**self.shap, "explainer_type": self.explainer, **values},
                            {key: value for key, value in values.items() if key in swept}))
        return out

    def swept(self, sweep: Sweep) -> Sweep:
        """The keys a command must set on the command line (those not already the file's value)."""
        return [(key, values) for key, values in sweep if values != [self.shap.get(key)]]


VARIANT_KEYS = ("explainer_type", "name", "num_samples", "fractions", "linear", "hierarchical",
                *(f"hierarchical_{name}" for name in HIER_FIELDS))


def _hier_ignored(prefix: str) -> Dict[str, Callable[[Any], Optional[str]]]:
    """The original's hierarchical names its parser never read (as ``prefix + name``), each with its warning."""
    return {f"{prefix}{one}": _ignored(f"the original reads '{prefix}{many}'; this value is not imported" if many
                                       else "the original never read it; not imported")
            for one, many in HIER_IGNORED.items()}


def _variants(read: _Reader, raw: Dict, shap_common: Dict[str, Any], report: Report) -> List[Variant]:
    experiments = raw.get("experiments")
    if experiments is None or experiments == []:
        report.error("experiments", "required: a non-empty array of variants")
        return []
    if not isinstance(experiments, list):
        report.error("experiments", f"expected an array of variants, got {_json_type(experiments)}")
        return []
    out = []
    for index, entry in enumerate(experiments):
        path = f"experiments[{index}]"
        if not isinstance(entry, dict):
            report.error(path, f"expected an object (one variant), got {_json_type(entry)}")
            continue
        variant = _variant(read, entry, path, index, shap_common, report)
        if variant is not None:
            out.append(variant)
    return out


def _explainer(read: _Reader, value: Any, path: str, allowed: Sequence[str]) -> Any:
    if not isinstance(value, str):
        return read.convert(value, path, "str")
    canonical = ALIASES.get(value.lower(), value.lower())
    if canonical not in allowed:
        aliases = ", ".join(f"{a}->{c}" for a, c in ALIASES.items() if c in allowed)
        read.report.error(path, f"{json.dumps(value)} is not an explainer here; one of: {', '.join(allowed)} "
                                f"(aliases: {aliases})")
        return _BAD
    return canonical


def _variant(read: _Reader, entry: Dict, path: str, index: int, shap_common: Dict[str, Any],
             report: Report) -> Optional[Variant]:
    n_errors = len(report.errors)
    read.keys(entry, path, VARIANT_KEYS, {
        "fraction": _ignored("the original reads the list 'fractions'; this value is not imported"),
        **_hier_ignored("hierarchical_"),
    })
    if "explainer_type" in entry:
        explainer = _explainer(read, entry["explainer_type"], f"{path}.explainer_type", EXPLAINERS)
    else:
        explainer = ORIGINAL["explainer_type"]
        report.warn(f"{path}.explainer_type", "not given: the original's default is limited_mc; imported so")
    name = read.get(entry, "name", path, "str", None, nullable=True) or None  # "": no name, as in the original
    lists = {
        "num_samples": read.get_list(entry, "num_samples", path, "int", check=_count),
        "fraction": read.get_list(entry, "fractions", path, "float", check=_unit),
        "linear": read.get_list(entry, "linear", path, "float", check=_linear),
    }
    if entry.get("num_samples") == []:
        report.error(f"{path}.num_samples", "must be a non-empty array (one run per entry)")
    if explainer == "hierarchical":
        hier = _hierarchical_fields(read, entry, path, report)
    elif explainer is not _BAD:
        hier = {}
        for key in [k for k in entry if k.startswith("hierarchical") and k in VARIANT_KEYS]:
            report.warn(f"{path}.{key}", f"ignored: {explainer} is not hierarchical (the original ignored it too)")
    if len(report.errors) > n_errors or explainer is _BAD:
        return None

    shap: Dict[str, Any] = {**shap_common, "name": name, "num_samples": None, "fraction": None, "linear": None}
    json_key = {"num_samples": "num_samples", "fraction": "fractions", "linear": "linear"}
    if explainer in BUDGET_FREE:
        for key, values in lists.items():
            if values:
                report.warn(f"{path}.{json_key[key]}", f"ignored: {explainer} takes no budget list (the original "
                                                       "ignored it too)")
    if explainer == "exact":
        commands: List[Sweep] = [[]]
    elif explainer == "hierarchical":
        commands = _hierarchical(hier, path, shap, report)
        if commands is None:
            return None
    else:
        commands = [[(key, values if key == kind else [None]) for key in ("num_samples", "fraction", "linear")]
                    for kind, values in lists.items() if values]
        if not commands:
            report.error(path, f"{explainer} needs a budget list: num_samples, fractions or linear")
            return None
    if "mc" in (explainer.split("_")[-1], str(shap.get("shap_type")).split("_")[-1],
                str(shap.get("first_layer_type")).split("_")[-1]):
        report.warn(path, "the original's MC estimated Banzhaf values (uniform masks, difference of means); "
                          "imported as Shapley (shap.estimand=shapley) — append shap.estimand=banzhaf to the "
                          "commands to reproduce the original's estimand")
    for key, values in commands[0]:
        shap[key] = values[0]
    return Variant(index=index, name=name, explainer=explainer, shap=shap, commands=commands)


def _hierarchical_fields(read: _Reader, entry: Dict, path: str, report: Report) -> Dict[str, Tuple[str, Any]]:
    """Hierarchical sweeps from the nested block or the flat keys (flat wins, as in the original)."""
    block_path = f"{path}.hierarchical"
    block = read.section(entry, "hierarchical", path)
    read.keys(block, block_path, HIER_FIELDS, _hier_ignored(""))
    found: Dict[str, Tuple[str, Any]] = {}
    for name in HIER_FIELDS:
        flat = f"hierarchical_{name}"
        if flat in entry:
            source, key, where = entry, flat, path
            if name in block:
                report.warn(f"{block_path}.{name}", f"ignored: {path}.{flat} is also given and the original "
                                                    "reads the flat key")
        elif name in block:
            source, key, where = block, name, block_path
        else:
            continue
        at = _join(where, key)
        if name in ("shap_type", "first_layer_type"):
            raw = source[key]
            unset = raw is None or raw == "" or (name == "first_layer_type" and str(raw).lower() == "none")
            if unset:  # the original's "unset": inner type limited_neyman, no first layer
                value = None
            else:
                value = _explainer(read, raw, at, HIER_LAYER_TYPES)
        elif name == "use_importance_sampling":
            value = read.convert(source[key], at, "bool")
            if value is False:
                report.error(at, "false: the original requires importance sampling (true)")
        elif name == "ks":
            value = read.get_list(source, key, where, "int", check=_group_count, where=at)
        elif name.endswith("num_samples"):
            value = read.get_list(source, key, where, "int", check=_count, where=at)
        else:
            value = read.get_list(source, key, where, "float", check=_unit, where=at)
            raw_list = source[key]
            if isinstance(raw_list, list):
                shap_key = name[:-1]  # shap_fractions -> shap_fraction, importance_min_fractions -> ...
                for i, item in enumerate(raw_list):
                    if isinstance(item, int) and not isinstance(item, bool):
                        report.warn(f"{at}[{i}]", f"integer {item}: the original named the run directory with "
                                                  f"'{hier_slug_part(shap_key, item)}', this app with "
                                                  f"'{hier_slug_part(shap_key, float(item))}' (a fraction is a "
                                                  "number): write it as a float to keep the name")
        found[name] = (at, value)
    return found


def _hierarchical(hier: Dict[str, Tuple[str, Any]], path: str, shap: Dict[str, Any],
                  report: Report) -> Optional[List[Sweep]]:
    def value(name: str, default: Any = None) -> Any:
        return hier[name][1] if name in hier and hier[name][1] is not None else default

    ks = value("ks")
    if not ks:
        report.error(f"{path}.hierarchical.ks", "required for hierarchical: an array of k >= 2 (or "
                                                "hierarchical_ks)")
        return None
    shap_type = value("shap_type", ORIGINAL["hierarchical_shap_type"])
    first_type = value("first_layer_type")
    inner_ns, inner_fr = value("shap_num_samples") or [], value("shap_fractions") or []
    fl_ns, fl_fr = value("first_layer_num_samples") or [], value("first_layer_fractions") or []
    imps = value("importance_min_fractions") or list(ORIGINAL["importance_min_fractions"])
    if first_type is None:
        for name in ("first_layer_num_samples", "first_layer_fractions"):
            if value(name):
                report.warn(hier[name][0], "ignored: no first_layer_type, so the original ignored the "
                                           "first-layer budget too")
        fl_ns, fl_fr = [], []
    if shap_type != "exact" and not inner_ns and not inner_fr:
        report.warn(path, f"no inner budget (shap_num_samples / shap_fractions): the original ran {shap_type} "
                          "with its automatic budget; imported without one, which this app runs as the minimal "
                          "budget per inner game (num_samples=-1: empty + leave-one-outs) — append "
                          "shap.shap_num_samples=N to the commands to choose one (the run slug then changes)")
    for label, ns, fr in (("shap", inner_ns, inner_fr), ("first_layer", fl_ns, fl_fr)):
        if ns and fr:
            report.warn(path, f"both {label}_num_samples and {label}_fractions: the original ran their product, "
                              f"with both set in each run; this app refuses runs with both (--check reports it)")
    shap.update({"k": None, "shap_type": shap_type, "first_layer_type": first_type, "importance_min_fraction": None,
                 "shap_num_samples": None, "shap_fraction": None, "first_layer_num_samples": None,
                 "first_layer_fraction": None})
    return [[("k", ks), ("importance_min_fraction", imps), ("shap_num_samples", inner_ns or [None]),
             ("shap_fraction", inner_fr or [None]), ("first_layer_num_samples", fl_ns or [None]),
             ("first_layer_fraction", fl_fr or [None])]]
