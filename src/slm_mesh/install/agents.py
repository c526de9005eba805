"""Where each agent keeps its hooks and MCP servers, and what slm-mesh puts there.

=========  =====================================  ======================================
agent      --user (default)                       --project (the repository's root)
=========  =====================================  ======================================
claude     ~/.claude/settings.json (hooks),       .claude/settings.local.json (hooks),
           ~/.claude.json (mcpServers)            .mcp.json (mcpServers)
codex      ~/.codex/hooks.json,                   .codex/hooks.json, .codex/config.toml
           ~/.codex/config.toml (mcp_servers)
gemini     ~/.gemini/settings.json                .gemini/settings.json
cursor     ~/.cursor/hooks.json, ~/.cursor/mcp.json  .cursor/hooks.json, .cursor/mcp.json
=========  =====================================  ======================================

``CLAUDE_CONFIG_DIR`` and ``CODEX_HOME`` move the user files as they move them for the
agents. Claude Code's project hooks go to ``settings.local.json``, the file it keeps out of
version control: the commands hold this machine's paths.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slm_mesh.hooks import wake
from slm_mesh.install import codex_toml, environment
from slm_mesh.install.entries import (
    has_hooks,
    hook_command,
    mcp_entry,
    merge_hooks,
    merge_server,
    our_commands,
)
from slm_mesh.install.files import Change, ConfigError, dump_json, parse_json, read_text

# The Stop hook waits at most this long for a message: Claude Code must not kill it sooner.
WAKE_IDLE_S = int(wake.WAKE_IDLE_S)
CLAUDE_EDIT_TOOLS = "Edit|Write|MultiEdit|NotebookEdit"
CODEX_EDIT_TOOLS = "apply_patch|Edit|Write"
GEMINI_EDIT_TOOLS = "write_file|replace"
CURSOR_EDIT_TOOLS = "Write|Edit|MultiEdit|Delete"


@dataclass(frozen=True)
class JsonFile:
    """One JSON configuration file and how to put our part into it (or take it out)."""

    path: Path
    transform: Callable[[dict[str, Any], bool], tuple[dict[str, Any], str]]
    what: str

    def change(self, install: bool) -> tuple[Change, str]:
        before = read_text(self.path)
        config = parse_json(self.path, before)
        try:
            after, done = self.transform(config, install)
        except ConfigError as exc:
            raise ConfigError(f"{self.path}: {exc}") from None
        if after == config:
            return Change(self.path, before, before), done
        if not after and not install:
            return Change(self.path, before, None), done  # only ours was in it
        return Change(self.path, before, dump_json(after, before)), done


def _hooks(ours: dict[str, list[dict[str, Any]]], extra: dict[str, Any] | None = None) -> Any:
    def transform(config: dict[str, Any], install: bool) -> tuple[dict[str, Any], str]:
        after = merge_hooks(config, ours if install else {})
        if install and extra:
            after = {**extra, **after}
        if not install and extra and set(after) <= set(extra) and after == extra:
            after = {}  # only what we added is left
        if install:
            return after, "hooks " + ", ".join(has_hooks(after))
        events = has_hooks(config)
        return after, ("hooks removed: " + ", ".join(events)) if events else "no hooks of ours"

    return transform


def _server(entry: dict[str, Any], *, keep_empty: bool = False) -> Any:
    def transform(config: dict[str, Any], install: bool) -> tuple[dict[str, Any], str]:
        after, done = merge_server(config, entry if install else None, keep_empty=keep_empty)
        return after, f"MCP server {done}"

    return transform


def _command(event: str, agent: str, timeout: int | None = None, **extra: Any) -> dict[str, Any]:
    handler: dict[str, Any] = {"type": "command", "command": hook_command(event, agent)}
    if timeout is not None:
        handler["timeout"] = timeout
    handler.update(extra)
    return handler


def _group(handler: dict[str, Any], matcher: str | None = None) -> list[dict[str, Any]]:
    group: dict[str, Any] = {"matcher": matcher} if matcher else {}
    group["hooks"] = [handler]
    return [group]


def claude_hooks() -> dict[str, list[dict[str, Any]]]:
    return {
        "SessionStart": _group(_command("SessionStart", "claude", 15)),
        "UserPromptSubmit": _group(_command("UserPromptSubmit", "claude", 10)),
        "PreToolUse": _group(_command("PreToolUse", "claude", 10), CLAUDE_EDIT_TOOLS),
        "PostToolUse": _group(_command("PostToolUse", "claude", 10)),
        "Stop": _group(_command("Stop", "claude", WAKE_IDLE_S + 60, asyncRewake=True)),
        "SessionEnd": _group(_command("SessionEnd", "claude", 5)),
    }


def codex_hooks() -> dict[str, list[dict[str, Any]]]:
    return {
        "SessionStart": _group(_command("SessionStart", "codex", 15)),
        "UserPromptSubmit": _group(_command("UserPromptSubmit", "codex", 10)),
        "PreToolUse": _group(_command("PreToolUse", "codex", 10), CODEX_EDIT_TOOLS),
        "PostToolUse": _group(_command("PostToolUse", "codex", 10), CODEX_EDIT_TOOLS),
        "Stop": _group(_command("Stop", "codex", 10)),
    }


def gemini_hooks() -> dict[str, list[dict[str, Any]]]:
    def handler(event: str, timeout_ms: int) -> dict[str, Any]:
        return _command(event, "gemini", timeout_ms, name=f"slm-mesh-{event}")

    return {
        "SessionStart": _group(handler("SessionStart", 15_000)),
        "BeforeAgent": _group(handler("BeforeAgent", 10_000)),
        "BeforeTool": _group(handler("BeforeTool", 10_000), GEMINI_EDIT_TOOLS),
        "AfterTool": _group(handler("AfterTool", 10_000)),
        "SessionEnd": _group(handler("SessionEnd", 5_000)),
    }


def cursor_hooks() -> dict[str, list[dict[str, Any]]]:
    def entry(event: str, matcher: str | None = None) -> list[dict[str, Any]]:
        flat: dict[str, Any] = {"command": hook_command(event, "cursor")}
        if matcher:
            flat["matcher"] = matcher
        return [flat]

    return {
        "sessionStart": entry("sessionStart"),
        "preToolUse": entry("preToolUse", CURSOR_EDIT_TOOLS),
        "postToolUse": entry("postToolUse"),
        "afterFileEdit": entry("afterFileEdit"),
        "sessionEnd": entry("sessionEnd"),
    }


def _home(env: str, default: str) -> Path:
    raw = os.environ.get(env)
    return Path(raw).expanduser() if raw else Path.home() / default


def files(agent: str, project: Path | None) -> list[JsonFile | codex_toml.TomlFile]:
    """The files ``slm-mesh install AGENT`` changes (``project``: the ``--project`` root)."""
    if agent == "claude":
        if project is None:
            home = _home("CLAUDE_CONFIG_DIR", ".claude")
            state = (
                home / ".claude.json"
                if os.environ.get("CLAUDE_CONFIG_DIR")
                else (Path.home() / ".claude.json")
            )
            settings = home / "settings.json"
        else:
            state, settings = project / ".mcp.json", project / ".claude" / "settings.local.json"
        return [
            JsonFile(settings, _hooks(claude_hooks()), "hooks"),
            JsonFile(
                state,
                _server({"type": "stdio", **mcp_entry(), "env": {}}, keep_empty=project is None),
                "MCP server",
            ),
        ]
    if agent == "codex":
        folder = _home("CODEX_HOME", ".codex") if project is None else project / ".codex"
        # Codex scrubs the environment of its MCP servers (install/environment.py).
        env_vars = environment.for_mcp_server()
        server = mcp_entry({"env_vars": env_vars, "default_tools_approval_mode": "approve"})
        return [
            JsonFile(folder / "hooks.json", _hooks(codex_hooks()), "hooks"),
            codex_toml.TomlFile(folder / "config.toml", server),
        ]
    if agent == "gemini":
        folder = Path.home() / ".gemini" if project is None else project / ".gemini"
        both = _both(_hooks(gemini_hooks()), _server(mcp_entry()))
        return [JsonFile(folder / "settings.json", both, "hooks and MCP server")]
    if agent == "cursor":
        folder = Path.home() / ".cursor" if project is None else project / ".cursor"
        return [
            JsonFile(folder / "hooks.json", _hooks(cursor_hooks(), {"version": 1}), "hooks"),
            JsonFile(folder / "mcp.json", _server(mcp_entry()), "MCP server"),
        ]
    raise ValueError(agent)


HOOKS: dict[str, Callable[[], dict[str, list[dict[str, Any]]]]] = {
    "claude": claude_hooks,
    "codex": codex_hooks,
    "gemini": gemini_hooks,
    "cursor": cursor_hooks,
}


def hooks_file(agent: str, project: Path | None) -> JsonFile:
    """The file ``agent``'s hooks are in, at the user's (``project`` None) or the project's
    scope."""
    return next(
        target
        for target in files(agent, project)
        if isinstance(target, JsonFile) and "hooks" in target.what
    )


def installed_hooks(agent: str, project: Path | None) -> set[str]:
    """The commands of our hooks in ``agent``'s hooks file of that scope.

    Raises:
        ConfigError: the file can't be read or parsed.
    """
    path = hooks_file(agent, project).path
    return our_commands(parse_json(path, read_text(path)))


def hooks_to_install(agent: str) -> set[str]:
    """The commands ``install`` writes for ``agent``'s hooks."""
    return our_commands({"hooks": HOOKS[agent]()})


def _both(first: Any, second: Any) -> Any:
    def transform(config: dict[str, Any], install: bool) -> tuple[dict[str, Any], str]:
        middle, one = first(config, install)
        after, two = second(middle, install)
        return after, f"{one}; {two}"

    return transform
