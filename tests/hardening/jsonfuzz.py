"""Strategies for hostile NDJSON lines, and an oracle that says, from the JSON-RPC 2.0
specification alone, what the broker must answer to each.

Shared by the synchronous fuzz tests of the protocol core and the fuzz test against the real
broker. The oracle is written from the rules in ARCHITECTURE.md §4, not from the parser, so
the two can disagree.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st

from slm_mesh.protocol import errors
from slm_mesh.protocol.table import METHOD_LIST, METHODS

MAX_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# -- JSON values ---------------------------------------------------------------------------

# Any code point, lone surrogates included (they travel as \udXXX escapes).
any_text = st.text(st.characters(exclude_categories=()), max_size=12)
huge_ints = st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30, -(10**40)])
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=12,
)

# Number tokens that JSON's grammar allows but that no double or sane integer holds.
RAW_NUMBERS = (
    "1e400",
    "-1e400",
    "2e308",
    "1e-400",
    "-0",
    "0.0e+0",
    "123456789012345678901234567890",
    "9" * 4300,
    "9" * 4301,
)
INVALID_UTF8 = (b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80")
METHOD_NAMES = [m.name for m in METHOD_LIST if m.name != "mesh.shutdown"]

# -- rendering with raw tokens -------------------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A JSON token written as is (an out-of-range number, a duplicate-key object)."""

    text: str


def render(value: Any) -> str:
    """JSON text of ``value``, where :class:`Raw` parts go in verbatim and a dict given as
    a list of pairs (``Pairs``) may repeat keys."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs):
        return "{" + ",".join(f"{json.dumps(k)}:{render(v)}" for k, v in value.items) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(render(v) for v in value) + "]"
    return json.dumps(value)


@dataclass(frozen=True)
class Pairs:
    items: tuple[tuple[str, Any], ...]


# -- requests ------------------------------------------------------------------------------


@st.composite
def params_for(draw: st.DrawFn, method: str) -> dict[str, Any]:
    """Params for ``method``: each known field absent or any JSON value, now and then an
    unknown field or a raw number token."""
    out: dict[str, Any] = {}
    for p in METHODS[method].params:
        if draw(st.booleans()):
            out[p.name] = draw(json_values | st.sampled_from(RAW_NUMBERS).map(Raw))
    if draw(st.integers(0, 9)) == 0:
        out[draw(any_text)] = draw(json_values)
    return out


@st.composite
def requests(draw: st.DrawFn) -> Any:
    """A request object with every member possibly missing or of the wrong type."""
    members: list[tuple[str, Any]] = []
    jsonrpc = draw(st.sampled_from(["2.0", "2.0", "2.0", "1.0", 2.0, None, "missing"]))
    if jsonrpc != "missing":
        members.append(("jsonrpc", jsonrpc))
    method = draw(
        st.sampled_from(METHOD_NAMES) | st.sampled_from(METHOD_NAMES) | any_text | json_values
    )
    if draw(st.integers(0, 19)):
        members.append(("method", method))
    id_kind = draw(st.integers(0, 9))
    if id_kind <= 5:
        members.append(("id", draw(st.integers() | any_text | st.none())))
    elif id_kind <= 7:
        members.append(("id", draw(json_values | st.sampled_from(RAW_NUMBERS).map(Raw))))
    if draw(st.integers(0, 3)):
        if isinstance(method, str) and method in METHODS and draw(st.integers(0, 4)):
            members.append(("params", draw(params_for(method))))
        else:
            members.append(("params", draw(json_values)))
    if draw(st.integers(0, 9)) == 0:  # a repeated member: the last one counts
        members.append(draw(st.sampled_from(members or [("id", 1)])))
        members.append(("method", draw(st.sampled_from(METHOD_NAMES))))
    draw(st.randoms(use_true_random=False)).shuffle(members)
    return Pairs(tuple(members))


@st.composite
def nested(draw: st.DrawFn) -> str:
    """Arrays and objects nested around the depth limit, or far past the parser's recursion
    limit, alone or as a request's params."""
    depth = draw(st.integers(1, 3000) | st.integers(MAX_DEPTH - 2, MAX_DEPTH + 2))
    rnd = draw(st.randoms(use_true_random=False))
    kinds = [rnd.random() < 0.5 for _ in range(depth)]
    opens = "".join("[" if k else '{"a":' for k in kinds)
    closes = "".join("]" if k else "}" for k in reversed(kinds))
    text = opens + draw(st.sampled_from(["1", "null", '"x"', "[]", "{}"])) + closes
    if draw(st.booleans()):
        head = '{"jsonrpc":"2.0","id":1,"method":"state.set","params":{"key":"k","value":'
        text = head + text + "}}"
    return text


@st.composite
def mutated(draw: st.DrawFn, text: str) -> bytes:
    """``text`` encoded, then perhaps truncated, spliced with bad UTF-8 or random bytes."""
    data = text.encode("utf-8", "surrogatepass")
    how = draw(st.integers(0, 5))
    if how == 1 and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif how == 2:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.sampled_from(INVALID_UTF8)) + data[at:]
    elif how == 3:
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    return data.replace(b"\n", b" ")


def lines() -> st.SearchStrategy[bytes]:
    """One hostile line (without its newline)."""
    request_text = requests().map(render)
    batch_text = st.lists(requests() | json_values, max_size=5).map(
        lambda items: "[" + ",".join(render(i) for i in items) + "]"
    )
    texts = (
        request_text
        | request_text
        | batch_text
        | nested()
        | json_values.map(render)
        | st.sampled_from(RAW_NUMBERS)
    )
    return (
        texts.flatmap(mutated)
        | st.binary(max_size=64).map(lambda b: b.replace(b"\n", b""))
        | st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"[]", b"[[]]", b"{}", b"[1]"])
    ).filter(lambda b: bool(b.strip().rstrip(b"\r")))


# -- the oracle ----------------------------------------------------------------------------


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(name)


def depth_of(value: Any) -> int:
    best = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            best = max(best, depth)
            stack.extend(
                (v, depth + 1) for v in (item.values() if isinstance(item, dict) else item)
            )
    return best


@dataclass(frozen=True)
class Expect:
    """What one line must get.

    ``code``: the error of the whole line (id null), or None when it is a call or a batch.
    ``calls``: for a call or a batch, one entry per element: None for a notification
    (never answered), else ``(id, code)`` where ``code`` is the envelope error or None
    when the element is dispatched (its answer is then a result or a dispatch error).
    """

    code: int | None = None
    calls: tuple[tuple[Any, int | None] | None, ...] = ()
    batch: bool = False


def expect(line: bytes) -> Expect:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return Expect(errors.PARSE_ERROR)
    try:
        value = json.loads(text, parse_constant=_no_constants, parse_float=_finite)
    except RecursionError:
        return Expect(errors.INVALID_REQUEST)
    except ValueError:
        return Expect(errors.PARSE_ERROR)
    if depth_of(value) > MAX_DEPTH:
        return Expect(errors.INVALID_REQUEST)
    if isinstance(value, list):
        if not value:
            return Expect(errors.INVALID_REQUEST)
        return Expect(calls=tuple(_expect_one(v) for v in value), batch=True)
    return Expect(calls=(_expect_one(value),))


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, int | float | str) and not isinstance(value, bool))


def _expect_one(value: Any) -> tuple[Any, int | None] | None:
    if not isinstance(value, dict):
        return (None, errors.INVALID_REQUEST)
    if "id" in value and not _valid_id(value["id"]):
        return (None, errors.INVALID_REQUEST)
    id_ = value.get("id")
    bad_envelope = (
        value.get("jsonrpc") != "2.0"
        or not isinstance(value.get("method"), str)
        or ("params" in value and not isinstance(value["params"], dict | list))
    )
    if bad_envelope:
        return (id_, errors.INVALID_REQUEST)
    if "id" not in value:
        return None  # a notification: never answered, whatever happens to it
    if value["method"] not in METHODS:
        return (id_, errors.METHOD_NOT_FOUND)
    return (id_, None)


# Codes a dispatched call may get: a param error, or a rule of the mesh saying no. Never
# -32603 (that would be a bug) nor an envelope error (the envelope was fine).
DISPATCH_CODES = frozenset(
    {
        errors.INVALID_PARAMS,
        errors.TOO_LARGE,
        errors.NOT_REGISTERED,
        errors.PEER_NOT_FOUND,
        errors.LOCK_CONFLICT,
        errors.VERSION_CONFLICT,
        errors.INVALID_REQUEST,  # peer.register twice on one connection
    }
)


def strict_loads(data: bytes) -> Any:
    """Parse what the broker wrote: strict JSON, no NaN or Infinity."""
    return json.loads(data, parse_constant=_no_constants)
