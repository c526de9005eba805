"""The launcher's early answers, on pipes: what it answers, what it keeps for the server,
and where it stops (slm_mesh.zygote.early)."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from slm_mesh.zygote import early, prebuilt, wire
from slm_mesh.zygote.early import EarlyAnswers, from_spawn_request, plain_initialize

LATEST = "2025-11-25"


def initialize(request_id: Any = 0, **params: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "protocolVersion": LATEST,
        "capabilities": {},
        "clientInfo": {"name": "claude-code", "version": "2.1.197"},
    }
    base.update(params)
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": base}


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def tools_list(request_id: Any = 1, **extra: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/list", **extra}


def tools_call(request_id: Any = 2) -> dict[str, Any]:
    params = {"name": "mesh_status", "arguments": {}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


class Pipes:
    """An :class:`EarlyAnswers` between two pipes: the test writes its stdin and reads
    its stdout."""

    def __init__(self) -> None:
        self.in_r, self.in_w = os.pipe()
        self.out_r, self.out_w = os.pipe()
        os.set_blocking(self.out_r, False)
        self.early = EarlyAnswers(self.in_r, self.out_w)

    def send(self, *messages: dict[str, Any] | bytes) -> bytes:
        data = b"".join(
            m if isinstance(m, bytes) else json.dumps(m).encode() + b"\n" for m in messages
        )
        os.write(self.in_w, data)
        return data

    def written(self) -> bytes:
        try:
            return os.read(self.out_r, 1 << 20)
        except BlockingIOError:
            return b""

    def settle(self) -> None:
        """Let the launcher read everything sent so far (a pause reads what is there)."""
        self.early.pause(0.0)

    def close(self) -> None:
        for fd in (self.in_r, self.in_w, self.out_r, self.out_w):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
def pipes() -> Iterator[Pipes]:
    p = Pipes()
    try:
        yield p
    finally:
        p.close()


def expected(table: dict[str, tuple[bytes, bytes]], version: str, request_id: int) -> bytes:
    head, tail = table[version]
    return head + str(request_id).encode() + tail


def test_initialize_and_tools_list_are_answered_with_the_prebuilt_lines(pipes: Pipes) -> None:
    sent = pipes.send(initialize(0), INITIALIZED, tools_list(1))
    pipes.settle()
    init = expected(prebuilt.INITIALIZE, LATEST, 0)
    tools = expected(prebuilt.TOOLS_LIST, LATEST, 1)
    assert pipes.written() == init + tools
    assert pipes.early.answered == {0: init, 1: tools}
    assert pipes.early.input == sent  # the server reads all of it again
    assert pipes.early.reading


@pytest.mark.parametrize("version", sorted(prebuilt.INITIALIZE))
def test_each_prebuilt_version_is_answered_in_its_own_version(pipes: Pipes, version: str) -> None:
    pipes.send(initialize(7, protocolVersion=version), tools_list(8, params={}))
    pipes.settle()
    answers = pipes.written().splitlines()
    assert json.loads(answers[0])["result"]["protocolVersion"] == version
    assert answers[1] + b"\n" == expected(prebuilt.TOOLS_LIST, version, 8)


def test_the_first_request_it_does_not_answer_stops_the_reading(pipes: Pipes) -> None:
    sent = pipes.send(initialize(0), tools_call(2), tools_list(3))
    pipes.settle()
    assert pipes.written() == expected(prebuilt.INITIALIZE, LATEST, 0)
    assert not pipes.early.reading
    assert pipes.early.input == sent  # read in one chunk: the server gets all of it
    pipes.send(tools_list(4))
    pipes.settle()
    assert pipes.early.input == sent  # nothing read after the stop
    assert list(pipes.early.answered) == [0]


CLAUDE_CODE: dict[str, Any] = {"roots": {}, "elicitation": {}}
CODEX: dict[str, Any] = {"elicitation": {}}


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"capabilities": CLAUDE_CODE},
        {"capabilities": CODEX, "clientInfo": {"name": "codex", "title": "Codex", "version": "1"}},
        {"capabilities": {"roots": {"listChanged": True}, "sampling": {}}},
        {"capabilities": {"experimental": {"claude/channel": {}, "x": {"a": [1]}}}},
        {"protocolVersion": "2024-11-05"},
    ],
)
def test_plain_initialize_params_are_answered(params: dict[str, Any]) -> None:
    assert plain_initialize(initialize(**params)["params"], prebuilt.INITIALIZE)


@pytest.mark.parametrize(
    "message",
    [
        initialize("0"),  # a string id: the server's own encoding of it
        initialize(True),
        initialize(1.0),
        initialize(2**60),
        initialize(protocolVersion="2026-07-28"),  # not a handshake-era version
        initialize(protocolVersion="1999-01-01"),
        initialize(protocolVersion=20251125),
        initialize(capabilities={"roots": {"listChanged": "yes"}}),
        initialize(capabilities={"sampling": {"tools": {}}}),
        initialize(capabilities={"tasks": {}}),
        initialize(capabilities={"experimental": {"x": 1}}),
        initialize(capabilities=[]),
        initialize(clientInfo={"name": "x"}),
        initialize(clientInfo={"name": "x", "version": 1}),
        initialize(clientInfo={"name": "x", "version": "1", "icons": []}),
        initialize(_meta={"progressToken": 1}),
        {**initialize(), "extra": 1},
        {**initialize(), "jsonrpc": "1.0"},
        {"jsonrpc": "2.0", "id": 0, "method": "initialize"},
        tools_list(0),  # before initialize
    ],
)
def test_anything_else_first_is_left_to_the_server(pipes: Pipes, message: dict[str, Any]) -> None:
    sent = pipes.send(message, tools_list(9))
    pipes.settle()
    assert pipes.written() == b""
    assert not pipes.early.reading
    assert pipes.early.answered == {}
    assert pipes.early.input == sent


@pytest.mark.parametrize(
    "then",
    [
        initialize(5),  # a second initialize
        tools_list(0),  # an id already used
        tools_list(6, params=None),  # "params": null is not "no params"
        tools_list(6, params={"cursor": "x"}),
        b"not json\n",
        b"[1, 2]\n",
        b"\n",
        {"jsonrpc": "2.0", "id": 6, "result": {}},  # a response: nothing was asked
        {"jsonrpc": "2.0", "method": 5},
    ],
)
def test_after_initialize_only_a_plain_tools_list_is_answered(
    pipes: Pipes, then: dict[str, Any] | bytes
) -> None:
    pipes.send(initialize(0), then, tools_list(9))
    pipes.settle()
    assert pipes.written() == expected(prebuilt.INITIALIZE, LATEST, 0)
    assert not pipes.early.reading


def test_notifications_are_kept_and_reading_goes_on(pipes: Pipes) -> None:
    cancelled = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 0}}
    sent = pipes.send(INITIALIZED, cancelled, initialize(0), tools_list(1))
    pipes.settle()
    assert list(pipes.early.answered) == [0, 1]
    assert pipes.early.input == sent


def test_a_line_in_pieces_is_answered_once_whole(pipes: Pipes) -> None:
    line = json.dumps(initialize(0)).encode() + b"\n"
    pipes.send(line[:10])
    pipes.settle()
    assert pipes.written() == b""
    assert pipes.early.reading
    pipes.send(line[10:])
    pipes.settle()
    assert pipes.written() == expected(prebuilt.INITIALIZE, LATEST, 0)


def test_end_of_input_stops_the_reading(pipes: Pipes) -> None:
    sent = pipes.send(initialize(0))
    os.close(pipes.in_w)
    pipes.settle()
    assert not pipes.early.reading
    assert pipes.early.input == sent


def test_no_more_than_the_cap_is_read(pipes: Pipes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(early, "MAX_INPUT_BYTES", 100)
    pipes.send(b"x" * 300)
    pipes.settle()
    assert len(pipes.early.input) <= 100
    assert not pipes.early.reading


def test_a_pause_without_input_waits_its_time(pipes: Pipes) -> None:
    pipes.early.pause(0.0)
    assert pipes.early.reading
    assert pipes.written() == b""


def test_what_was_read_and_answered_travels_in_the_spawn_request(pipes: Pipes) -> None:
    odd = b'{"jsonrpc":"2.0","method":"notifications/x","params":{"s":"\xc3\xa9\xff"}}\n'
    sent = pipes.send(initialize(0), odd, tools_list(1), tools_call(2))
    pipes.settle()
    line = wire.encode({"op": "spawn", **pipes.early.spawn_fields()})
    request = wire.decode(line.rstrip(b"\n"))
    assert request is not None
    assert from_spawn_request(request) == (sent, pipes.early.answered)
    assert from_spawn_request({"op": "spawn"}) == (b"", {})


@pytest.mark.parametrize(
    "bad",
    [
        {"early": []},
        {"early": {"input": 1}},
        {"early": {"input": "x", "answered": []}},
        {"early": {"input": "x", "answered": {"a": "x"}}},
        {"early": {"input": "x", "answered": {"1": 2}}},
        {"early": {"input": "\u0100"}},  # not a byte
        {"early": {"input": "x", "other": 1}},
    ],
)
def test_a_malformed_early_part_is_refused(bad: dict[str, Any]) -> None:
    assert from_spawn_request({"op": "spawn", **bad}) is None


def test_nothing_read_adds_nothing_to_the_spawn_request(pipes: Pipes) -> None:
    assert pipes.early.spawn_fields() == {}
