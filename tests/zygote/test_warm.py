"""The warm process spoken to directly, as a launcher would: what it does when the
hand-over goes wrong."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slm_mesh.config import Settings
from slm_mesh.zygote import wire
from tests.wire import broker_env, proc_stat
from tests.zygote.conftest import session_pids, wait_until

BOUND_S = 30.0


@pytest.fixture
def warm(settings: Settings, spawn: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A warm process of the test's data dir, ready on its socket. ``spawn``'s teardown
    then stops by pid what it started (the broker) and anything else left behind."""
    settings.data_dir.mkdir(mode=0o700, exist_ok=True)
    with open(settings.data_dir.parent / "zygote.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "slm_mesh.zygote"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=broker_env(settings),
            start_new_session=True,
        )
    path = wire.socket_path(settings.socket_path)
    try:
        wait_until(lambda: _answers(path), BOUND_S, "the warm process's socket")
        yield proc
    finally:
        proc.terminate()
        proc.wait(BOUND_S)


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False
        return True


def _children(pid: int) -> list[tuple[int, str]]:
    """``(pid, state)`` of each child of ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                state, ppid = proc_stat(int(entry.name))[:2]
                if int(ppid) == pid:
                    out.append((int(entry.name), state))
    return out


def _read_to_eof(fd: int, timeout: float, what: str) -> bytes:
    """All of ``fd`` up to EOF; fails if EOF does not come within ``timeout``."""
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, left))
        if not ready:
            raise AssertionError(f"timed out waiting for {what}")
        chunk = os.read(fd, 65536)
        if not chunk:
            return data
        data += chunk


def test_a_server_whose_pid_cannot_reach_the_launcher_is_stopped(
    settings: Settings, warm: subprocess.Popen[bytes], tmp_short: Path
) -> None:
    """The launcher is gone before the warm process tells it the forked server's pid (here
    it shut its reading side: the send fails with EPIPE). Nobody would follow that server,
    and a launcher still alive serves in-process: two servers on one stdin. The warm
    process stops it, and goes on serving."""
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    stderr = os.open(tmp_short / "session.err", os.O_WRONLY | os.O_CREAT, 0o600)
    launcher = socket.socket(socket.AF_UNIX)
    try:
        launcher.connect(wire.socket_path(settings.socket_path))
        launcher.shutdown(socket.SHUT_RD)  # whatever the warm process sends now: EPIPE
        wire.send_with_fds(
            launcher,
            {
                "op": "spawn",
                "version": wire.code_version(),
                "cwd": str(tmp_short),
                "env": broker_env(settings),
                "argv": ["slm-mesh", "mcp"],
                "parent_pid": os.getpid(),
            },
            [stdin_r, stdout_w, stderr],
        )
        for fd in (stdin_r, stdout_w, stderr):
            os.close(fd)
        stdin_r = stdout_w = stderr = -1
        # stdin stays open (a server reading it would wait forever): only a stopped
        # server lets go of stdout's write end.
        assert _read_to_eof(stdout_r, BOUND_S, "the unannounced server to be stopped") == b""
        assert session_pids(settings.data_dir) == []
        wait_until(
            lambda: all(state != "Z" for _, state in _children(warm.pid)),
            BOUND_S,
            "the stopped server to be reaped",
        )
        assert warm.poll() is None
        assert _answers(wire.socket_path(settings.socket_path))
    finally:
        launcher.close()
        for fd in (stdin_r, stdin_w, stdout_r, stdout_w, stderr):
            if fd >= 0:
                os.close(fd)
