"""JSON-RPC 2.0 over NDJSON: parse one line into calls, encode answers into one line.

Rules (JSON-RPC 2.0 specification, applied strictly):
1. A line that is not valid UTF-8 JSON is a parse error (-32700, id null), and so is a
   number no double can hold (``1e400``): it would otherwise come back as ``Infinity``.
2. A value nested deeper than ``max_depth`` is an invalid request (-32600), whether it parsed
   or blew the parser's recursion limit.
3. An array is a batch. An empty batch is one invalid request (a single error, not an
   array). Each element is checked on its own; a batch's answers form one array, or nothing
   when every element was a notification.
4. A request object needs ``"jsonrpc": "2.0"``, a string ``method`` and, if present,
   structured ``params``; its ``id`` must be a string, a number or null. A member ``id``
   makes it a call; no ``id`` member makes it a notification, which is never answered, not
   even with an error.
5. The id of an invalid request is echoed when it could be read, else it is null.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from typing import Any

from slm_mesh.protocol.errors import (
    InternalError,
    InvalidRequest,
    MeshError,
    ParseError,
)

log = logging.getLogger(__name__)

JsonId = str | int | float | None


@dataclass(frozen=True, slots=True)
class Call:
    """A request (``notification=False``: must be answered) or a notification."""

    method: str
    params: Any
    id: JsonId = None
    notification: bool = False


@dataclass(frozen=True, slots=True)
class Invalid:
    """Something that must be answered with an error without being dispatched."""

    error: MeshError
    id: JsonId = None


@dataclass(frozen=True, slots=True)
class Batch:
    items: list[Call | Invalid]


Parsed = Call | Invalid | Batch


def _too_deep(value: Any, max_depth: int) -> bool:
    """True if ``value`` nests containers deeper than ``max_depth`` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                return True
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            if depth > max_depth:
                return True
            stack.extend((v, depth + 1) for v in item)
    return False


def parse_line(line: bytes, *, max_depth: int = 64) -> Parsed:
    """Parse one NDJSON line into a call, an invalid item to answer, or a batch."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Invalid(ParseError(f"parse error: invalid UTF-8 at byte {exc.start}"))
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        return Invalid(InvalidRequest(f"invalid request: nested deeper than {max_depth} levels"))
    except ValueError as exc:
        return Invalid(ParseError(f"parse error: {exc}"))
    # Counting brackets is C-speed; the walk only runs for lines that might be deep.
    if (text.count("[") + text.count("{") > max_depth) and _too_deep(value, max_depth):
        return Invalid(InvalidRequest(f"invalid request: nested deeper than {max_depth} levels"))
    if isinstance(value, list):
        if not value:
            return Invalid(InvalidRequest("invalid request: empty batch"))
        return Batch([_parse_object(item) for item in value])
    return _parse_object(value)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # float("1e400") is inf, which would go back out as the non-JSON token Infinity.
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:32]} is out of range")
    return value


# One decoder and one encoder for every line: json.loads and json.dumps with options build
# a new one per call, a tenth of the broker's JSON time on a small call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


def _parse_object(value: Any) -> Call | Invalid:
    if not isinstance(value, dict):
        return Invalid(InvalidRequest("invalid request: expected an object"))
    has_id = "id" in value
    raw_id = value.get("id")
    id_: JsonId = raw_id if has_id and _valid_id(raw_id) else None
    if has_id and not _valid_id(raw_id):
        return Invalid(InvalidRequest("invalid request: id must be a string, number or null"))
    if value.get("jsonrpc") != "2.0":
        return Invalid(InvalidRequest('invalid request: "jsonrpc" must be "2.0"'), id_)
    method = value.get("method")
    if not isinstance(method, str):
        return Invalid(InvalidRequest('invalid request: "method" must be a string'), id_)
    params = value.get("params", {})
    if "params" in value and not isinstance(params, dict | list):
        return Invalid(InvalidRequest('invalid request: "params" must be an object'), id_)
    return Call(method=method, params=params, id=id_, notification=not has_id)


def error_for(exc: BaseException) -> dict[str, Any]:
    """The single exception-to-wire boundary: a ``MeshError`` keeps its code and data;
    anything else becomes -32603 without details (they go to the log)."""
    if isinstance(exc, MeshError):
        return exc.to_wire()
    log.error("internal error", exc_info=exc)
    return InternalError("internal error").to_wire()


def response(id_: JsonId, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "result": result}


def error_response(id_: JsonId, exc: BaseException) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "error": error_for(exc)}


def request(id_: JsonId, method: str, params: Any = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": id_, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def notification(method: str, params: Any = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def encode(message: Any) -> bytes:
    """One JSON value as one NDJSON line. ASCII-escaped, so any string (even a lone
    surrogate that came in as ``\\ud800``) always encodes."""
    return _ENCODER.encode(message).encode("ascii") + b"\n"
