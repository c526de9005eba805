"""The method table: every method's params, with types and limits, in one place.

The broker's dispatcher validates params with it and ``rpc.discover`` renders it as an
OpenRPC document, so the two can never disagree. Validation fails with -32602 naming the
field (``data.field``), or -32005 for a value over a size limit (``data.limit``). A
``limit``-style param over its maximum is capped, not refused (``cap=True``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slm_mesh.protocol.errors import InvalidParams, TooLarge

_MISSING: Any = object()

# Integers of the contract are 64-bit: ids, versions, cursors and pids are stored in SQLite
# INTEGER columns, which refuse anything wider (OverflowError, an internal error).
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

# JSON Schema for each kind, used by rpc.discover.
_SCHEMAS: dict[str, dict[str, Any]] = {
    "string": {"type": "string"},
    "integer": {"type": "integer"},
    "number": {"type": "number"},
    "boolean": {"type": "boolean"},
    "object": {"type": "object"},
    "any": {},
    "string[]": {"type": "array", "items": {"type": "string"}},
    "integer[]": {"type": "array", "items": {"type": "integer"}},
}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: str
    description: str = ""
    required: bool = False
    default: Any = _MISSING
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    cap: bool = False  # above maximum: clamp instead of refusing
    max_chars: int | None = None  # too long → -32005
    max_items: int | None = None

    def schema(self) -> dict[str, Any]:
        out = dict(_SCHEMAS[self.kind])
        if self.enum:
            out["enum"] = list(self.enum)
        if self.minimum is not None:
            out["minimum"] = self.minimum
        if self.maximum is not None and not self.cap:
            out["maximum"] = self.maximum
        if self.max_chars is not None:
            out["maxLength"] = self.max_chars
        if self.default is not _MISSING and self.default is not None:
            out["default"] = self.default
        return out


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    summary: str
    params: tuple[Param, ...] = ()
    result: str = ""
    session: bool = False  # needs peer.register on this connection first (-32001)
    by_name: dict[str, Param] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        self.by_name.update({p.name: p for p in self.params})


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_int64(name: str, value: int) -> None:
    if not INT64_MIN <= value <= INT64_MAX:
        raise InvalidParams(name, f"must be a 64-bit integer ({INT64_MIN} to {INT64_MAX})")


def _check_string(name: str, value: str, max_chars: int | None) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidParams(name, "contains a lone surrogate (not valid Unicode)") from None
    if "\x00" in value:  # (PostgreSQL's text can't hold it: one rule for every store)
        raise InvalidParams(name, "contains a NUL character (\\u0000)")
    if max_chars is not None and len(value) > max_chars:
        raise TooLarge(name, max_chars, "characters")


def _validate_one(p: Param, value: Any) -> Any:
    kind = p.kind
    if kind == "string":
        if not isinstance(value, str):
            raise InvalidParams(p.name, "must be a string")
        _check_string(p.name, value, p.max_chars)
        if p.enum is not None and value not in p.enum:
            raise InvalidParams(p.name, f"must be one of {', '.join(p.enum)}")
        return value
    if kind in ("integer", "number"):
        ok = _is_int(value) if kind == "integer" else _is_number(value)
        if not ok:
            raise InvalidParams(
                p.name, f"must be a{'n integer' if kind == 'integer' else ' number'}"
            )
        if value != value or value in (float("inf"), float("-inf")):
            raise InvalidParams(p.name, "must be finite")
        if p.minimum is not None and value < p.minimum:
            raise InvalidParams(p.name, f"must be at least {p.minimum:g}")
        if p.maximum is not None and value > p.maximum:
            if not p.cap:
                raise InvalidParams(p.name, f"must be at most {p.maximum:g}")
            value = type(value)(p.maximum)
        if kind == "integer":
            _check_int64(p.name, value)
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise InvalidParams(p.name, "must be true or false")
        return value
    if kind == "object":
        if not isinstance(value, dict):
            raise InvalidParams(p.name, "must be an object")
        return value
    if kind in ("string[]", "integer[]"):
        if not isinstance(value, list):
            raise InvalidParams(p.name, "must be an array")
        if p.max_items is not None and len(value) > p.max_items:
            raise TooLarge(p.name, p.max_items, "items")
        for i, item in enumerate(value):
            if kind == "string[]":
                if not isinstance(item, str):
                    raise InvalidParams(f"{p.name}[{i}]", "must be a string")
                _check_string(f"{p.name}[{i}]", item, p.max_chars)
            elif not _is_int(item):
                raise InvalidParams(f"{p.name}[{i}]", "must be an integer")
            else:
                _check_int64(f"{p.name}[{i}]", item)
        return value
    return value  # "any"


def validate(method: Method, params: Any) -> dict[str, Any]:
    """Check ``params`` against ``method``; return them with defaults filled in.

    Raises:
        InvalidParams: wrong type, unknown or missing field (``data.field`` names it).
        TooLarge: a string or array over its size limit.
    """
    if isinstance(params, list):
        if params:
            raise InvalidParams("params", "must be an object (named params)")
        params = {}
    if not isinstance(params, dict):
        raise InvalidParams("params", "must be an object")
    for key in params:
        if key not in method.by_name:
            raise InvalidParams(key, f"unknown param for {method.name}")
    out: dict[str, Any] = {}
    for p in method.params:
        value = params.get(p.name, _MISSING)
        if value is _MISSING or (value is None and not p.required):
            if p.required:
                raise InvalidParams(p.name, "is required")
            if p.default is not _MISSING:
                out[p.name] = p.default
            continue
        out[p.name] = _validate_one(p, value)
    return out
