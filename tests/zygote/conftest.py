"""Helpers for the launcher tests: raw MCP over a process's stdio, and cleanup by pid of
every process that belongs to the test's data dir (warm process, sessions, broker)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from slm_mesh.config import Settings
from tests.wire import broker_env, proc_stat, processes_in

LAUNCHER = [sys.executable, "-m", "slm_mesh", "mcp"]
BOUND_S = 60.0


def session_pids(data_dir: Path) -> list[int]:
    """Pids of the MCP servers the warm process of ``data_dir`` forked (its children that
    still carry its command line, unlike the broker it may have started)."""
    ours = processes_in(data_dir)
    warm = []
    for pid in ours:
        with contextlib.suppress(OSError):
            if b"slm_mesh.zygote" in Path(f"/proc/{pid}/cmdline").read_bytes():
                warm.append(pid)
    out = []
    for pid in warm:
        with contextlib.suppress(OSError):
            state, ppid = proc_stat(pid)[:2]
            if int(ppid) in warm and state != "Z":
                out.append(pid)
    return out


def maps_library(pid: int, name: str) -> bool:
    return name in Path(f"/proc/{pid}/maps").read_text()


def wait_until(predicate: Any, timeout: float = BOUND_S, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Session:
    """One agent session: a launcher process spoken to with raw MCP JSON lines."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        assert proc.stdin is not None
        assert proc.stdout is not None
        self.stdin: IO[bytes] = proc.stdin
        self.stdout: IO[bytes] = proc.stdout
        self.next_id = 0

    def send(self, message: dict[str, Any]) -> None:
        self.stdin.write(json.dumps(message).encode() + b"\n")
        self.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        while True:
            line = self.stdout.readline()
            assert line, "the server closed its stdout"
            answer = json.loads(line)
            if answer.get("id") == self.next_id:
                return dict(answer)

    def initialize(self, client: str = "claude-code") -> dict[str, Any]:
        answer = self.request(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": client, "version": "1.0"},
            },
        )
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return answer

    def tool(self, name: str, **arguments: Any) -> dict[str, Any]:
        answer = self.request("tools/call", {"name": name, "arguments": arguments})
        result = answer["result"]
        assert not result.get("isError"), result
        return dict(result["structuredContent"])


@pytest.fixture
def spawn(settings: Settings) -> Iterator[Any]:
    """Start launchers (``spawn(**env)``); at the end stop them and every process of the
    test's data dir by pid."""
    started: list[subprocess.Popen[bytes]] = []
    settings.data_dir.mkdir(mode=0o700, exist_ok=True)
    log = open(settings.data_dir.parent / "sessions.log", "ab")  # noqa: SIM115

    def start(
        cwd: Path | None = None,
        argv: list[str] | None = None,
        pass_fds: tuple[int, ...] = (),
        **env: str,
    ) -> Session:
        proc = subprocess.Popen(
            argv or LAUNCHER,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=broker_env(settings, **env),
            cwd=cwd,
            pass_fds=pass_fds,
        )
        started.append(proc)
        return Session(proc)

    try:
        yield start
    finally:
        for proc in started:
            with contextlib.suppress(OSError):
                assert proc.stdin is not None
                proc.stdin.close()
        for proc in started:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        # Until none is left: a server on its way out may still start a broker or a warm
        # process after the first look.
        deadline = time.monotonic() + BOUND_S
        while (pids := processes_in(settings.data_dir)) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)
        log.close()
