"""The real Codex CLI (pinned 0.171.0), offline against a scripted Responses API, with the
hooks and MCP server entry ``slm-mesh install codex`` wrote into a temp HOME (the run
passes ``--dangerously-bypass-hook-trust``: the installer trusts nothing by itself).

One run: the briefing reaches the model as a developer message; the MCP server Codex
started gets every slm-mesh setting the hooks get (Codex scrubs its MCP servers'
environment: the entry names them) and it and the hooks are one peer; an ``apply_patch``
of a held file is blocked (the file untouched) with the holder named; a message sent
meanwhile reaches the model after the next edit; the free file's edit is recorded as the
session's; a message that waits when the turn ends continues it (the Stop hook); the
session ends when Codex exits.

Codex does not wait for an MCP server before its first request (it gives one about a
second, then goes on without it), and a scripted turn takes milliseconds: left alone,
the whole run is over before ``slm-mesh mcp`` has registered, and Codex stops it. So the
first scripted answer waits until the MCP server carries the session, as a real model's
first answer (seconds) lets it.
"""

from __future__ import annotations

import json
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
from tests.hooks.responses_server import ResponsesServer, Turn, patch, say
from tests.outside import require
from tests.wire import LineClient, broker_env, processes_in

CODEX_BOUND_S = 180.0
MCP_SERVER_BOUND_S = 60.0
pytestmark = pytest.mark.needs("codex")
HELD = "*** Begin Patch\n*** Update File: src/held.py\n@@\n-x = 1\n+x = 2\n*** End Patch\n"
FREE = "*** Begin Patch\n*** Update File: src/free.py\n@@\n-y = 1\n+y = 2\n*** End Patch\n"


@pytest.fixture
def codex() -> str:
    return require("codex")


@pytest.fixture
def leftovers(settings: Settings, broker: subprocess.Popen[bytes]) -> Iterator[None]:
    """At the end, whatever the agent left in the data dir (its MCP server): by pid."""
    yield
    for pid in processes_in(settings.data_dir):
        if pid != broker.pid:
            os.kill(pid, signal.SIGTERM)
    wait_until(lambda: processes_in(settings.data_dir) == [broker.pid], 10, "them to stop")


def codex_env(settings: Settings, home: Path) -> dict[str, str]:
    # Settings Codex's scrubbing would drop (beside the data dir and the person's name).
    env = broker_env(
        settings,
        XDG_RUNTIME_DIR=str(home / "run"),
        SLM_MESH_MESH="codex-test",
        SLM_MESH_AUTOLOCK="0",
    )
    for name in list(env):
        if name.startswith(("OPENAI_", "CODEX_")):
            del env[name]
    blackhole = "http://127.0.0.1:9"  # no lookups of the vendor's hosts (AGENT-HOSTS.md)
    env.update(
        HOME=str(home),
        X_KEY="sk-test-offline",
        HTTPS_PROXY=blackhole,
        HTTP_PROXY=blackhole,
        ALL_PROXY=blackhole,
        NO_PROXY="127.0.0.1,localhost",
    )
    return env


def mcp_servers(settings: Settings) -> list[int]:
    """The ``slm-mesh mcp`` processes working in the test's data dir (Codex's children)."""
    return [
        pid
        for pid in processes_in(settings.data_dir)
        if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[-2:] == [b"mcp", b""]
    ]


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode()
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)


def slm_settings(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("SLM_MESH_") or k == "XDG_RUNTIME_DIR"}


def codex_sessions(client: LineClient) -> list[tuple[str, str]]:
    peers = client.call("peer.list")["peers"]
    return [(p["peer_id"], p["lifetime"]) for p in peers if p["agent"] == "codex"]


def inputs(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in request.get("input", []) if isinstance(i, dict)]


def texts(item: dict[str, Any]) -> str:
    content = item.get("content") or item.get("output") or ""
    if isinstance(content, list):
        return "".join(c.get("text", "") for c in content if isinstance(c, dict))
    return str(content)


def test_a_codex_session_meets_the_mesh(
    settings: Settings,
    broker: subprocess.Popen[bytes],
    work: Path,
    tmp_short: Path,
    codex: str,
    leftovers: None,
) -> None:
    home = tmp_short / "home"
    home.mkdir()
    (work / "src" / "held.py").write_text("x = 1\n")
    (work / "src" / "free.py").write_text("y = 1\n")
    installed = subprocess.run(
        [sys.executable, "-m", "slm_mesh", "install", "codex"],
        env={**broker_env(settings), "HOME": str(home)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    backend = LineClient(settings.socket_path)
    backend.call("peer.register", name="backend", cwd=str(work), summary="auth rework")
    backend.call("lock.acquire", path="src/held.py")
    env = codex_env(settings, home)
    seen: dict[str, Any] = {}

    def mcp_server_joined(_: dict[str, Any]) -> None:
        """Before the first answer: the MCP server Codex started carries the session."""
        wait_until(
            lambda: [lifetime for _, lifetime in codex_sessions(backend)] == ["connection"],
            MCP_SERVER_BOUND_S,
            "Codex's MCP server to carry the session",
        )
        [server] = mcp_servers(settings)
        seen["server_env"] = environment_of(server)

    def news(_: dict[str, Any]) -> None:
        seen["peers"] = codex_sessions(backend)
        backend.call("message.send", to="all", body="heads up: schema v2")

    def late(_: dict[str, Any]) -> None:
        backend.call("message.send", to="all", body="one more thing: tests are red")

    script = [
        Turn([patch(HELD)], on_request=mcp_server_joined),
        Turn([patch(FREE)], on_request=news),
        Turn([say("All done.")], on_request=late),
        Turn([say("Noted.")]),
    ]
    server = ResponsesServer(script)
    try:
        with server.serve():
            provider = (
                f'model_providers.x={{name="x", base_url="{server.url}/v1", env_key="X_KEY", '
                'wire_api="responses", request_max_retries=0, stream_max_retries=0}'
            )
            done = subprocess.run(
                [
                    codex,
                    "exec",
                    "--json",
                    "--skip-git-repo-check",
                    "--dangerously-bypass-approvals-and-sandbox",
                    "--dangerously-bypass-hook-trust",
                    "-c",
                    'model_provider="x"',
                    "-c",
                    provider,
                    "-c",
                    'model="gpt-5.5"',
                    "Set x and y to 2.",
                ],
                env=env,
                cwd=work,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=CODEX_BOUND_S,
                check=False,
            )
        assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
        assert server.errors == []
        requests = server.requests
        assert len(requests) == 4, [json.dumps(r)[-500:] for r in requests]

        # The MCP server got the settings the hooks got, and it and the hooks were one peer.
        assert slm_settings(seen["server_env"]) == slm_settings(env)
        [(session, lifetime)] = seen["peers"]
        assert lifetime == "connection"

        first = inputs(requests[0])
        [briefing] = [i for i in first if 'slm-mesh: you are "codex"' in texts(i)]
        assert briefing["role"] == "developer"
        assert '- src/held.py: "backend", exclusive' in texts(briefing)

        [blocked] = [i for i in inputs(requests[1]) if i["type"] == "custom_tool_call_output"]
        assert texts(blocked).startswith("Command blocked by PreToolUse hook: slm-mesh: ")
        assert 'src/held.py is locked by another session, "backend"' in texts(blocked)
        assert (work / "src" / "held.py").read_text() == "x = 1\n"
        assert (work / "src" / "free.py").read_text() == "y = 2\n"

        later = json.dumps(requests[2])
        assert "heads up: schema v2" in later and "(not from the user;" in later
        assert "one more thing: tests are red" in json.dumps(requests[3])  # Stop went on

        events = backend.call("event.read", types=["file_edited"])["events"]
        assert [(e["data"]["peer_id"], e["data"]["path"]) for e in events] == [
            (session, str(work / "src/free.py"))
        ]
        wait_until(lambda: codex_sessions(backend) == [], 10, "the session to end")
        joined = backend.call("event.read", types=["peer_joined", "peer_left"])["events"]
        assert {e["data"]["peer_id"] for e in joined if e["data"]["name"] == "codex"} == {session}
    finally:
        backend.close()
