"""The warm process as the person sees it: ``status`` shows it, ``stop`` stops it, and
never by killing an agent's server (issue 13)."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from slm_mesh.config import Settings
from tests.wire import alive, broker_env, processes_in
from tests.zygote.conftest import Session, session_pids, wait_until


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "slm_mesh", *args],
        env=broker_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def warm_pids(settings: Settings) -> list[int]:
    """The warm process of the data dir (not the sessions it forked)."""
    sessions = session_pids(settings.data_dir)
    found = []
    for pid in processes_in(settings.data_dir):
        with contextlib.suppress(OSError):
            if pid not in sessions and b"slm_mesh.zygote" in _cmdline(pid):
                found.append(pid)
    return found


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def test_status_shows_the_warm_process_and_stop_stops_it(settings: Settings, spawn: Any) -> None:
    session: Session = spawn()
    session.initialize()
    session.tool("mesh_status")
    [warm] = warm_pids(settings)
    doc = json.loads(cli(settings, "status", "--json").stdout)
    assert doc["warm"]["pid"] == warm
    assert doc["warm"]["rss_bytes"] > 10 * 1024 * 1024  # it holds the server's imports
    assert doc["warm"]["idle_exit_s"] == 600
    text = cli(settings, "status").stdout
    assert f"warm process  pid {warm}, " in text
    assert "exits 10 min after its last session" in text

    session.stdin.close()  # the agent quits
    wait_until(lambda: not session_pids(settings.data_dir), what="the session's end")
    done = cli(settings, "stop", "--json")
    assert done.returncode == 0, done.stderr
    stopped = json.loads(done.stdout)
    assert stopped["stopped"] is True
    assert stopped["warm_pid"] == warm
    assert not alive(warm)  # stop waited for it
    assert not (settings.data_dir / "zygote.json").exists()
    assert processes_in(settings.data_dir) == []


def test_stop_lets_the_agents_sessions_finish_and_the_warm_process_follows(
    settings: Settings, spawn: Any
) -> None:
    session: Session = spawn()
    session.initialize()
    session.tool("mesh_status")
    [warm] = warm_pids(settings)
    [server] = session_pids(settings.data_dir)
    done = cli(settings, "stop")
    assert done.returncode == 0, done.stderr
    assert f"the warm process pid {warm} takes no new session and exits once its 1" in done.stdout
    assert alive(server) and alive(warm)  # the agent's server was not killed
    session.stdin.close()
    wait_until(lambda: not alive(warm), what="the warm process to exit")


def test_stop_without_a_broker_still_stops_a_warm_process_left_behind(
    settings: Settings, spawn: Any
) -> None:
    session: Session = spawn()
    session.initialize()
    session.tool("mesh_status")
    [warm] = warm_pids(settings)
    session.stdin.close()
    wait_until(lambda: not session_pids(settings.data_dir), what="the session's end")
    assert cli(settings, "stop").returncode == 0  # the broker
    wait_until(lambda: not alive(warm), what="the warm process to exit")
    assert cli(settings, "stop").returncode == 3  # nothing left: no broker, no warm process
