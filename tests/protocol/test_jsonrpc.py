import json

import pytest

from slm_mesh.protocol import errors, jsonrpc
from slm_mesh.protocol.jsonrpc import Batch, Call, Invalid


def parse(text: str | bytes) -> jsonrpc.Parsed:
    return jsonrpc.parse_line(text.encode() if isinstance(text, str) else text)


def test_request_with_named_params() -> None:
    got = parse('{"jsonrpc":"2.0","id":7,"method":"mesh.ping","params":{}}')
    assert got == Call("mesh.ping", {}, 7, notification=False)


def test_missing_id_makes_a_notification_and_null_id_does_not() -> None:
    note = parse('{"jsonrpc":"2.0","method":"m"}')
    assert isinstance(note, Call) and note.notification
    call = parse('{"jsonrpc":"2.0","method":"m","id":null}')
    assert isinstance(call, Call) and not call.notification and call.id is None


@pytest.mark.parametrize(
    ("line", "code"),
    [
        ('{"jsonrpc":"2.0","method":"foobar,"params":"bar","baz]', errors.PARSE_ERROR),
        ("\xff\xfe", errors.PARSE_ERROR),
        ('{"jsonrpc":"2.0","method":1,"params":"bar"}', errors.INVALID_REQUEST),
        ('{"jsonrpc":"1.0","method":"m","id":1}', errors.INVALID_REQUEST),
        ('{"method":"m","id":1}', errors.INVALID_REQUEST),
        ('{"jsonrpc":"2.0","method":"m","id":1,"params":3}', errors.INVALID_REQUEST),
        ('{"jsonrpc":"2.0","method":"m","id":true}', errors.INVALID_REQUEST),
        ('{"jsonrpc":"2.0","method":"m","id":{}}', errors.INVALID_REQUEST),
        ("[]", errors.INVALID_REQUEST),
        ("1", errors.INVALID_REQUEST),
        ('"x"', errors.INVALID_REQUEST),
        ("NaN", errors.PARSE_ERROR),
        ('{"jsonrpc":"2.0","method":"m","id":1,"params":{"x":Infinity}}', errors.PARSE_ERROR),
    ],
)
def test_malformed_lines_become_the_spec_error(line: str, code: int) -> None:
    raw = line.encode("latin-1") if line.startswith("\xff") else line.encode()
    got = jsonrpc.parse_line(raw)
    assert isinstance(got, Invalid)
    assert got.error.code == code


def test_invalid_request_echoes_a_readable_id_and_nulls_an_unreadable_one() -> None:
    echoed = parse('{"jsonrpc":"2.0","id":"abc","method":5}')
    assert isinstance(echoed, Invalid) and echoed.id == "abc"
    nulled = parse('{"jsonrpc":"2.0","id":[1],"method":"m"}')
    assert isinstance(nulled, Invalid) and nulled.id is None


def test_batch_elements_are_checked_one_by_one() -> None:
    got = parse('[{"jsonrpc":"2.0","method":"a","id":1},1,{"jsonrpc":"2.0","method":"b"}]')
    assert isinstance(got, Batch)
    first, second, third = got.items
    assert isinstance(first, Call) and first.id == 1
    assert isinstance(second, Invalid) and second.error.code == errors.INVALID_REQUEST
    assert isinstance(third, Call) and third.notification


def test_nesting_deeper_than_the_limit_is_an_invalid_request() -> None:
    ok = '{"jsonrpc":"2.0","method":"m","id":1,"params":{"v":' + "[" * 60 + "]" * 60 + "}}"
    assert isinstance(parse(ok), Call)
    deep = '{"jsonrpc":"2.0","method":"m","id":1,"params":{"v":' + "[" * 70 + "]" * 70 + "}}"
    got = parse(deep)
    assert isinstance(got, Invalid) and got.error.code == errors.INVALID_REQUEST


def test_nesting_past_the_parser_recursion_limit_is_an_invalid_request_not_a_crash() -> None:
    got = parse("[" * 200_000 + "]" * 200_000)
    assert isinstance(got, Invalid) and got.error.code == errors.INVALID_REQUEST


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    line = json.dumps({"jsonrpc": "2.0", "method": "m", "id": 1, "params": {"b": "[" * 500}})
    assert isinstance(parse(line), Call)


def test_unknown_exceptions_become_internal_error_without_details() -> None:
    wire = jsonrpc.error_for(RuntimeError("secret path /home/x"))
    assert wire == {"code": errors.INTERNAL_ERROR, "message": "internal error"}


def test_encode_is_one_ascii_line_even_for_lone_surrogates() -> None:
    out = jsonrpc.encode({"s": "\ud800 é"})
    assert out.endswith(b"\n") and out.count(b"\n") == 1
    assert json.loads(out) == {"s": "\ud800 é"}


def test_error_from_wire_gives_the_subclass_for_known_codes() -> None:
    exc = errors.error_from_wire({"code": errors.LOCK_CONFLICT, "message": "held", "data": {}})
    assert isinstance(exc, errors.LockConflict) and exc.code == errors.LOCK_CONFLICT
    odd = errors.error_from_wire({"code": -1, "message": "?"})
    assert type(odd) is errors.MeshError and odd.code == -1


def test_error_codes_are_pinned() -> None:
    classes = (
        errors.ParseError,
        errors.InvalidRequest,
        errors.MethodNotFound,
        errors.InvalidParams,
        errors.InternalError,
        errors.NotRegistered,
        errors.PeerNotFound,
        errors.LockConflict,
        errors.VersionConflict,
        errors.TooLarge,
        errors.RateLimited,
        errors.QuotaExceeded,
        errors.ShuttingDown,
        errors.Unauthorized,
        errors.StoreUnavailable,
    )
    assert [cls.code for cls in classes] == [
        -32700,
        -32600,
        -32601,
        -32602,
        -32603,
        -32001,
        -32002,
        -32003,
        -32004,
        -32005,
        -32006,
        -32007,
        -32008,
        -32010,
        -32011,
    ]
