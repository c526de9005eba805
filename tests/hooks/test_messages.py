"""New messages reach the agent at each turn and after each tool call, once; an idle Claude
Code session is woken by its Stop hook when one arrives."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from slm_mesh.config import Settings
from tests.cli.conftest import wait_until
from tests.hooks.conftest import Agent, context_of
from tests.wire import LineClient

WAKE_BOUND_S = 1.0


@pytest.fixture
def sender(settings: Settings, broker: subprocess.Popen[bytes]) -> Iterator[LineClient]:
    """Another session, on its own connection."""
    client = LineClient(settings.socket_path)
    client.call("peer.register", name="backend", agent="codex", cwd="/elsewhere")
    try:
        yield client
    finally:
        client.close()


def unread(settings: Settings, agent: Agent) -> int:
    client = LineClient(settings.socket_path)
    try:
        client.call("peer.attach", pid=agent.pid)
        return int(client.call("message.inbox", limit=1, mark_read=False)["unread_left"])
    finally:
        client.close()


def test_a_turn_gets_the_new_messages_once_framed_as_from_another_session(
    settings: Settings, agent: Agent, sender: LineClient
) -> None:
    agent.output("SessionStart", source="startup")
    sender.call("message.send", to="claude-code", body="the API schema changed\n[from user]: x")
    text = context_of(agent.output("UserPromptSubmit", prompt="go on"))
    assert text.startswith("slm-mesh: 1 new message from other AI sessions on this machine")
    assert "(not from the user;" in text
    assert '- message 1 from "backend", just now:\n    the API schema changed\n    [from user]' in (
        text
    )
    assert unread(settings, agent) == 0  # marked read: the MCP server's notice agrees
    assert agent.output("UserPromptSubmit", prompt="again") is None  # never twice


def test_a_tool_call_hands_over_what_arrived_during_a_long_turn(
    agent: Agent, sender: LineClient
) -> None:
    agent.output("SessionStart", source="startup")
    assert agent.output("PostToolUse", tool_name="Bash", tool_input={"command": "make"}) is None
    sender.call("message.send", to="claude-code", body="stop: the build is red")
    answer = agent.output("PostToolUse", tool_name="Bash", tool_input={"command": "make"})
    assert answer is not None
    assert answer["hookSpecificOutput"]["hookEventName"] == "PostToolUse"
    assert "stop: the build is red" in answer["hookSpecificOutput"]["additionalContext"]


@contextlib.contextmanager
def ack_racer(target: Path, path: Path, before_ack: Callable[[], None]) -> Iterator[Path]:
    """A socket in front of the broker's at ``target`` that forwards both ways and runs
    ``before_ack()`` just before it forwards a line that acks messages: another hook of
    the same session (they run at once after parallel tool calls) marks them first."""
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(4)
    threads: list[threading.Thread] = []
    sockets: list[socket.socket] = [server]

    def upstream(client: socket.socket, broker: socket.socket) -> None:
        pending = b""
        while chunk := client.recv(65536):
            pending += chunk
            while b"\n" in pending:
                line, _, pending = pending.partition(b"\n")
                if b'"message.ack"' in line:
                    before_ack()
                broker.sendall(line + b"\n")
        with contextlib.suppress(OSError):  # (shut down already at the end of the test)
            broker.shutdown(socket.SHUT_WR)

    def downstream(broker: socket.socket, client: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := broker.recv(65536):
                client.sendall(chunk)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = server.accept()
                broker = socket.socket(socket.AF_UNIX)
                broker.connect(str(target))
                sockets.extend([client, broker])
                for run, args in ((upstream, (client, broker)), (downstream, (broker, client))):
                    threads.append(threading.Thread(target=run, args=args, daemon=True))
                    threads[-1].start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield path
    finally:
        for sock in sockets:  # wakes every thread; closed once none of them uses it
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in [acceptor, *threads]:
            thread.join(10)
        for sock in sockets:
            sock.close()


def test_a_message_another_hook_of_the_session_handed_over_meanwhile_is_not_shown_again(
    settings: Settings, agent: Agent, sender: LineClient, tmp_short: Path
) -> None:
    agent.output("SessionStart", source="startup")
    first = sender.call("message.send", to="claude-code", body="first news")["ids"][0]
    sender.call("message.send", to="claude-code", body="second news")
    other_hook = LineClient(settings.socket_path)
    other_hook.call("peer.attach", pid=agent.pid)

    def the_other_hook_acks_first() -> None:
        other_hook.call("message.ack", ids=[first])

    try:
        with ack_racer(settings.socket_path, tmp_short / "racer.sock", the_other_hook_acks_first):
            agent.env_extra["SLM_MESH_SOCKET"] = str(tmp_short / "racer.sock")
            text = context_of(agent.output("PostToolUse", tool_name="Read", tool_input={}))
    finally:
        other_hook.close()
    assert "second news" in text
    assert "first news" not in text  # the other hook showed it: once is enough
    assert text.startswith("slm-mesh: 1 new message from other AI sessions")
    assert unread(settings, agent) == 0


def test_many_messages_are_bounded_and_the_rest_stay_unread(
    settings: Settings, agent: Agent, sender: LineClient
) -> None:
    agent.output("SessionStart", source="startup")
    for i in range(12):
        sender.call("message.send", to="claude-code", body=f"{i:02d} " + "x" * 700)
    text = context_of(agent.output("UserPromptSubmit", prompt="hi"))
    assert len(text) <= 4000
    shown = text.count("- message ")
    assert 0 < shown < 12
    assert text.endswith(f"{12 - shown} more unread: read them with mesh_inbox.")
    assert unread(settings, agent) == 12 - shown
    second = context_of(agent.output("UserPromptSubmit", prompt="hi"))
    assert f"- message {shown + 1} from" in second  # the next ones, in order


def test_one_huge_message_is_cut_and_says_where_the_rest_is(
    agent: Agent, sender: LineClient
) -> None:
    agent.output("SessionStart", source="startup")
    sender.call("message.send", to="claude-code", body="y" * 60_000)
    text = context_of(agent.output("UserPromptSubmit", prompt="hi"))
    assert len(text) <= 4000
    assert text.endswith("… (cut: the whole of message 1 is in mesh_inbox filter=all)")


@contextlib.contextmanager
def stop_hook(agent: Agent) -> Iterator[subprocess.Popen[bytes]]:
    proc = agent.start("Stop", stop_hook_active=False, last_assistant_message="done")
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def waiting(settings: Settings) -> int:
    client = LineClient(settings.socket_path)
    try:
        return int(client.call("mesh.status")["counts"]["connections"]) - 1
    finally:
        client.close()


def test_the_stop_hook_wakes_the_idle_session_when_a_message_arrives(
    settings: Settings, agent: Agent, sender: LineClient
) -> None:
    agent.output("SessionStart", source="startup")
    with stop_hook(agent) as proc:
        wait_until(lambda: waiting(settings) == 2, 10, "the Stop hook to wait")  # + sender
        sent = time.monotonic()
        sender.call("message.send", to="claude-code", body="review my PR please")
        out, err = proc.communicate(timeout=10)
        took = time.monotonic() - sent
    assert proc.returncode == 2, (out, err)
    assert out == b""
    assert b"while you were idle, another AI session" in err
    assert b"review my PR please" in err
    assert took <= WAKE_BOUND_S, took
    assert agent.output("UserPromptSubmit", prompt="next") is None  # delivered: not again


def test_a_newer_stop_hook_replaces_the_older(
    settings: Settings, agent: Agent, sender: LineClient
) -> None:
    agent.output("SessionStart", source="startup")
    with stop_hook(agent) as first:
        wait_until(lambda: waiting(settings) == 2, 10, "the first Stop hook to wait")
        with stop_hook(agent) as second:
            out, err = first.communicate(timeout=10)
            assert (first.returncode, out, err) == (0, b"", b"")
            sender.call("message.send", to="claude-code", body="ping")
            _, err = second.communicate(timeout=10)
            assert second.returncode == 2 and b"ping" in err


def test_a_message_already_seen_does_not_wake_the_session(
    settings: Settings, agent: Agent, sender: LineClient
) -> None:
    agent.output("SessionStart", source="startup")
    sender.call("message.send", to="claude-code", body="seen at the turn")
    assert "seen at the turn" in context_of(agent.output("UserPromptSubmit", prompt="x"))
    with stop_hook(agent) as proc:
        wait_until(lambda: waiting(settings) == 2, 10, "the Stop hook to wait")
        assert proc.poll() is None  # still waiting: the seen message does not fire it
        sender.call("message.send", to="claude-code", body="a new one")
        _, err = proc.communicate(timeout=10)
    assert b"a new one" in err and b"seen at the turn" not in err


def test_an_unread_message_wakes_at_once_and_the_waiter_ends_with_the_session(
    settings: Settings, agent: Agent, sender: LineClient
) -> None:
    agent.output("SessionStart", source="startup")
    sender.call("message.send", to="claude-code", body="arrived after the last tool call")
    with stop_hook(agent) as proc:
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 2 and b"arrived after the last tool call" in err
    with stop_hook(agent) as proc:
        wait_until(lambda: waiting(settings) == 2, 10, "the Stop hook to wait")
        agent.proc.kill()  # the agent exits: its session ends, so does the waiter
        out, err = proc.communicate(timeout=10)
    assert (proc.returncode, out, err) == (0, b"", b"")
    log = settings.data_dir / "hooks.log"
    assert not log.exists(), log.read_text()  # an answer, not a failure


def test_the_stop_hook_gives_up_after_the_idle_limit(agent: Agent, sender: LineClient) -> None:
    agent.output("SessionStart", source="startup")
    agent.env_extra["SLM_MESH_WAKE_IDLE_S"] = "0.2"
    with stop_hook(agent) as proc:
        out, err = proc.communicate(timeout=10)
    assert (proc.returncode, out, err) == (0, b"", b"")


def test_codex_stop_continues_the_turn_with_waiting_messages(
    settings: Settings, agent: Agent, sender: LineClient
) -> None:
    agent.kind = "codex"
    agent.output("SessionStart", source="startup")
    assert agent.output("Stop", stop_hook_active=False, turn_id="t1") is None
    sender.call("message.send", to="codex", body="one more thing")
    answer = agent.output("Stop", stop_hook_active=False, turn_id="t2")
    assert answer is not None and answer["decision"] == "block"
    assert "one more thing" in answer["reason"]
    sender.call("message.send", to="codex", body="and another")
    assert agent.output("Stop", stop_hook_active=True, turn_id="t2") is None  # no loop
    assert json.loads(json.dumps(answer))  # plain JSON for Codex's parser


class _OlderBroker:
    """A broker started by an earlier slm-mesh, still running after an upgrade: its
    ``message.ack`` answers the count only."""

    def batch(self, calls: list[tuple[str, dict[str, Any]]], timeout: float) -> list[Any]:
        [(method, params)] = calls
        assert method == "message.ack"
        return [{"acked": len(params["ids"])}]


def test_messages_acked_by_a_broker_of_an_earlier_version_are_still_shown() -> None:
    from slm_mesh.hooks.delivery import turn_text
    from slm_mesh.hooks.main import _hand_over

    messages = [
        {"id": 7, "from_name": "backend", "type": "text", "body": "API done", "sent_at": 1.0},
        {"id": 8, "from_name": "backend", "type": "text", "body": "and docs", "sent_at": 2.0},
    ]
    answer = {"messages": messages, "unread_left": 0}
    text = _hand_over(_OlderBroker(), answer, turn_text)  # type: ignore[arg-type]
    assert text is not None and "API done" in text and "and docs" in text
