"""Every JSON-RPC 2.0 error case of the specification, against the real broker on a real
socket. Codes are compared with the constants, never the message text."""

import json
from typing import Any

from slm_mesh.config import Settings
from slm_mesh.protocol import errors
from tests.wire import RawConn, in_process_broker


def error_of(answer: Any) -> tuple[Any, int]:
    assert isinstance(answer, dict), answer
    assert answer["jsonrpc"] == "2.0"
    assert "result" not in answer
    return answer["id"], answer["error"]["code"]


async def still_works(c: RawConn) -> None:
    assert await c.call("mesh.ping") == "pong"


async def test_invalid_json_is_a_parse_error_with_null_id(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        await c.send_line('{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')
        assert error_of(await c.read()) == (None, errors.PARSE_ERROR)
        await still_works(c)


async def test_invalid_request_object(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        await c.send_line('{"jsonrpc": "2.0", "method": 1, "params": "bar"}')
        assert error_of(await c.read()) == (None, errors.INVALID_REQUEST)
        await still_works(c)


async def test_unknown_method_is_method_not_found(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        answer = await c.request("foobar")
        assert error_of(answer) == (1, errors.METHOD_NOT_FOUND)


async def test_notifications_are_never_answered_even_when_they_fail(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        await c.send_line('{"jsonrpc": "2.0", "method": "foobar"}')
        await c.send_line('{"jsonrpc": "2.0", "method": "state.set", "params": {"key": 5}}')
        await c.send_line(
            '{"jsonrpc": "2.0", "method": "state.set", "params": {"key": "k", "value": 1}}'
        )
        # The next thing on the wire is the answer to this call: nothing else was answered.
        assert await c.call("state.get", key="k") is not None


async def test_wrong_param_types_are_invalid_params_naming_the_field(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        answer = await c.request("message.send", {"to": "all", "body": 42})
        assert error_of(answer) == (1, errors.INVALID_PARAMS)
        assert answer["error"]["data"] == {"field": "body"}
        positional = await c.request("state.get", ["k"])
        assert error_of(positional) == (2, errors.INVALID_PARAMS)


async def test_batch_with_invalid_json_is_one_parse_error(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        await c.send_line(
            '[{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
            '{"jsonrpc": "2.0", "method"]'
        )
        assert error_of(await c.read()) == (None, errors.PARSE_ERROR)
        await still_works(c)


async def test_empty_batch_is_one_invalid_request_not_an_array(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        await c.send_line("[]")
        assert error_of(await c.read()) == (None, errors.INVALID_REQUEST)


async def test_non_empty_invalid_batches_answer_each_element(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        await c.send_line("[1]")
        one = await c.read()
        assert [error_of(a) for a in one] == [(None, errors.INVALID_REQUEST)]
        await c.send_line("[1,2,3]")
        three = await c.read()
        assert [error_of(a) for a in three] == [(None, errors.INVALID_REQUEST)] * 3


async def test_mixed_batch_answers_calls_in_order_and_skips_notifications(
    settings: Settings,
) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        await c.send_line(
            json.dumps(
                [
                    {"jsonrpc": "2.0", "method": "mesh.ping", "id": "1"},
                    {"jsonrpc": "2.0", "method": "state.set", "params": {"key": "a", "value": 7}},
                    {"jsonrpc": "2.0", "method": "state.get", "params": {"key": 1}, "id": "2"},
                    {"foo": "boo"},
                    {
                        "jsonrpc": "2.0",
                        "method": "foo.get",
                        "params": {"name": "myself"},
                        "id": "5",
                    },
                    {"jsonrpc": "2.0", "method": "rpc.discover", "id": "9"},
                ]
            )
        )
        answers = await c.read()
        assert [a["id"] for a in answers] == ["1", "2", None, "5", "9"]
        assert answers[0]["result"] == "pong"
        assert answers[1]["error"]["code"] == errors.INVALID_PARAMS
        assert answers[2]["error"]["code"] == errors.INVALID_REQUEST
        assert answers[3]["error"]["code"] == errors.METHOD_NOT_FOUND
        assert answers[4]["result"]["openrpc"].startswith("1.")
        # The notification inside the batch ran.
        assert (await c.call("state.get", key="a"))["value"] == 7


async def test_batch_of_notifications_gets_no_answer_at_all(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        await c.send_line(
            json.dumps(
                [
                    {"jsonrpc": "2.0", "method": "state.set", "params": {"key": "n", "value": 1}},
                    {"jsonrpc": "2.0", "method": "mesh.ping"},
                ]
            )
        )
        got = await c.call("state.get", key="n")
        assert got["value"] == 1


async def test_calls_needing_a_session_say_not_registered(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        calls: dict[str, dict[str, Any]] = {
            "peer.whoami": {},
            "peer.update": {"summary": "x"},
            "lock.acquire": {"path": "/x"},
        }
        for method, params in calls.items():
            assert (await c.error(method, **params))["code"] == errors.NOT_REGISTERED


async def test_a_line_over_one_mebibyte_is_too_large_and_the_connection_survives(
    settings: Settings,
) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        body = "x" * (2 * 1024 * 1024)
        await c.send_line(
            json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "message.send",
                    "params": {"to": "all", "body": body},
                }
            )
        )
        answer = await c.read()
        assert error_of(answer) == (None, errors.TOO_LARGE)
        assert answer["error"]["data"]["limit"] == 1024 * 1024
        await still_works(c)


async def test_invalid_utf8_is_a_parse_error_and_the_connection_survives(
    settings: Settings,
) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        await c.send_line(
            b'{"jsonrpc":"2.0","id":1,"method":"mesh.ping","params":{"x":"\xff\xfe"}}'
        )
        assert error_of(await c.read()) == (None, errors.PARSE_ERROR)
        await still_works(c)


async def test_deeply_nested_json_is_invalid_and_the_connection_survives(
    settings: Settings,
) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        deep = "[" * 100_000 + "]" * 100_000
        await c.send_line(
            f'{{"jsonrpc":"2.0","id":1,"method":"state.set","params":{{"key":"k","value":{deep}}}}}'
        )
        assert error_of(await c.read())[1] == errors.INVALID_REQUEST
        await still_works(c)


async def test_lone_surrogate_in_a_string_is_invalid_params(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        await c.send_line(
            '{"jsonrpc":"2.0","id":1,"method":"state.set","params":{"key":"\\ud800","value":1}}'
        )
        assert error_of(await c.read()) == (1, errors.INVALID_PARAMS)
        await still_works(c)


async def test_a_nul_character_in_a_string_is_invalid_params_on_every_store(
    settings: Settings,
) -> None:
    # (PostgreSQL's text can't hold one: it was -32603 there, and stored by SQLite.)
    async with in_process_broker(settings) as b:
        c = await b.connect()
        await c.register("a")
        for method, params in (
            ("state.set", {"key": "k\x00", "value": 1}),
            ("message.send", {"to": "a", "body": "x\x00y"}),
            ("peer.update", {"summary": "s\x00"}),
            ("lock.acquire", {"path": "src/\x00a"}),
        ):
            answer = await c.request(method, params)
            assert answer["error"]["code"] == errors.INVALID_PARAMS, (method, answer)
            assert "NUL" in answer["error"]["message"]
        await still_works(c)


async def test_rpc_discover_lists_every_method_the_dispatcher_accepts(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        doc = await c.call("rpc.discover")
        for method in doc["methods"]:
            answer = await c.request(method["name"], {"__probe__": 1})
            # Every listed method exists: the dispatcher rejects the probe param instead.
            assert answer["error"]["code"] == errors.INVALID_PARAMS, method["name"]
