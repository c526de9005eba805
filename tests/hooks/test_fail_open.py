"""Never in the agent's way: without a broker, with a broker that does not answer, or with
input it cannot read, a hook exits 0, prints nothing and says why in the log."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slm_mesh.broker.files import ensure_private_dir
from slm_mesh.config import Settings
from tests.cli.conftest import stop_detached
from tests.hooks.conftest import Agent, hook_argv
from tests.wire import broker_env

EVENTS: dict[str, dict[str, Any]] = {
    "UserPromptSubmit": {"prompt": "hi"},
    "PreToolUse": {"tool_name": "Edit", "tool_input": {"file_path": "/r/a.py"}},
    "PostToolUse": {"tool_name": "Edit", "tool_input": {"file_path": "/r/a.py"}},
    "Stop": {"stop_hook_active": False},
    "SessionEnd": {"reason": "logout"},
}


def log_lines(settings: Settings) -> list[str]:
    path = settings.data_dir / "hooks.log"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_without_a_broker_a_hook_lets_the_agent_go_on(
    settings: Settings, agent: Agent, event: str
) -> None:
    ensure_private_dir(settings.data_dir)
    done = agent.run(event, **EVENTS[event])
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    [line] = log_lines(settings)
    assert f"claude-code {event}: Unreachable: no broker is running" in line
    assert not settings.socket_path.exists()  # only SessionStart may start one


def test_session_start_starts_the_broker(settings: Settings, agent: Agent) -> None:
    done = agent.run("SessionStart", source="startup")
    try:
        assert (done.returncode, done.stdout) == (0, ""), done.stderr
        assert settings.socket_path.exists()
        assert agent.output("UserPromptSubmit", prompt="hi") is None  # it is the mesh now
    finally:
        pid = int((settings.data_dir / "broker.pid").read_text().split()[0])
        stop_detached(pid)


@contextlib.contextmanager
def silent_broker(path: Path) -> Iterator[socket.socket]:
    """A socket that accepts connections and never answers (a hung broker)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(16)
    try:
        yield server
    finally:
        server.close()


def test_a_broker_that_does_not_answer_is_given_up(settings: Settings, agent: Agent) -> None:
    with silent_broker(settings.socket_path):
        for event in ("PreToolUse", "UserPromptSubmit", "PostToolUse"):
            done = agent.run(event, **EVENTS[event])  # returns: it did not wait for ever
            assert (done.returncode, done.stdout) == (0, "")
    assert len(log_lines(settings)) == 3
    assert all("the broker did not answer" in line for line in log_lines(settings))


@pytest.mark.parametrize(
    "stdin", [b"", b"not json", b"[1, 2]", b'{"tool_input": ', b"\xff\xfe", b"{}" * 3]
)
def test_input_that_is_not_a_json_object_is_ignored(
    settings: Settings, agent: Agent, stdin: bytes
) -> None:
    ensure_private_dir(settings.data_dir)
    done = agent.run("PreToolUse", stdin)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert len(log_lines(settings)) == 1


def test_an_event_it_does_not_handle_is_ignored(settings: Settings, agent: Agent) -> None:
    done = agent.run("Notification", message="hello")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_a_wrong_command_line_is_a_non_blocking_error(settings: Settings, agent: Agent) -> None:
    for args in ([], ["PreToolUse", "--agent", "vim"], ["PreToolUse", "--agent"]):
        done = subprocess.run(
            hook_argv("x")[:4] + args,
            input=b"{}",
            capture_output=True,
            env=broker_env(settings),
            check=False,
        )
        assert done.returncode == 1  # never 2, which would block the agent's action
        assert done.stderr.startswith(b"usage: slm-mesh hook EVENT")


def test_the_slm_mesh_command_ends_with_the_hooks_status(settings: Settings) -> None:
    """``slm-mesh hook`` (the hook run through the installed command, which ends the
    process at once rather than returning) exits as the hook entry does."""
    command = Path(sys.executable).with_name("slm-mesh")
    for args, status in (
        (["Notification"], 0),
        (["PreToolUse", "--agent", "vim"], 1),
    ):
        done = subprocess.run(
            [str(command), "hook", *args],
            input=b"{}",
            capture_output=True,
            env=broker_env(settings),
            check=False,
        )
        assert done.returncode == status, done.stderr
        assert done.stdout == b""
        assert done.stderr.startswith(b"usage: slm-mesh hook EVENT") == (status == 1)


@pytest.mark.parametrize(
    "env", [{"SLM_MESH_WAKE_IDLE_S": "0.2"}, {"CLAUDE_CODE_ENTRYPOINT": "sdk-cli"}]
)
def test_the_stop_hook_keeps_its_idle_limit_with_a_broker_that_does_not_answer(
    settings: Settings, agent: Agent, env: dict[str, str]
) -> None:
    agent.env_extra.update(env)  # (`claude -p` waits for its Stop hook before it exits)
    with silent_broker(settings.socket_path):
        done = agent.run("Stop", **EVENTS["Stop"])  # returns: it did not wait for ever
    assert (done.returncode, done.stdout) == (0, "")
    [line] = log_lines(settings)
    assert "the broker did not answer" in line


def test_a_hooks_exchanges_share_one_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Connecting, a batch and its acknowledgements wait at most one budget together: a
    broker that answers the first and stalls on the next holds the hook no longer than
    one that never answers. A step the agent waits for anyway restarts it."""
    from slm_mesh.hooks import connection

    monkeypatch.setenv(connection.TIMEOUT_ENV, "150")
    spent = 0.1
    monkeypatch.setattr(connection, "_budget_from", time.monotonic() - spent)
    assert connection.timeout_s() <= 0.15 - spent
    monkeypatch.setattr(connection, "_budget_from", time.monotonic() - 10)
    assert connection.timeout_s() == 0.001  # spent: each exchange fails at once
    connection.restart_budget()
    assert 0.05 < connection.timeout_s() <= 0.15


def test_the_log_is_kept_to_a_bound(settings: Settings, agent: Agent) -> None:
    """With no broker every hook writes a line: past 1 MiB the log starts again, the one
    before kept as hooks.log.1."""
    from slm_mesh.hooks.main import MAX_LOG_BYTES

    ensure_private_dir(settings.data_dir)
    old = settings.data_dir / "hooks.log"
    old.write_text("x" * (MAX_LOG_BYTES + 1))
    done = agent.run("UserPromptSubmit", prompt="hi")
    assert (done.returncode, done.stdout) == (0, "")
    [line] = log_lines(settings)
    assert "Unreachable: no broker is running" in line
    assert (settings.data_dir / "hooks.log.1").stat().st_size == MAX_LOG_BYTES + 1


@pytest.mark.parametrize(
    ("value", "idle"),
    [("60", 60.0), ("", 8 * 3600.0), ("1e9", 8 * 3600.0), ("-5", 0.0), ("soon", 8 * 3600.0)],
)
def test_the_stop_hooks_wait_never_outlasts_the_timeout_install_wrote(
    monkeypatch: pytest.MonkeyPatch, value: str, idle: float
) -> None:
    from slm_mesh.hooks import main, wake
    from slm_mesh.install.agents import claude_hooks

    monkeypatch.delenv("CLAUDE_CODE_ENTRYPOINT", raising=False)
    monkeypatch.setenv(wake.WAKE_IDLE_ENV, value)
    assert main.wake_idle_s() == idle
    [stop] = claude_hooks()["Stop"][0]["hooks"]
    assert stop["timeout"] > main.wake_idle_s()  # Claude Code kills it only after
