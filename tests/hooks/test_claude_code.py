"""The real Claude Code CLI (pinned 2.1.197), offline against a scripted model, with the hooks
and MCP server that ``slm-mesh install claude`` wrote into a temp HOME: what reaches the
model is read off the recorded requests.

One run covers the whole turn: the briefing at session start, a message handed over after
a tool call, an edit of a held file refused (and the file untouched), an edit of a free one
let through and recorded, the agent's MCP server and its hooks as one peer, no unread
notice for a message the hooks delivered, a message that arrives as the turn ends waking
the model (the Stop hook with ``asyncRewake``: ``claude -p`` waits for it, so in print mode
it only looks, without waiting), and the session gone as soon as Claude exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slm_mesh.config import Settings
from tests.cli.conftest import wait_until
from tests.hooks.model_server import ModelServer, Turn, text, tool
from tests.outside import require
from tests.wire import LineClient, broker_env, processes_in

CLAUDE_BOUND_S = 180.0
pytestmark = pytest.mark.needs("claude")


@pytest.fixture
def claude() -> str:
    return require("claude")


@pytest.fixture
def home(tmp_short: Path) -> Path:
    path = tmp_short / "home"
    path.mkdir()
    return path


def claude_env(settings: Settings, home: Path, url: str) -> dict[str, str]:
    env = broker_env(settings)
    for name in list(env):
        if name.startswith(("ANTHROPIC_", "CLAUDE")):
            del env[name]
    env.update(
        HOME=str(home),
        ANTHROPIC_BASE_URL=url,
        ANTHROPIC_API_KEY="sk-test-offline",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


def install(settings: Settings, home: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "slm_mesh", "install", "claude"],
        env={**broker_env(settings), "HOME": str(home)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def leftovers(settings: Settings, broker: subprocess.Popen[bytes]) -> Iterator[None]:
    """At the end, the agent's warm MCP process (and anything else it left in the data
    dir): stopped by pid."""
    yield
    for pid in processes_in(settings.data_dir):
        if pid != broker.pid:
            os.kill(pid, signal.SIGTERM)
    wait_until(lambda: processes_in(settings.data_dir) == [broker.pid], 10, "them to stop")


def blocks(request: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every content block of the conversation in ``request``, with its message's role."""
    out = []
    for message in request["messages"]:
        content = message["content"]
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        out += [(message["role"], block) for block in content]
    return out


def texts(request: dict[str, Any]) -> list[str]:
    return [b["text"] for _, b in blocks(request) if b.get("type") == "text"]


def result_of(request: dict[str, Any], name: str, **arguments: Any) -> dict[str, Any]:
    """The tool result of the first call of ``name`` with ``arguments``."""
    calls = [
        b["id"]
        for _, b in blocks(request)
        if b.get("type") == "tool_use"
        and b["name"] == name
        and all(b["input"].get(k) == v for k, v in arguments.items())
    ]
    assert calls, f"no call of {name} {arguments}"
    return next(
        b
        for _, b in blocks(request)
        if b.get("type") == "tool_result" and b["tool_use_id"] == calls[0]
    )


def content_text(result: dict[str, Any]) -> str:
    content = result["content"]
    if isinstance(content, str):
        return content
    return "".join(c.get("text", "") for c in content)


@pytest.fixture
def backend(
    settings: Settings, broker: subprocess.Popen[bytes], work: Path
) -> Iterator[LineClient]:
    client = LineClient(settings.socket_path)
    client.call(
        "peer.register",
        name="backend",
        agent="codex",
        cwd=str(work),
        git_root=str(work),
        git_branch="api",
        summary="moving auth to its own service",
    )
    client.call("lock.acquire", path="src/held.py", reason="rewriting it")
    try:
        yield client
    finally:
        client.close()


def test_a_claude_code_session_meets_the_mesh_at_each_turn(
    settings: Settings,
    broker: subprocess.Popen[bytes],
    backend: LineClient,
    work: Path,
    home: Path,
    claude: str,
    leftovers: None,
) -> None:
    (work / "src" / "held.py").write_text("x = 1\n")
    (work / "src" / "free.py").write_text("y = 1\n")
    install(settings, home)
    seen: dict[str, Any] = {}

    def send_news(_: dict[str, Any]) -> None:
        backend.call("message.send", to="all", body="heads up: the schema moved to v2")

    def send_late_news(_: dict[str, Any]) -> None:
        backend.call("message.send", to="all", body="one more thing: tests are red")

    def look_at_peers(_: dict[str, Any]) -> None:
        seen["peers"] = backend.call("peer.list")["peers"]

    script = [
        Turn([tool("Read", file_path=str(work / "src/held.py"))], on_request=send_news),
        Turn([tool("Read", file_path=str(work / "src/free.py"))]),
        Turn(
            [
                tool(
                    "Edit",
                    file_path=str(work / "src/held.py"),
                    old_string="x = 1",
                    new_string="x = 2",
                )
            ]
        ),
        Turn(
            [
                tool(
                    "Edit",
                    file_path=str(work / "src/free.py"),
                    old_string="y = 1",
                    new_string="y = 2",
                )
            ]
        ),
        Turn(
            [tool("mcp__slm-mesh__mesh_status")],
            on_request=look_at_peers,
            needs_tool="mcp__slm-mesh__mesh_status",  # its MCP server may still be starting
            filler=[tool("Read", file_path=str(work / "src/free.py"))],
        ),
        # The turn ends while a message waits: the Stop hook (asyncRewake) wakes the model.
        Turn([text("All done.")], on_request=send_late_news),
        Turn([text("Noted.")]),
    ]
    server = ModelServer(script)
    with server.serve():
        done = subprocess.run(
            [
                claude,
                "-p",
                "Change x in src/held.py and y in src/free.py to 2.",
                "--output-format",
                "stream-json",
                "--verbose",
                "--permission-mode",
                "acceptEdits",
                "--allowedTools",
                "mcp__slm-mesh",
            ],
            env=claude_env(settings, home, server.url),
            cwd=work,
            capture_output=True,
            text=True,
            timeout=CLAUDE_BOUND_S,
            check=False,
        )
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    assert server.errors == []
    conversation = server.requests[-1]  # the last request holds the whole conversation
    said = texts(conversation)

    # Session start: the briefing names the other session and its lock.
    [briefing] = [t for t in said if 'slm-mesh: you are "claude-code"' in t]
    assert '"backend" (codex, branch api, joined ' in briefing
    assert "moving auth to its own service" in briefing
    assert '- src/held.py: "backend", exclusive (rewriting it)' in briefing

    # After the first tool call: the message sent meanwhile, from another session, once.
    [news] = [t for t in said if "heads up: the schema moved to v2" in t]
    assert "PostToolUse:Read hook additional context: slm-mesh: 1 new message" in news
    assert "(not from the user;" in news

    # The edit of the held file was refused, as an error tool result; the file is untouched.
    refused = result_of(conversation, "Edit", file_path=str(work / "src/held.py"))
    assert refused.get("is_error") is True
    assert "src/held.py is locked by another session" in content_text(refused)
    assert (work / "src" / "held.py").read_text() == "x = 1\n"
    allowed = result_of(conversation, "Edit", file_path=str(work / "src/free.py"))
    assert allowed.get("is_error") is not True
    assert (work / "src" / "free.py").read_text() == "y = 2\n"

    # The MCP server and the hooks were one peer, and its notice has nothing unread.
    assert [(p["agent"], p["lifetime"]) for p in seen["peers"]] == [("claude-code", "connection")]
    status = result_of(conversation, "mcp__slm-mesh__mesh_status")
    assert status.get("is_error") is not True, status
    assert "waiting: read with mesh_inbox" not in content_text(status)  # no unread notice
    assert '"unread":0' in content_text(status)  # (the broker's count agrees)

    # A message that arrived as the turn ended woke the model through the Stop hook.
    [woken] = [t for t in said if "one more thing: tests are red" in t]
    assert woken.startswith("Stop hook feedback:\n")
    assert "slm-mesh: while you were idle, another AI session on this machine sent you" in woken
    assert server.requests[-1]["messages"][-1]["role"] == "user"

    # The edit was recorded as the session's, and the session left when Claude exited.
    events = backend.call("event.read", types=["file_edited"], limit=100)["events"]
    assert [(e["data"]["name"], e["data"]["path"]) for e in events] == [
        ("claude-code", str(work / "src/free.py"))
    ]
    wait_until(lambda: backend.call("peer.list")["peers"] == [], 10, "the session to leave")
    [left] = backend.call("event.read", types=["peer_left"])["events"]
    assert left["data"]["name"] == "claude-code"
