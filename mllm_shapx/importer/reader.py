"""Reading the legacy JSON: a small explicit schema walker that names every problem by its JSON path.

``Report`` collects errors and warnings; ``_Reader`` checks keys, types and values and converts them;
the ``_unit`` / ``_count`` / ... functions are the value checks (``None``: fine, else the problem).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from ..config import MIN_GROUPS, is_budget_count, is_linear, is_unit_fraction

_ABSENT = object()
_BAD = object()


def _values(enum) -> Tuple[str, ...]:
    return tuple(member.value for member in enum)


@dataclass
class Report:
    source: str
    errors: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path or '(top level)'}: {message}")

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{path or '(top level)'}: {message}")


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
                       (list, "array"), (dict, "object")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


_KIND = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}


def _is_kind(value: Any, kind: str) -> bool:
    if isinstance(value, bool):
        return kind == "bool"
    return {"str": isinstance(value, str), "int": isinstance(value, int),
            "float": isinstance(value, (int, float)), "bool": False}[kind]


# The budget checks use the config's ranges (mllm_shapx.config), worded for the JSON.
def _unit(v: float) -> Optional[str]:
    return None if is_unit_fraction(v) else "is outside (0, 1]"


def _linear(v: float) -> Optional[str]:
    return None if is_linear(v) else "is outside (0, 10]"


def _count(v: int) -> Optional[str]:
    return None if is_budget_count(v) else "is neither a positive count nor -1 (minimal)"


def _positive(v: float) -> Optional[str]:
    return None if v > 0 else "must be > 0"


def _non_negative(v: float) -> Optional[str]:
    return None if v >= 0 else "must be >= 0"


def _group_count(v: int) -> Optional[str]:
    return None if v >= MIN_GROUPS else "is below 2 (hierarchical needs k >= 2 groups per level)"


def _not_empty(v: str) -> Optional[str]:
    return None if v.strip() else "must not be empty"


class _Reader:
    def __init__(self, report: Report):
        self.report = report

    def section(self, parent: Mapping, key: str, path: str) -> Dict[str, Any]:
        value = parent.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.report.error(_join(path, key), f"expected an object, got {_json_type(value)}")
            return {}
        return value

    def keys(self, obj: Mapping, path: str, known: Sequence[str],
             ignored: Optional[Mapping[str, Callable[[Any], Optional[str]]]] = None) -> None:
        """Unknown keys are errors; keys the original knew but ignored are warnings (when they matter)."""
        ignored = ignored or {}
        for key in getattr(obj, "duplicates", ()):
            self.report.warn(_join(path, key), "given more than once in one object: the original used the last "
                                               "value, and so does the import")
        for key in obj:
            if key in known:
                continue
            where = _join(path, key)
            if key in ignored:
                reason = ignored[key](obj[key])
                if reason:
                    self.report.warn(where, reason)
                continue
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            self.report.error(where, f"unknown key{hint}; known here: {', '.join(known)}")

    def convert(self, value: Any, path: str, kind: str, *, nullable: bool = False,
                choices: Optional[Sequence[str]] = None, check: Optional[Callable] = None) -> Any:
        if value is None:
            if nullable:
                return None
            self.report.error(path, f"expected {_KIND[kind]}, got null")
            return _BAD
        if not _is_kind(value, kind):
            self.report.error(path, f"expected {_KIND[kind]}, got {_json_type(value)} {json.dumps(value)}")
            return _BAD
        if kind == "float":
            value = float(value)
        if choices is not None and value not in choices:
            self.report.error(path, f"{json.dumps(value)} is not one of: {', '.join(choices)}")
            return _BAD
        problem = check(value) if check else None
        if problem:
            self.report.error(path, f"{json.dumps(value)} {problem}")
            return _BAD
        return value

    def get(self, obj: Mapping, key: str, path: str, kind: str, default: Any = _ABSENT, **options) -> Any:
        if key not in obj:
            return default
        return self.convert(obj[key], _join(path, key), kind, **options)

    def get_into(self, out: Dict[str, Any], obj: Mapping, key: str, path: str, kind: str, **options) -> None:
        """``out[key]`` = the converted value when ``obj`` has ``key``; otherwise ``out`` is left as it is."""
        value = self.get(obj, key, path, kind, **options)
        if value is not _ABSENT:
            out[key] = value

    def get_list(self, obj: Mapping, key: str, path: str, kind: str, *, check: Optional[Callable] = None,
                 where: Optional[str] = None) -> Any:
        """A JSON array of ``kind`` (None when absent or null); ``_BAD`` after reporting a problem."""
        where = where or _join(path, key)
        value = obj.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            self.report.error(where, f"expected an array of {_KIND[kind][2:]}s, got {_json_type(value)} "
                                     f"{json.dumps(value)}")
            return _BAD
        items = [self.convert(item, f"{where}[{i}]", kind, check=check) for i, item in enumerate(value)]
        return _BAD if any(item is _BAD for item in items) else items


def _ignored(reason: str, when: Callable[[Any], bool] = lambda value: True) -> Callable[[Any], Optional[str]]:
    return lambda value: f"ignored: {reason}" if when(value) else None


def _set(value: Any) -> bool:
    return value not in (None, [], {}, "", False)
