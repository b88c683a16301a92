"""Run slugs: the directory name of a run, kept from the original runner (notebooks rely on it).

``exact`` -> ``name`` or ``exact``; sampling estimators -> ``[name_]<type>_ns<N>`` / ``_frac<f>`` /
``_lin<f>`` with ``.`` written ``_``; hierarchical ->
``[name_]hier_<shap_type>_k<k>_imp<f>[_fl<first_layer_type>][_ns<N>][_frac<f>][_flns<N>][_flfrac<f>]``.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Mapping


def _num(value: Any) -> str:
    return str(value).replace(".", "_")


def _name(value: Any) -> str:
    return value.value if isinstance(value, Enum) else str(value)


# A hierarchical slug's parts after ``hier_<shap_type>``, in order: key -> (tag, value format).
_HIER_PARTS = {
    "k": ("k", str),
    "importance_min_fraction": ("imp", _num),
    "first_layer_type": ("fl", _name),
    "shap_num_samples": ("ns", _num),
    "shap_fraction": ("frac", _num),
    "first_layer_num_samples": ("flns", _num),
    "first_layer_fraction": ("flfrac", _num),
}
_HIER_ALWAYS = ("k", "importance_min_fraction")  # the others appear only when set


def hier_slug_part(key: str, value: Any) -> str:
    """One part of a hierarchical run slug: ``hier_slug_part("shap_fraction", 0.5)`` -> ``frac0_5``."""
    tag, fmt = _HIER_PARTS[key]
    return tag + fmt(value)


def run_slug(shap: Mapping[str, Any]) -> str:
    kind = _name(shap["explainer_type"])
    prefix = f"{shap['name']}_" if shap.get("name") else ""
    if kind == "exact":
        return shap.get("name") or "exact"
    if kind == "hierarchical":
        parts = [f"hier_{_name(shap['shap_type'])}"]
        parts += [hier_slug_part(key, shap[key]) for key in _HIER_PARTS
                  if key in _HIER_ALWAYS or shap.get(key) is not None]
        return prefix + "_".join(parts)
    for key, tag in (("num_samples", "ns"), ("fraction", "frac"), ("linear", "lin")):
        if shap.get(key) is not None:
            return f"{prefix}{kind}_{tag}{_num(shap[key])}"
    return f"{prefix}{kind}"
