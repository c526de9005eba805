"""Which agent started this MCP server: Claude Code, Cursor, Codex, Windsurf, VS Code…

Rules, first match wins:
1. The MCP ``initialize`` ``clientInfo.name``, when it names a known agent: the client says
   who it is, so nothing is guessed.
2. The environment the agent gave us (``CLAUDECODE``, ``CURSOR_TRACE_ID``, ``CODEX_*``…).
   Cursor and Windsurf also set ``TERM_PROGRAM=vscode``, so they are checked before VS Code.
3. The process tree: the names of our ancestors in ``/proc`` (Linux; skipped elsewhere, since
   running ``ps`` would cost more than the answer is worth).
4. The ``clientInfo`` name as given (cleaned up), else ``"unknown"``.

Everything here is synchronous and cheap (a few small file reads, no subprocess).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

UNKNOWN = "unknown"
AGENT_PID_ENV = "SLM_MESH_AGENT_PID"
MAX_AGENT_CHARS = 64
MAX_ANCESTORS = 8

# Substrings of a lower-cased clientInfo name, in the order they are tried.
_CLIENT_NAMES: tuple[tuple[str, str], ...] = (
    ("claude-code", "claude-code"),
    ("claude code", "claude-code"),
    ("claude-ai", "claude-desktop"),
    ("claude", "claude-code"),
    ("cursor", "cursor"),
    ("codex", "codex"),
    ("windsurf", "windsurf"),
    ("gemini", "gemini-cli"),
    ("aider", "aider"),
    ("visual studio code", "vscode"),
    ("vscode", "vscode"),
    ("zed", "zed"),
    ("cline", "cline"),
    ("goose", "goose"),
    ("opencode", "opencode"),
    ("inspector", "mcp-inspector"),
)

# Executable names (``/proc/<pid>/comm`` or the first word of the command line).
_PROCESS_NAMES: dict[str, str] = {
    "claude": "claude-code",
    "cursor": "cursor",
    "codex": "codex",
    "windsurf": "windsurf",
    "code": "vscode",
    "code-insiders": "vscode",
    "gemini": "gemini-cli",
    "aider": "aider",
    "zed": "zed",
    "goose": "goose",
    "opencode": "opencode",
}


def from_client_name(name: str | None) -> str | None:
    """The agent a ``clientInfo.name`` names, or None when it names none we know."""
    if not name:
        return None
    lowered = name.lower()
    for needle, agent in _CLIENT_NAMES:
        if needle in lowered:
            return agent
    return None


def from_environment(env: Mapping[str, str]) -> str | None:
    """The agent its environment variables give away, or None."""
    if env.get("CLAUDECODE") or env.get("CLAUDE_CODE_ENTRYPOINT"):
        return "claude-code"
    if env.get("CURSOR_TRACE_ID") or env.get("CURSOR_AGENT"):
        return "cursor"
    if any(key.startswith("CODEX_") for key in env):
        return "codex"
    if any(key.startswith("WINDSURF_") for key in env):
        return "windsurf"
    if env.get("GEMINI_CLI"):
        return "gemini-cli"
    if any(key.startswith("AIDER_") for key in env):
        return "aider"
    if env.get("TERM_PROGRAM") == "vscode" or env.get("VSCODE_PID"):
        return "vscode"
    return None


def from_process_tree(
    pid: int, read: Callable[[Path], bytes] = Path.read_bytes, proc: Path = Path("/proc")
) -> str | None:
    """The agent among the ancestors of ``pid`` (nearest first), or None.

    Args:
        pid: the first process to look at (our parent).
        read: reads one ``/proc`` file (tests pass a fake tree).
        proc: where procfs is mounted.
    """
    for _ in range(MAX_ANCESTORS):
        if pid <= 1:
            return None
        base = proc / str(pid)
        try:
            stat = read(base / "stat").decode("utf-8", "replace")
        except OSError:
            return None
        names = [_comm(stat)]
        try:
            argv = read(base / "cmdline").split(b"\0")
        except OSError:
            argv = []
        # An agent run by node or python shows up as `node /…/bin/claude`.
        names.extend(Path(arg.decode("utf-8", "replace")).name for arg in argv[:2] if arg)
        for name in names:
            agent = _PROCESS_NAMES.get(name.lower().removesuffix(".js"))
            if agent is not None:
                return agent
        pid = _parent(stat)
    return None


def agent_pid(env: Mapping[str, str] | None = None) -> int:
    """The pid of the agent that started us: our parent, or ``SLM_MESH_AGENT_PID`` when a
    launcher ran us on its behalf (then our parent is not the agent), up past any shell
    that ran us for it: the same rule as the agent's hooks follow
    (:func:`slm_mesh.hooks.process.agent_pid`), so both name the same session."""
    from slm_mesh.hooks.process import agent_pid as nearest_agent

    raw = (os.environ if env is None else env).get(AGENT_PID_ENV, "")
    return nearest_agent(raw, os.getppid())


def detect(
    client_name: str | None,
    env: Mapping[str, str] | None = None,
    parent_pid: int | None = None,
) -> str:
    """The agent type to register with (see the module rules)."""
    env = os.environ if env is None else env
    return (
        from_client_name(client_name)
        or from_environment(env)
        or from_process_tree(agent_pid(env) if parent_pid is None else parent_pid)
        or _clean(client_name)
        or UNKNOWN
    )


def _comm(stat: str) -> str:
    # /proc/<pid>/stat is "pid (comm) state ppid …"; comm may itself hold spaces or parens.
    return stat[stat.find("(") + 1 : stat.rfind(")")]


def _parent(stat: str) -> int:
    fields = stat[stat.rfind(")") + 1 :].split()
    try:
        return int(fields[1])
    except (IndexError, ValueError):
        return 0


def _clean(name: str | None) -> str:
    if not name:
        return ""
    return re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-")[:MAX_AGENT_CHARS]
