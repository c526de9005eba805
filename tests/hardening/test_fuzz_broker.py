"""Hostile lines against the real broker over a real socket.

For every generated line the broker answers exactly what the JSON-RPC 2.0 rules say (the
oracle in ``jsonfuzz``): the right error code and id for a bad envelope, nothing for a
notification, an array for a batch; a call that reaches a method gets a result or a
contract error, never -32603. Right after each line the same connection's next valid call
is answered, and the broker never logs an error (an exception out of a connection task, an
internal error) for any of it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slm_mesh.config import Limits
from slm_mesh.protocol import errors
from tests.hardening.brokerthread import BrokerThread, LineSocket
from tests.hardening.jsonfuzz import DISPATCH_CODES, Expect, expect, lines, strict_loads
from tests.wire import make_settings, short_tmp

LINE_CAP = 4096
EXAMPLES = int(os.environ.get("SLM_MESH_FUZZ_EXAMPLES", "150"))
PROBE = b'{"jsonrpc":"2.0","id":"probe","method":"mesh.ping"}\n'

lines_sent = 0


@pytest.fixture(scope="module")
def broker() -> Iterator[BrokerThread]:
    with short_tmp() as tmp:
        base = make_settings(tmp)
        # No rate limit in the way, a small line cap so that some lines pass it, and a short
        # grace so that locks of earlier examples' peers never make a wait run long.
        fuzz = replace(
            base,
            grace_s=0.01,
            limits=Limits(max_line_bytes=LINE_CAP, rate_limit_per_s=1e9, rate_limit_burst=1e9),
        )
        with BrokerThread(fuzz) as b:
            yield b
            assert b.errors.take() == []
        print(f"\nfuzz: {lines_sent} hostile lines sent to the broker")


def expect_on_wire(line: bytes) -> Expect:
    """The framing's part first: the broker drops one trailing \\r and caps the length."""
    line = line.removesuffix(b"\r")
    if len(line) > LINE_CAP:
        return Expect(errors.TOO_LARGE)
    return expect(line)


def check_answer(answer: Any, want: tuple[Any, int | None]) -> None:
    id_, code = want
    assert isinstance(answer, dict) and answer.get("jsonrpc") == "2.0", answer
    assert answer["id"] == id_, answer
    if code is None:  # dispatched: a result, or a rule of the contract saying no
        if "error" in answer:
            assert answer["error"]["code"] in DISPATCH_CODES, answer
        else:
            assert "result" in answer, answer
    else:
        assert answer["error"]["code"] == code, answer


def exchange(conn: LineSocket, line: bytes) -> None:
    """Send ``line`` and a probe; check the answers to both."""
    want = expect_on_wire(line)
    conn.send(line + b"\n" + PROBE)
    answers: list[Any] = []
    probe_seen = False
    answered = [c for c in want.calls if c is not None]
    expected_messages = 1 if (want.code is not None or answered) else 0
    while not probe_seen or len(answers) < expected_messages:
        msg = conn.read_answer(parse=strict_loads)
        assert msg is not None, f"connection closed after {line!r}"
        if isinstance(msg, dict) and msg.get("id") == "probe" and msg.get("result") == "pong":
            probe_seen = True
        else:
            answers.append(msg)
    assert len(answers) == expected_messages, (line, answers)
    if want.code is not None:
        [answer] = answers
        assert answer["id"] is None and answer["error"]["code"] == want.code, answer
        if want.code == errors.TOO_LARGE:
            assert answer["error"]["data"]["limit"] == LINE_CAP
    elif want.batch and answered:
        [batch] = answers
        assert isinstance(batch, list) and len(batch) == len(answered), batch
        for answer, call in zip(batch, answered, strict=True):
            check_answer(answer, call)
    elif answered:
        check_answer(answers[0], answered[0])


hostile = lines() | st.binary(min_size=LINE_CAP - 2, max_size=LINE_CAP + 2).map(
    lambda b: b.replace(b"\n", b"x")
)


def send_all(broker: BrokerThread, batch: list[bytes]) -> None:
    """On a fresh connection, each line and its probe."""
    global lines_sent
    conn = broker.connect()
    try:
        for line in batch:
            exchange(conn, line)
            lines_sent += 1
            assert broker.errors.take() == [], line
    finally:
        conn.close()


SUPPRESS = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=SUPPRESS)
@given(batch=st.lists(hostile, min_size=1, max_size=8))
def test_every_hostile_line_gets_its_answer_and_the_connection_stays_usable(
    broker: BrokerThread, batch: list[bytes]
) -> None:
    send_all(broker, batch)


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=SUPPRESS)
@given(batch=st.lists(hostile, min_size=1, max_size=8))
def test_many_more_hostile_lines(broker: BrokerThread, batch: list[bytes]) -> None:
    send_all(broker, batch)


def test_a_client_that_vanishes_mid_push_is_forgotten_without_an_error(
    broker: BrokerThread,
) -> None:
    """A subscriber closes its socket with unread pushes waiting: the broker's write fails
    (EPIPE or ECONNRESET) and that is a client leaving, not a failure to log."""
    for _ in range(5):
        watcher = broker.connect()
        watcher.call("event.subscribe")
        writer = broker.connect()
        for i in range(50):
            writer.call("state.set", key="vanish", value="x" * 4000 + str(i))
        watcher.close()  # with pushes unread: the broker writes into a closed socket
        for i in range(50):
            writer.call("state.set", key="vanish", value=i)
        writer.close()
    assert broker.errors.take() == []
