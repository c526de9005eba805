"""Outside tools that some tests drive, and what a test does when one is missing.

The README's test command must pass on a fresh machine that has none of them: there a test
that needs one is skipped, with a reason that says how to get the tool. Under ``CI=true``
(``.ci/run`` installs them all) a missing tool fails the test instead, so CI never skips a
check unnoticed.

Mark a test (or a module, with ``pytestmark``) ``@pytest.mark.needs("socat")``; the hook in
``tests/conftest.py`` calls :func:`require` before the test runs. A fixture that needs a tool
calls :func:`require` itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODE_BIN = ROOT / ".ci" / "node" / "node_modules" / ".bin"


def in_ci() -> bool:
    """Whether the suite runs under CI (``CI=true``, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def _on_path(command: str) -> Callable[[], str | None]:
    return lambda: shutil.which(command)


def _in_node_bin(command: str) -> Callable[[], str | None]:
    def find() -> str | None:
        path = NODE_BIN / command
        return str(path) if os.access(path, os.X_OK) else None

    return find


def _postgresql_bindir() -> str | None:
    """The directory of PostgreSQL's server binaries (``initdb``, ``pg_ctl``), if any."""
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        bindir = done.stdout.strip()
        if done.returncode == 0 and (Path(bindir) / "initdb").exists():
            return bindir
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return str(candidate)
    return None


def _netns() -> str | None:
    """``ip``, where this process may make network namespaces with it (root)."""
    ip = shutil.which("ip")
    return ip if ip is not None and os.geteuid() == 0 else None


@dataclass(frozen=True)
class Tool:
    name: str
    what_for: str
    how_to_get: str
    find: Callable[[], str | None]


_NPM_CI = "npm install --no-save --prefix .ci/node"

TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "socat", "the socat one-liners of the docs", "apt-get install socat", _on_path("socat")
        ),
        Tool(
            "systemd-analyze",
            "verifying the systemd user units",
            "apt-get install systemd",
            _on_path("systemd-analyze"),
        ),
        Tool("groff", "linting the man pages", "apt-get install groff-base", _on_path("groff")),
        Tool(
            "mcp-inspector",
            "the MCP Inspector CLI, the reference MCP client",
            f"{_NPM_CI} @modelcontextprotocol/inspector",
            _in_node_bin("mcp-inspector"),
        ),
        Tool(
            "postgresql",
            "PostgreSQL's server binaries (initdb, pg_ctl) for the shared store",
            "apt-get install postgresql",
            _postgresql_bindir,
        ),
        Tool(
            "netns",
            "network namespaces (root and iproute2's ip) to cut one broker off the database",
            "run the tests as root, with iproute2 installed (apt-get install iproute2)",
            _netns,
        ),
        Tool(
            "tmux", "a real terminal for `slm-mesh top`", "apt-get install tmux", _on_path("tmux")
        ),
        Tool(
            "claude",
            "the Claude Code CLI, run offline against a scripted model",
            f"{_NPM_CI} @anthropic-ai/claude-code@2.1.197",  # the version the tests pin
            _in_node_bin("claude"),
        ),
        Tool(
            "codex",
            "the Codex CLI, run offline against a scripted model",
            f"{_NPM_CI} @openai/codex@0.171.0",  # the version the tests pin
            _in_node_bin("codex"),
        ),
    )
}


def require(name: str) -> str:
    """The tool's path (for PostgreSQL: its bin directory); skips, or under CI fails, when
    it is missing.

    Call it from a fixture or the mark, not from inside a trio test: there pytest-trio
    wraps the skip in an exception group and the reason is lost.
    """
    tool = TOOLS[name]
    found = tool.find()
    if found is not None:
        return found
    reason = f"{tool.name} ({tool.what_for}) is not installed; get it with: {tool.how_to_get}"
    if in_ci():
        pytest.fail(f"CI=true and {reason} (.ci/run installs it)", pytrace=False)
    pytest.skip(reason)
