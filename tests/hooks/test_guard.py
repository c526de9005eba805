"""The edit guard against a real broker, with two sessions."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from slm_mesh.config import Settings
from tests.hooks.conftest import Agent
from tests.wire import LineClient


def edit(agent: Agent, path: Path, tool: str = "Edit") -> dict[str, Any] | None:
    return agent.output("PreToolUse", tool_name=tool, tool_input={"file_path": str(path)})


def test_an_edit_of_a_file_another_session_holds_is_denied_naming_the_holder(
    broker: subprocess.Popen[bytes], agent: Agent, other: Agent
) -> None:
    other.output("SessionStart", source="startup")
    other_conn = LineClient(other.settings.socket_path)
    try:
        other_conn.call("peer.attach", pid=other.pid)
        other_conn.call("peer.update", summary="moving auth to its own service")
        other_conn.call("lock.acquire", path="src/auth.ts", reason="refactoring login", ttl=600)
        answer = edit(agent, agent.cwd / "src/auth.ts")
        assert answer is not None
        out = answer["hookSpecificOutput"]
        assert (out["hookEventName"], out["permissionDecision"]) == ("PreToolUse", "deny")
        reason = out["permissionDecisionReason"]
        assert 'src/auth.ts is locked by another session, "claude-code" (claude-code)' in reason
        assert "for 10 more min" in reason
        assert '"refactoring login"' in reason and '"moving auth to its own service"' in reason
        assert "mesh_lock action=lock filePath=src/auth.ts wait=300" in reason
        assert edit(agent, agent.cwd / "src/other.ts") is None  # not held: silent
        other_conn.call("lock.release", path="src/auth.ts")
        assert edit(agent, agent.cwd / "src/auth.ts") is None  # released: allowed
    finally:
        other_conn.close()


def test_a_glob_covers_the_file_and_write_and_notebook_edits_are_guarded_too(
    broker: subprocess.Popen[bytes], agent: Agent, other: Agent
) -> None:
    other.output("SessionStart", source="startup")
    conn = LineClient(other.settings.socket_path)
    try:
        conn.call("peer.attach", pid=other.pid)
        conn.call("lock.acquire", path="src/**")
        for tool in ("Write", "MultiEdit"):
            answer = edit(agent, agent.cwd / "src/deep/new.py", tool)
            assert answer is not None and "locked by" in str(answer)
        notebook = agent.output(
            "PreToolUse",
            tool_name="NotebookEdit",
            tool_input={"notebook_path": str(agent.cwd / "src/n.ipynb")},
        )
        assert notebook is not None and "deny" in str(notebook)
        bash = agent.output("PreToolUse", tool_name="Bash", tool_input={"command": "rm src/x"})
        assert bash is None  # not an edit tool: not the guard's business
    finally:
        conn.close()


def test_a_shared_lock_does_not_refuse_an_edit(
    broker: subprocess.Popen[bytes], agent: Agent, other: Agent
) -> None:
    other.output("SessionStart", source="startup")
    conn = LineClient(other.settings.socket_path)
    try:
        conn.call("peer.attach", pid=other.pid)
        conn.call("lock.acquire", path="src/read.py", mode="shared")
        assert edit(agent, agent.cwd / "src/read.py") is None
    finally:
        conn.close()


def test_a_holder_whose_process_died_no_longer_refuses(
    settings: Settings, broker: subprocess.Popen[bytes], agent: Agent, other: Agent
) -> None:
    other.output("SessionStart", source="startup")
    conn = LineClient(settings.socket_path)
    conn.call("peer.attach", pid=other.pid)
    conn.call("lock.acquire", path="src/auth.ts")
    conn.close()
    assert edit(agent, agent.cwd / "src/auth.ts") is not None
    other.proc.kill()
    other.proc.wait()
    from tests.cli.conftest import wait_until

    wait_until(lambda: edit(agent, agent.cwd / "src/auth.ts") is None, 10, "the edit allowed")


def test_a_holder_that_is_away_gets_a_warning_not_a_refusal(
    settings: Settings, broker: subprocess.Popen[bytes], agent: Agent
) -> None:
    mcp = LineClient(settings.socket_path)
    mcp.call("peer.register", name="flaky", cwd=str(agent.cwd))
    mcp.call("lock.acquire", path="src/auth.ts")
    mcp.close()  # away for its grace period, locks kept
    from tests.cli.conftest import wait_until

    def warned() -> bool:
        answer = edit(agent, agent.cwd / "src/auth.ts")
        return answer is not None and "away" in answer["hookSpecificOutput"].get(
            "additionalContext", ""
        )

    wait_until(warned, 10, "the away holder's warning")
    answer = edit(agent, agent.cwd / "src/auth.ts")
    assert answer is not None and "permissionDecision" not in answer["hookSpecificOutput"]


def test_an_edit_another_session_made_lately_without_a_lock_is_a_warning(
    broker: subprocess.Popen[bytes], agent: Agent, other: Agent
) -> None:
    other.output("SessionStart", source="startup")
    other.output(
        "PostToolUse", tool_name="Edit", tool_input={"file_path": str(other.cwd / "src/db.py")}
    )
    agent.output("SessionStart", source="startup")
    answer = edit(agent, agent.cwd / "src/db.py")
    assert answer is not None
    out = answer["hookSpecificOutput"]
    assert "permissionDecision" not in out  # allowed
    assert out["additionalContext"] == (
        'slm-mesh: "claude-code" edited src/db.py just now without a lock; check with '
        "mesh_send to=claude-code before changing the same lines."
    )
    agent.output(
        "PostToolUse", tool_name="Write", tool_input={"file_path": str(agent.cwd / "src/mine.py")}
    )
    assert edit(agent, agent.cwd / "src/mine.py") is None  # its own edits: nothing to say


def test_auto_lock_takes_the_file_at_the_first_edit(
    settings: Settings, broker: subprocess.Popen[bytes], agent: Agent, other: Agent
) -> None:
    agent.env_extra["SLM_MESH_AUTOLOCK"] = "1"
    agent.output("SessionStart", source="startup")
    agent.output(
        "PostToolUse", tool_name="Edit", tool_input={"file_path": str(agent.cwd / "src/a.py")}
    )
    conn = LineClient(settings.socket_path)
    try:
        [lock] = conn.call("lock.list")["locks"]
    finally:
        conn.close()
    assert (lock["path"], lock["mode"]) == (str(agent.cwd / "src/a.py"), "exclusive")
    assert 899 < lock["expires_at"] - lock["acquired_at"] <= 900
    answer = edit(other, other.cwd / "src/a.py")
    assert answer is not None and answer["hookSpecificOutput"]["permissionDecision"] == "deny"
