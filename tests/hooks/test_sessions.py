"""Hooks and the agent's session: a hooks-only agent is a full peer for as long as its
process runs; hooks and the agent's MCP server are one peer; SessionEnd leaves at once."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from slm_mesh.config import Settings
from tests.cli.conftest import wait_until
from tests.hooks.conftest import Agent, agent_process, context_of
from tests.wire import LineClient


def peers(settings: Settings) -> list[dict[str, Any]]:
    client = LineClient(settings.socket_path)
    try:
        found: list[dict[str, Any]] = client.call("peer.list")["peers"]
        return found
    finally:
        client.close()


def test_a_hooks_only_agent_appears_and_disappears_with_its_process(
    settings: Settings, broker: subprocess.Popen[bytes], work: Path
) -> None:
    with agent_process(settings, work, kind="codex") as agent:
        assert agent.output("SessionStart", source="startup") is None  # nobody else: silent
        [peer] = peers(settings)
        assert (peer["name"], peer["agent"], peer["pid"]) == ("codex", "codex", agent.pid)
        assert (peer["git_root"], peer["git_branch"]) == (str(work), "feature")
        assert peer["lifetime"] == "process"
        agent.proc.kill()
        agent.proc.wait()
        wait_until(lambda: peers(settings) == [], 10, "the session to end with its process")


def test_every_hook_of_one_agent_speaks_as_one_session(
    settings: Settings, broker: subprocess.Popen[bytes], agent: Agent
) -> None:
    agent.output("SessionStart", source="startup")
    agent.output("UserPromptSubmit", prompt="hello")
    agent.output("PostToolUse", tool_name="Bash", tool_input={"command": "ls"})
    assert len(peers(settings)) == 1


def test_the_agents_mcp_server_and_its_hooks_are_one_peer(
    settings: Settings, broker: subprocess.Popen[bytes], agent: Agent
) -> None:
    mcp = LineClient(settings.socket_path)  # the agent's MCP server, registered first
    try:
        mcp.call(
            "peer.register", name="backend", agent="claude-code", cwd=str(agent.cwd), pid=agent.pid
        )
        agent.output("SessionStart", source="startup")
        [peer] = peers(settings)
        assert (peer["name"], peer["lifetime"]) == ("backend", "connection")
    finally:
        mcp.close()


def test_a_session_the_hooks_started_is_adopted_by_the_mcp_server(
    settings: Settings, broker: subprocess.Popen[bytes], agent: Agent
) -> None:
    agent.output("SessionStart", source="startup")
    mcp = LineClient(settings.socket_path)
    try:
        out = mcp.call("peer.register", agent="claude-code", cwd=str(agent.cwd), pid=agent.pid)
        assert out["resumed"] is True
        [peer] = peers(settings)
        assert (peer["peer_id"], peer["lifetime"]) == (out["peer_id"], "connection")
    finally:
        mcp.close()


def test_session_end_leaves_at_once(
    settings: Settings, broker: subprocess.Popen[bytes], agent: Agent, other: Agent
) -> None:
    mcp = LineClient(settings.socket_path)
    try:
        mcp.call("peer.register", name="leaving", cwd=str(agent.cwd), pid=agent.pid)
        mcp.call("lock.acquire", path="src/a.py")
        assert agent.output("SessionEnd", reason="clear") is None  # /clear: the agent stays
        assert [p["name"] for p in peers(settings)] == ["leaving"]
        assert agent.output("SessionEnd", reason="prompt_input_exit") is None
        assert peers(settings) == []  # no grace period
        answer = mcp.request("peer.whoami")
        assert answer["error"]["code"] == -32001  # its MCP server's connection is detached
        assert (
            other.run(
                "PreToolUse",
                tool_name="Edit",
                tool_input={"file_path": str(agent.cwd / "src/a.py")},
            ).stdout
            == ""
        )
    finally:
        mcp.close()


def test_session_end_without_a_session_is_silent(
    settings: Settings, broker: subprocess.Popen[bytes], agent: Agent
) -> None:
    done = agent.run("SessionEnd", reason="logout")
    assert (done.returncode, done.stdout) == (0, "")
    assert not (settings.data_dir / "hooks.log").exists()


def test_the_briefing_names_the_others_their_locks_and_waiting_messages(
    settings: Settings, broker: subprocess.Popen[bytes], agent: Agent, other: Agent
) -> None:
    backend = LineClient(settings.socket_path)
    try:
        backend.call(
            "peer.register",
            name="backend",
            agent="codex",
            cwd=str(agent.cwd),
            git_root=str(agent.cwd),
            git_branch="api",
            summary="splitting auth",
            pid=other.pid,
        )
        backend.call("lock.acquire", path="src/auth.ts", reason="refactoring login")
        agent.output("SessionStart", source="startup")
        backend.call("message.send", to="claude-code", body="auth is moving\nsecond line")
        text = context_of(agent.output("SessionStart", source="resume"))
    finally:
        backend.close()
    assert text.startswith('slm-mesh: you are "claude-code"')
    assert '"backend" (codex, branch api, joined just now): splitting auth' in text
    assert '- src/auth.ts: "backend", exclusive (refactoring login)' in text
    assert 'Unread messages for you (1):\n- from "backend": auth is moving' in text
    assert "second line" not in text
    assert len(text) <= 1500


def updates(settings: Settings) -> list[dict[str, Any]]:
    client = LineClient(settings.socket_path)
    try:
        read = client.call("event.read", types=["peer_updated"])
        return [event["data"] for event in read["events"]]
    finally:
        client.close()


def test_a_hooks_only_session_follows_its_agent_to_another_branch_and_repository(
    settings: Settings, broker: subprocess.Popen[bytes], agent: Agent, tmp_short: Path
) -> None:
    agent.output("SessionStart", source="startup")
    (agent.cwd / ".git" / "HEAD").write_text("ref: refs/heads/other\n")  # git switch other
    agent.output("UserPromptSubmit", prompt="go on")
    [peer] = peers(settings)
    assert (peer["cwd"], peer["git_root"], peer["git_branch"]) == (
        str(agent.cwd),
        str(agent.cwd),
        "other",
    )
    second = tmp_short / "second"
    (second / ".git").mkdir(parents=True)
    (second / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    agent.output("PostToolUse", tool_name="Bash", tool_input={"command": "ls"}, cwd=str(second))
    [peer] = peers(settings)
    assert (peer["cwd"], peer["git_root"], peer["git_branch"]) == (str(second), str(second), "main")
    client = LineClient(settings.socket_path)
    try:  # repository-scoped lookups find it where it is now, not where it started
        found = client.call("peer.list", scope="repo", git_root=str(second))["peers"]
        assert [p["peer_id"] for p in found] == [peer["peer_id"]]
        assert client.call("peer.list", scope="repo", git_root=str(agent.cwd))["peers"] == []
    finally:
        client.close()
    moves = [(u["git_root"], u["git_branch"]) for u in updates(settings)]
    assert moves == [(str(agent.cwd), "other"), (str(second), "main")]
    agent.output("PostToolUse", tool_name="Bash", tool_input={"command": "ls"}, cwd=str(second))
    assert len(updates(settings)) == 2  # nothing changed: nothing written, no event


def test_the_hooks_leave_the_workspace_the_agents_mcp_server_registered(
    settings: Settings, broker: subprocess.Popen[bytes], agent: Agent
) -> None:
    mcp = LineClient(settings.socket_path)
    try:
        mcp.call(
            "peer.register",
            name="backend",
            cwd=str(agent.cwd),
            git_root=str(agent.cwd),
            git_branch="feature",
            pid=agent.pid,
        )
        (agent.cwd / ".git" / "HEAD").write_text("ref: refs/heads/other\n")
        agent.output("UserPromptSubmit", prompt="go on")
        [peer] = peers(settings)
        assert (peer["name"], peer["git_branch"]) == ("backend", "feature")
        assert updates(settings) == []
    finally:
        mcp.close()


def test_a_hooks_only_session_on_a_branch_with_a_very_long_name_joins(
    settings: Settings, broker: subprocess.Popen[bytes], agent: Agent
) -> None:
    long = "feature/" + "step/" * 60  # git takes it; peer.register takes 256 characters
    (agent.cwd / ".git" / "HEAD").write_text(f"ref: refs/heads/{long}\n")
    agent.output("SessionStart", source="startup")
    [peer] = peers(settings)
    assert peer["git_branch"] == long[:256]
