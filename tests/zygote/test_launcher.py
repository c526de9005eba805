"""The launcher and the warm process: the forked server behaves exactly like the
in-process one, follows its agent's lifetime, and the fallback always works."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from slm_mesh.config import Settings
from slm_mesh.zygote import launcher, wire
from tests.wire import alive, broker_env, proc_stat
from tests.zygote.conftest import (
    LAUNCHER,
    Session,
    maps_library,
    session_pids,
    wait_until,
)

SERVER_ONLY_LIBRARY = "pydantic_core"  # mapped by a process that runs the MCP server


def test_the_forked_server_answers_like_the_in_process_one(settings: Settings, spawn: Any) -> None:
    fast: Session = spawn()
    fast_init = fast.initialize()
    slow: Session = spawn(SLM_MESH_NO_ZYGOTE="1")
    slow_init = slow.initialize()
    assert fast_init["result"]["capabilities"] == slow_init["result"]["capabilities"]
    assert fast_init["result"]["instructions"] == slow_init["result"]["instructions"]
    assert fast.request("tools/list")["result"] == slow.request("tools/list")["result"]
    # The fast one really ran elsewhere: its launcher never loaded the server's libraries.
    # (Its first answers may be the launcher's own, a tool call needs the server.)
    assert fast.tool("mesh_status")["you"]["name"]
    assert Path(wire.socket_path(settings.socket_path)).exists()
    assert not maps_library(fast.proc.pid, SERVER_ONLY_LIBRARY)
    assert maps_library(slow.proc.pid, SERVER_ONLY_LIBRARY)
    [server] = session_pids(settings.data_dir)
    assert maps_library(server, SERVER_ONLY_LIBRARY)


def open_files(pid: int) -> list[str]:
    """What each fd of ``pid`` above 2 is (``pipe:[ino]``, ``anon_inode:[eventpoll]``...)."""
    fds = Path(f"/proc/{pid}/fd")
    return [os.readlink(fd) for fd in fds.iterdir() if int(fd.name) > 2]


def test_sessions_and_the_warm_process_hold_no_fd_of_the_launcher_or_of_each_other(
    settings: Settings, spawn: Any
) -> None:
    read_end, write_end = os.pipe()  # a pipe the agent leaks to its MCP server, not CLOEXEC
    leaked = os.readlink(f"/proc/self/fd/{write_end}")
    try:
        s: Session = spawn(pass_fds=(write_end,))
        s.initialize()
        s.tool("mesh_status")  # the server runs: initialize alone may be the launcher's answer
    finally:
        os.close(write_end)
        os.close(read_end)
    [server] = session_pids(settings.data_dir)
    warm = int(proc_stat(server)[1])
    # The warm process outlives the launcher that started it (10 min): were it to hold
    # the agent's pipe, whoever reads that pipe would wait for EOF all that while.
    assert leaked not in open_files(warm)
    assert leaked not in open_files(server)
    # The warm process's selector stays with it: the server's one epoll is trio's.
    assert open_files(server).count("anon_inode:[eventpoll]") == 1


def test_the_server_gets_the_callers_cwd_and_git_root(
    settings: Settings, spawn: Any, tmp_short: Path
) -> None:
    repo = tmp_short / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/feature-x\n")
    work = repo / "src"
    work.mkdir()
    s: Session = spawn(cwd=work)
    s.initialize()
    me = s.tool("mesh_status")["you"]
    assert me["cwd"] == str(work)
    assert me["git_branch"] == "feature-x"
    peers = spawn(cwd=repo, SLM_MESH_NAME="other")
    peers.initialize()
    listed = peers.tool("mesh_peers", scope="repo")["peers"]
    assert [(p["name"], p["git_root"]) for p in listed] == [(me["name"], str(repo))]


def test_agent_detection_looks_at_the_launchers_real_parent(
    settings: Settings, spawn: Any, tmp_short: Path
) -> None:
    fake_agent = tmp_short / "cursor"  # a process named "cursor" starts the launcher
    fake_agent.symlink_to(os.path.realpath(sys.executable))
    relay = f"import subprocess, sys; sys.exit(subprocess.call({LAUNCHER!r}))"
    s: Session = spawn(argv=[str(fake_agent), "-c", relay])
    s.initialize(client="some-unknown-client")
    assert s.tool("mesh_status")["you"]["agent"] == "cursor"


def test_the_server_exits_when_the_agent_closes_stdin(settings: Settings, spawn: Any) -> None:
    s: Session = spawn()
    s.initialize()
    s.tool("mesh_status")  # the server runs: initialize alone may be the launcher's answer
    [server] = session_pids(settings.data_dir)
    s.stdin.close()
    assert s.proc.wait(30) == 0
    wait_until(lambda: not alive(server), 10, "the server to exit")


def test_sigterm_to_the_launcher_reaches_the_server(settings: Settings, spawn: Any) -> None:
    s: Session = spawn()
    s.initialize()
    s.tool("mesh_status")  # the server runs: initialize alone may be the launcher's answer
    [server] = session_pids(settings.data_dir)
    s.proc.send_signal(signal.SIGTERM)
    assert s.proc.wait(30) == 0
    wait_until(lambda: not alive(server), 10, "the server to exit")


def test_no_orphan_survives_a_sigkilled_launcher(settings: Settings, spawn: Any) -> None:
    s: Session = spawn()
    s.initialize()
    me = s.tool("mesh_status")["you"]
    [server] = session_pids(settings.data_dir)
    s.proc.kill()
    s.proc.wait()
    wait_until(lambda: not alive(server), 10, "the orphaned server to be stopped")
    other: Session = spawn()
    other.initialize()
    # Its peer is away (killed, not unregistered), then gone after the grace.
    peers = other.tool("mesh_peers")["peers"]
    assert [p["status"] for p in peers if p["peer_id"] == me["peer_id"]] in ([], ["away"])


def test_the_warm_process_never_lingers_as_a_zombie_of_the_first_launcher(
    settings: Settings, spawn: Any
) -> None:
    s: Session = spawn()
    s.initialize()
    s.tool("mesh_status")  # the server runs: initialize alone may be the launcher's answer
    [server] = session_pids(settings.data_dir)
    warm = int(proc_stat(server)[1])  # the server's parent
    assert int(proc_stat(warm)[1]) == s.proc.pid  # the first launcher started it
    os.kill(warm, signal.SIGKILL)
    wait_until(lambda: not Path(f"/proc/{warm}").exists(), 10, "the warm process to be reaped")
    assert s.tool("mesh_status")["you"]["name"]  # the session goes on without it


def test_with_the_fast_path_disabled_the_launcher_runs_the_server_itself(
    settings: Settings, spawn: Any
) -> None:
    s: Session = spawn(SLM_MESH_NO_ZYGOTE="1")
    s.initialize()
    assert s.tool("mesh_status")["you"]["name"]
    assert not Path(wire.socket_path(settings.socket_path)).exists()
    assert maps_library(s.proc.pid, SERVER_ONLY_LIBRARY)


def test_a_broken_warm_process_falls_back_to_the_in_process_server(
    settings: Settings, spawn: Any
) -> None:
    path = Path(wire.socket_path(settings.socket_path))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    broken = socket.socket(socket.AF_UNIX)
    broken.bind(str(path))
    broken.listen(8)

    def accept_and_hang_up() -> None:
        with contextlib.suppress(OSError):
            conn, _ = broken.accept()
            conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=accept_and_hang_up, daemon=True)
    thread.start()
    try:
        s: Session = spawn()
        s.initialize()
        assert s.tool("mesh_status")["you"]["name"]
        assert maps_library(s.proc.pid, SERVER_ONLY_LIBRARY)
    finally:
        broken.close()
        thread.join(5)


def test_a_warm_process_that_cannot_start_is_not_waited_for(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It exits with an error (here: a bad SLM_MESH_ZYGOTE_IDLE_S): the launcher serves
    in-process at once rather than wait out its start deadline, on every session."""
    for name, value in broker_env(settings, SLM_MESH_ZYGOTE_IDLE_S="soon").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(launcher, "START_TIMEOUT_S", 3600.0)
    pauses = []

    def pause(seconds: float) -> None:
        pauses.append(seconds)
        assert len(pauses) < 3_000, "still waiting for a warm process that exited"
        time.sleep(seconds)

    settings.data_dir.mkdir(mode=0o700, exist_ok=True)
    try:
        sock = launcher.connect_or_start(str(settings.data_dir), str(settings.socket_path), pause)
        assert sock is None
        assert "could not convert string to float" in (settings.data_dir / "zygote.log").read_text()
    finally:
        with contextlib.suppress(ChildProcessError):  # not reaped (before the fix)
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
