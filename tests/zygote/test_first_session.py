"""The first session of the day: with no warm process yet, the launcher answers
``initialize`` and ``tools/list`` itself (the server's own lines), then hands the session,
and what it read, to the server: the agent sees one server, each request answered once."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slm_mesh.config import Settings
from slm_mesh.zygote import prebuilt, wire
from tests.zygote.conftest import Session, maps_library, session_pids

SERVER_ONLY_LIBRARY = "pydantic_core"  # mapped by a process that runs the MCP server
VERSION = "2025-06-18"
PARAMS = {
    "protocolVersion": VERSION,
    "capabilities": {"roots": {}, "elicitation": {}},
    "clientInfo": {"name": "claude-code", "version": "2.1.197"},
}


@contextlib.contextmanager
def warm_start_held(settings: Settings) -> Iterator[None]:
    """Hold the lock a launcher takes to start the warm process: none can start until the
    block ends (the launcher waits for it, answering what it can)."""
    settings.data_dir.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(settings.data_dir / "zygote-start.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def line(table: dict[str, tuple[bytes, bytes]], request_id: int) -> bytes:
    head, tail = table[VERSION]
    return head + str(request_id).encode() + tail


def handshake(s: Session) -> None:
    """initialize, initialized, tools/list: each answered with the prebuilt line."""
    s.send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": PARAMS})
    assert s.stdout.readline() == line(prebuilt.INITIALIZE, 0)
    s.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    s.send({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert s.stdout.readline() == line(prebuilt.TOOLS_LIST, 1)


def call(s: Session, request_id: int, name: str) -> dict[str, Any]:
    """Send a tool call; the next line must be its answer (nothing answered twice)."""
    params = {"name": name, "arguments": {}}
    s.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})
    answer = json.loads(s.stdout.readline())
    assert answer["id"] == request_id, answer
    return dict(answer["result"]["structuredContent"])


def test_the_first_launcher_answers_the_handshake_then_hands_over_to_a_forked_server(
    settings: Settings, spawn: Any
) -> None:
    with warm_start_held(settings):
        s: Session = spawn()
        handshake(s)
        # Answered with no warm process anywhere: the launcher's own answers.
        assert not Path(wire.socket_path(settings.socket_path)).exists()
        s.send(
            {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "tools/call",
                "params": {"name": "mesh_status", "arguments": {}},
            }
        )
    # The warm process starts, forks the server, which reads the handshake again: it
    # knows its agent from clientInfo, and answers only what the launcher did not.
    answer = json.loads(s.stdout.readline())
    assert answer["id"] == 2, answer
    assert answer["result"]["structuredContent"]["you"]["agent"] == "claude-code"
    assert call(s, 3, "mesh_peers") == {"peers": []}
    [server] = session_pids(settings.data_dir)
    assert maps_library(server, SERVER_ONLY_LIBRARY)
    assert not maps_library(s.proc.pid, SERVER_ONLY_LIBRARY)
    # The server found the launcher's answers to be its own (it logs to its stderr, the
    # launcher's: the spawn fixture's sessions.log).
    log = settings.data_dir.parent / "sessions.log"
    assert "otherwise than this server" not in log.read_text()


def test_what_the_launcher_answered_goes_to_the_in_process_server_when_the_warm_one_refuses(
    settings: Settings, spawn: Any
) -> None:
    requests: list[dict[str, Any]] = []
    path = Path(wire.socket_path(settings.socket_path))
    with warm_start_held(settings):
        s: Session = spawn()
        handshake(s)
        # Then a warm process appears that refuses every spawn (as one of another
        # version would): the launcher runs the server itself, with what it read.
        refusing = socket.socket(socket.AF_UNIX)
        refusing.bind(str(path))
        refusing.listen(8)

        def refuse() -> None:
            with contextlib.suppress(OSError):
                conn, _ = refusing.accept()
                request, fds = wire.receive_with_fds(conn)
                for fd in fds:
                    os.close(fd)
                if request is not None:
                    requests.append(request)
                wire.send(conn, {"error": "bad spawn request"})
                conn.close()

        thread = threading.Thread(target=refuse, daemon=True)
        thread.start()
    try:
        you = call(s, 2, "mesh_status")["you"]
        assert you["agent"] == "claude-code"
        assert maps_library(s.proc.pid, SERVER_ONLY_LIBRARY)  # in the launcher itself
        [request] = requests
        assert set(request["early"]["answered"]) == {"0", "1"}
        assert request["early"]["input"].startswith('{"jsonrpc": "2.0", "id": 0, "method": "ini')
        log = settings.data_dir.parent / "sessions.log"  # the launcher's stderr
        assert "otherwise than this server" not in log.read_text()
    finally:
        refusing.close()
        thread.join(5)


@pytest.mark.parametrize("first", ["tools/call", "ping"])
def test_a_session_that_starts_otherwise_is_all_the_servers(
    settings: Settings, spawn: Any, first: str
) -> None:
    with warm_start_held(settings):
        s: Session = spawn()
        params = {"name": "mesh_status", "arguments": {}} if first == "tools/call" else {}
        s.send({"jsonrpc": "2.0", "id": 0, "method": first, "params": params})
        s.send({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": PARAMS})
    # Nothing was answered early: the server answers both, as it would have anyway.
    answers = [json.loads(s.stdout.readline()) for _ in range(2)]
    assert sorted(a["id"] for a in answers) == [0, 1]
    init = next(a for a in answers if a["id"] == 1)
    assert init["result"]["protocolVersion"] == VERSION
