"""The client's sans-IO half of the protocol: classifying incoming lines, building requests."""

from __future__ import annotations

import json

import pytest

from slm_mesh.client.wire import (
    Malformed,
    Push,
    Response,
    encode_call,
    hello_params,
    parse_incoming,
)
from slm_mesh.protocol.errors import (
    LOCK_CONFLICT,
    VERSION_CONFLICT,
    InternalError,
    LockConflict,
    MeshError,
    TooLarge,
    VersionConflict,
)


def test_a_result_line_is_a_response_with_its_result() -> None:
    incoming = parse_incoming(b'{"jsonrpc":"2.0","id":3,"result":{"version":2}}')
    assert incoming == Response(3, result={"version": 2})
    assert isinstance(incoming, Response) and incoming.unwrap() == {"version": 2}


def test_a_null_result_is_still_a_result() -> None:
    assert parse_incoming(b'{"jsonrpc":"2.0","id":1,"result":null}') == Response(1, result=None)


def test_an_error_line_carries_the_exception_of_its_code() -> None:
    line = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 4,
            "error": {"code": LOCK_CONFLICT, "message": "held", "data": {"holders": []}},
        }
    ).encode()
    incoming = parse_incoming(line)
    assert isinstance(incoming, Response) and isinstance(incoming.error, LockConflict)
    assert incoming.error.data == {"holders": []}
    with pytest.raises(LockConflict):
        incoming.unwrap()


def test_each_application_code_maps_to_its_class() -> None:
    line = b'{"jsonrpc":"2.0","id":1,"error":{"code":%d,"message":"m"}}' % VERSION_CONFLICT
    incoming = parse_incoming(line)
    assert isinstance(incoming, Response) and type(incoming.error) is VersionConflict


def test_an_unknown_code_keeps_its_code_on_a_plain_mesh_error() -> None:
    incoming = parse_incoming(b'{"jsonrpc":"2.0","id":1,"error":{"code":-31999,"message":"m"}}')
    assert isinstance(incoming, Response)
    assert type(incoming.error) is MeshError and incoming.error.code == -31999


def test_a_malformed_error_object_becomes_an_internal_error() -> None:
    incoming = parse_incoming(b'{"jsonrpc":"2.0","id":1,"error":"boom"}')
    assert isinstance(incoming, Response) and isinstance(incoming.error, InternalError)


def test_a_notification_is_a_push_with_params_defaulting_to_empty() -> None:
    assert parse_incoming(b'{"jsonrpc":"2.0","method":"event","params":{"seq":1}}') == Push(
        "event", {"seq": 1}
    )
    assert parse_incoming(b'{"jsonrpc":"2.0","method":"mesh.shutdown"}') == Push(
        "mesh.shutdown", {}
    )


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"id": 1, "result": 2}',
        b'{"jsonrpc": "2.0", "id": 1}',
        b'{"jsonrpc": "2.0"}',
        b"[" * 100_000,
    ],
)
def test_lines_that_are_neither_are_malformed(line: bytes) -> None:
    assert isinstance(parse_incoming(line), Malformed)


def test_a_request_is_one_ndjson_line_with_named_params() -> None:
    line = encode_call(7, "state.get", {"key": "k"}, 1024)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "state.get",
        "params": {"key": "k"},
    }
    assert json.loads(encode_call(8, "mesh.ping", None, 1024))["params"] == {}


def test_a_request_over_the_line_cap_is_refused() -> None:
    fits = encode_call(1, "m", {"v": ""}, 1024)
    room = 1024 - (len(fits) - 1)
    assert len(encode_call(1, "m", {"v": "x" * room}, 1024)) - 1 == 1024
    with pytest.raises(TooLarge):
        encode_call(1, "m", {"v": "x" * (room + 1)}, 1024)


def test_hello_carries_a_token_only_when_there_is_one() -> None:
    assert hello_params("cli", None) == {"client": "cli"}
    assert hello_params("cli", "ab") == {"client": "cli", "token": "ab"}
