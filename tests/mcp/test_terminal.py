"""``slm-mesh mcp`` run by hand in a terminal says what it is instead of waiting silently;
run by an agent (stdin a pipe) it prints nothing (issue 13)."""

from __future__ import annotations

import json
import os
import pty
import shlex
import subprocess
import sys
from pathlib import Path

from slm_mesh.config import Settings
from tests.wire import broker_env, stop_process

COMMAND = [sys.executable, "-m", "slm_mesh", "mcp"]


def first_line_on_a_terminal(settings: Settings, command: list[str]) -> str:
    """What ``command`` writes to stderr first, its stdin a terminal (the server runs
    in-process, so that nothing else starts)."""
    leader, follower = pty.openpty()
    env = broker_env(settings, SLM_MESH_NO_ZYGOTE="1")
    try:
        proc = subprocess.Popen(
            command, stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
    finally:
        os.close(follower)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
    finally:
        stop_process(proc)
        os.close(leader)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    return line


def test_on_a_terminal_it_says_it_is_an_mcp_server_and_how_to_configure_an_agent(
    settings: Settings,
) -> None:
    """The launcher says it first thing, before it picks the warm process or runs the
    server itself."""
    line = first_line_on_a_terminal(settings, COMMAND)
    assert line.startswith("slm-mesh mcp: this is an MCP server speaking JSON-RPC on stdin")
    assert "claude mcp add --scope user slm-mesh -- slm-mesh mcp" in line
    assert line.endswith("Ctrl-D quits.\n")


def test_run_as_slm_mesh_it_names_its_own_path_for_the_agent_to_start(
    settings: Settings, tmp_short: Path
) -> None:
    """After the README's set-up ``slm-mesh`` is in a venv, not on an agent's PATH: the
    advice names the command that was run, absolute, in each form it gives."""
    script = Path(sys.executable).with_name("slm-mesh")
    assert script.exists(), "pip install -e . puts bin/slm-mesh beside the interpreter"
    folder = tmp_short / "my tools"
    folder.mkdir()
    (folder / "slm-mesh").symlink_to(script)
    line = first_line_on_a_terminal(settings, [str(folder / "slm-mesh"), "mcp"])
    quoted = shlex.quote(str(folder / "slm-mesh"))
    assert f"`{quoted} install claude`" in line
    assert f"claude mcp add --scope user slm-mesh -- {quoted} mcp" in line
    config = json.loads(line[line.index("{") : line.rindex("}") + 1])
    assert config["mcpServers"]["slm-mesh"]["command"] == str(folder / "slm-mesh")


def test_started_by_an_agent_it_says_nothing(settings: Settings) -> None:
    done = subprocess.run(
        COMMAND,
        input=b"",  # an agent that closes stdin at once
        capture_output=True,
        env=broker_env(settings, SLM_MESH_NO_ZYGOTE="1"),
        timeout=60,
    )
    assert done.returncode == 0
    assert b"this is an MCP server" not in done.stderr
