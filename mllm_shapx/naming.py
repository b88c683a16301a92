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


def run_slug(shap: Mapping[str, Any]) -> str:
    kind = _name(shap["explainer_type"])
    prefix = f"{shap['name']}_" if shap.get("name") else ""
    if kind == "exact":
        return shap.get("name") or "exact"
    if kind == "hierarchical":
        parts = [f"hier_{_name(shap['shap_type'])}", f"k{shap['k']}", f"imp{_num(shap['importance_min_fraction'])}"]
        optional = (
            ("first_layer_type", "fl", _name),
            ("shap_num_samples", "ns", _num),
            ("shap_fraction", "frac", _num),
            ("first_layer_num_samples", "flns", _num),
            ("first_layer_fraction", "flfrac", _num),
        )
        parts += [tag + fmt(shap[key]) for key, tag, fmt in optional if shap.get(key) is not None]
        return prefix + "_".join(parts)
    for key, tag in (("num_samples", "ns"), ("fraction", "frac"), ("linear", "lin")):
        if shap.get(key) is not None:
            return f"{prefix}{kind}_{tag}{_num(shap[key])}"
    return f"{prefix}{kind}"
