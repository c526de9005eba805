"""The protocol core under fuzzing: whatever bytes arrive, framing, JSON-RPC parsing and
param validation give only their documented results and never raise.

Documented results:
- ``LineBuffer.feed`` yields complete lines (at most the cap, no newline) or ``LineTooLong``,
  keeps at most the cap (+ a trailing ``\\r``) between feeds, and how the bytes were split
  into chunks changes nothing.
- ``parse_line`` returns a call, an invalid item (-32700 or -32600) or a batch, exactly as
  the specification's rules (the oracle in ``jsonfuzz``) say.
- ``validate`` returns the params with defaults filled in, each of its declared type and
  within its bounds (integers within 64 bits: what the store can hold), or raises
  ``InvalidParams``/``TooLarge`` naming the field.
- Every answer encodes as one line of strict JSON (no ``NaN``/``Infinity``).
"""

from __future__ import annotations

import json
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, settings

from slm_mesh.protocol import errors, jsonrpc
from slm_mesh.protocol.framing import LineBuffer, LineTooLong
from slm_mesh.protocol.jsonrpc import Batch, Call, Invalid
from slm_mesh.protocol.methods import Param, validate
from slm_mesh.protocol.table import METHOD_LIST, METHODS
from tests.hardening.jsonfuzz import (
    INT64_MAX,
    INT64_MIN,
    Expect,
    expect,
    lines,
    params_for,
    render,
    strict_loads,
)

CAP = 16
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- framing -------------------------------------------------------------------------------

segment_lengths = st.sampled_from([0, 1, CAP - 1, CAP, CAP + 1, CAP + 2, 3 * CAP]) | st.integers(
    0, 4 * CAP
)


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """Lines of lengths around the cap, some ending in \\r, some blank, with or without a
    final newline."""
    parts = []
    for _ in range(draw(st.integers(0, 8))):
        n = draw(segment_lengths)
        seg = draw(st.binary(min_size=n, max_size=n)).replace(b"\n", b"x")
        if draw(st.booleans()):
            seg += b"\r"
        parts.append(seg)
    stream = b"\n".join(parts)
    return stream + b"\n" if draw(st.booleans()) else stream


def model(stream: bytes, cap: int) -> list[bytes | LineTooLong]:
    """What framing must produce for ``stream``, worked out line by line."""
    *complete, tail = stream.split(b"\n")
    out: list[bytes | LineTooLong] = []
    for seg in complete:
        seg = seg.removesuffix(b"\r")
        if len(seg) > cap:
            out.append(LineTooLong(cap))
        elif seg.strip():
            out.append(seg)
    # The unfinished last line: already too long unless it may still be cap bytes + "\r".
    if len(tail.removesuffix(b"\r")) > cap or len(tail) > cap + 1:
        out.append(LineTooLong(cap))
    return out


def chunked(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    return [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]


@FUZZ
@given(
    stream=streams(),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
    bytewise=st.booleans(),
)
def test_framing_is_the_same_however_the_bytes_are_chunked(
    stream: bytes, cuts: list[int], bytewise: bool
) -> None:
    buf = LineBuffer(CAP)
    got: list[bytes | LineTooLong] = []
    if bytewise:  # a cut at every byte: each boundary of each line is tried
        cuts = list(range(len(stream)))
    for chunk in chunked(stream, cuts):
        got.extend(buf.feed(chunk))
        assert buf.buffered <= CAP + 1
    assert got == model(stream, CAP)
    for line in got:
        if isinstance(line, bytes):
            assert b"\n" not in line and len(line) <= CAP


@FUZZ
@given(data=st.binary(max_size=4 * CAP), cuts=st.lists(st.integers(0, 1000), max_size=8))
def test_framing_of_random_bytes_never_raises_and_stays_bounded(
    data: bytes, cuts: list[int]
) -> None:
    buf = LineBuffer(CAP)
    for chunk in chunked(data, cuts):
        for line in buf.feed(chunk):
            assert isinstance(line, LineTooLong) or len(line) <= CAP
        assert buf.buffered <= CAP + 1


def test_a_line_of_exactly_the_cap_passes_when_its_crlf_is_split_across_chunks() -> None:
    whole = b"a" * CAP + b"\r\n"
    buf = LineBuffer(CAP)
    assert [*buf.feed(whole[:-1]), *buf.feed(whole[-1:])] == [b"a" * CAP]
    assert [*buf.feed(b"a" * CAP + b"\r\r"), *buf.feed(b"\nok\n")] == [LineTooLong(CAP), b"ok"]


# -- JSON-RPC parsing ----------------------------------------------------------------------


def check_item(item: Call | Invalid, want: tuple[Any, int | None] | None) -> None:
    if want is None:
        assert isinstance(item, Call) and item.notification
        return
    id_, code = want
    if code in (None, errors.METHOD_NOT_FOUND):
        assert isinstance(item, Call) and not item.notification
        assert item.id == id_ and type(item.id) is type(id_)
        assert isinstance(item.method, str) and isinstance(item.params, dict | list)
        assert (item.method in METHODS) == (code is None)
        return
    assert isinstance(item, Invalid)
    assert item.error.code == code
    assert item.id == id_


def check_answerable(item: Call | Invalid) -> None:
    """The answer to ``item`` is one line of strict JSON that echoes its id."""
    if isinstance(item, Invalid):
        line = jsonrpc.encode(jsonrpc.error_response(item.id, item.error))
    else:
        line = jsonrpc.encode(jsonrpc.response(item.id, "pong"))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert strict_loads(line)["id"] == item.id


@FUZZ
@given(line=lines())
def test_parse_line_gives_what_the_specification_says(line: bytes) -> None:
    got = jsonrpc.parse_line(line)
    want = expect(line)
    if want.code is not None:
        assert isinstance(got, Invalid), got
        assert (got.error.code, got.id) == (want.code, None)
        check_answerable(got)
        return
    items = got.items if isinstance(got, Batch) else [got]
    assert isinstance(got, Batch) == want.batch
    assert len(items) == len(want.calls)
    for item, call in zip(items, want.calls, strict=True):
        check_item(item, call)
        check_answerable(item)


@pytest.mark.parametrize("number", ["1e400", "-1e400", "2e308", "1" + "0" * 400 + ".0", "9" * 4301])
def test_a_number_no_double_or_int_can_hold_is_a_parse_error(number: str) -> None:
    for line in (
        '{"jsonrpc":"2.0","id":' + number + ',"method":"mesh.ping"}',
        '{"jsonrpc":"2.0","id":1,"method":"state.set","params":{"key":"k","value":' + number + "}}",
    ):
        got = jsonrpc.parse_line(line.encode())
        assert isinstance(got, Invalid) and got.error.code == errors.PARSE_ERROR
        assert got.id is None


def test_a_duplicate_member_counts_once_and_the_last_one_wins() -> None:
    line = b'{"jsonrpc":"2.0","id":1,"method":"bogus","id":"two","method":"mesh.ping"}'
    assert jsonrpc.parse_line(line) == Call("mesh.ping", {}, "two")


# -- params --------------------------------------------------------------------------------


def conforms(p: Param, value: Any) -> bool:
    """``value`` is what ``validate`` may hand on for ``p``."""
    if p.kind == "string":
        ok = isinstance(value, str) and (p.max_chars is None or len(value) <= p.max_chars)
        return ok and (p.enum is None or value in p.enum) and _encodable(value)
    if p.kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if p.kind == "integer" and not (isinstance(value, int) and INT64_MIN <= value <= INT64_MAX):
            return False
        low = p.minimum if p.minimum is not None else float("-inf")
        high = p.maximum if p.maximum is not None else float("inf")
        return bool(low <= value <= high)
    if p.kind == "boolean":
        return isinstance(value, bool)
    if p.kind in ("string[]", "integer[]"):
        if not isinstance(value, list) or (p.max_items and len(value) > p.max_items):
            return False
        if p.kind == "string[]":
            return all(isinstance(v, str) and _encodable(v) for v in value)
        return all(
            isinstance(v, int) and not isinstance(v, bool) and INT64_MIN <= v <= INT64_MAX
            for v in value
        )
    return p.kind == "any"


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@FUZZ
@given(data=st.data(), method=st.sampled_from(METHOD_LIST))
def test_validate_gives_typed_bounded_params_or_names_the_bad_field(
    data: st.DataObject, method: Any
) -> None:
    request = {"jsonrpc": "2.0", "id": 1, "method": method.name}
    request["params"] = data.draw(params_for(method.name))
    parsed = jsonrpc.parse_line(render(request).encode())
    if isinstance(parsed, Invalid):  # a raw number the parser refused: nothing to validate
        assert parsed.error.code == errors.PARSE_ERROR
        return
    assert isinstance(parsed, Call)
    try:
        out = validate(method, parsed.params)
    except (errors.InvalidParams, errors.TooLarge) as exc:
        refused: errors.MeshError | None = exc
    else:
        refused = None
    if refused is not None:  # refused, naming the field, in an answer that encodes
        assert isinstance(refused.data["field"], str)
        strict_loads(jsonrpc.encode(jsonrpc.error_response(1, refused)))
        return
    assert set(out) <= set(method.by_name)
    for name, value in out.items():
        p = method.by_name[name]
        assert value == p.default or conforms(p, value), (name, value)
    for p in method.params:
        assert not p.required or p.name in out


# One value of each JSON type: null, boolean, integer, float, string, array, object.
JSON_TYPES: dict[str, Any] = {
    "null": None,
    "boolean": True,
    "integer": 7,
    "float": 7.5,
    "string": "s",
    "array": [],
    "object": {},
}
ACCEPTS = {
    "string": {"string"},
    "integer": {"integer"},
    "number": {"integer", "float"},
    "boolean": {"boolean"},
    "any": set(JSON_TYPES),
    "string[]": {"array"},
    "integer[]": {"array"},
    "object": {"object"},
}
VALID_SAMPLE = {
    "string": "/r/x",
    "integer": 1,
    "number": 1,
    "boolean": True,
    "any": 1,
    "string[]": ["/r/x"],
    "integer[]": [1],
}


def baseline(method: Any) -> dict[str, Any]:
    return {p.name: VALID_SAMPLE[p.kind] for p in method.params if p.required}


CASES = [
    pytest.param(m, p, t, id=f"{m.name}.{p.name}={t}")
    for m in METHOD_LIST
    for p in m.params
    for t in JSON_TYPES
]


@pytest.mark.parametrize(("method", "param", "json_type"), CASES)
def test_every_json_type_in_every_field_of_every_method(
    method: Any, param: Param, json_type: str
) -> None:
    params = {**baseline(method), param.name: JSON_TYPES[json_type]}
    accepted = json_type in ACCEPTS[param.kind] or (json_type == "null" and not param.required)
    if param.enum is not None and json_type == "string":
        accepted = False  # "s" is in no enum
    if not accepted:
        with pytest.raises(errors.InvalidParams) as info:
            validate(method, params)
        assert info.value.code == errors.INVALID_PARAMS
        assert info.value.data == {"field": param.name}
        return
    out = validate(method, params)
    if json_type != "null":
        assert conforms(param, out[param.name])


@pytest.mark.parametrize(
    ("method", "params", "field"),
    [
        ("peer.register", {"cwd": "/r", "pid": 2**63}, "pid"),
        ("message.ack", {"ids": [1, -(2**63) - 1]}, "ids[1]"),
        ("event.read", {"after": 2**64}, "after"),
        ("event.subscribe", {"after": 10**30}, "after"),
        ("message.send", {"to": "x", "body": "b", "reply_to": 2**64}, "reply_to"),
        ("state.set", {"key": "k", "value": 1, "if_version": 2**63}, "if_version"),
    ],
)
def test_an_integer_beyond_64_bits_is_invalid_params(
    method: str, params: dict[str, Any], field: str
) -> None:
    with pytest.raises(errors.InvalidParams) as info:
        validate(METHODS[method], params)
    assert info.value.data == {"field": field}


def test_a_capped_limit_far_beyond_64_bits_is_still_capped() -> None:
    assert validate(METHODS["message.inbox"], {"limit": 10**30})["limit"] == 500


def test_the_oracle_itself_knows_a_good_call_from_a_bad_one() -> None:
    """A guard against an oracle that agrees with everything."""
    assert expect(b'{"jsonrpc":"2.0","id":1,"method":"mesh.ping"}') == Expect(calls=((1, None),))
    assert expect(b'{"jsonrpc":"2.0","method":"x"}') == Expect(calls=(None,))
    assert expect(b"[1]") == Expect(calls=((None, errors.INVALID_REQUEST),), batch=True)
    assert expect(json.dumps([[[0]]] * 1).encode()).batch
    assert expect(b"\xff") == Expect(errors.PARSE_ERROR)
    assert expect(b"1e400") == Expect(errors.PARSE_ERROR)
    assert expect(b"[" * 65 + b"]" * 65) == Expect(errors.INVALID_REQUEST)
