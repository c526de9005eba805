"""What slm-mesh puts into an agent's configuration: the hook command, the hook entries in
the agents' ``hooks`` shapes, the MCP server entry, and how ours are told from the user's.

Rules:
1. A hook entry runs ``<this Python> -I -S <slm_mesh/hooks/run.py> EVENT --agent AGENT``:
   absolute paths of this installation, so it works whatever ``PATH`` the agent has, and
   skips ``site`` (see ``hooks/run.py``). An entry is ours when its command runs
   ``slm_mesh/hooks/run.py`` or ``slm-mesh hook``; nothing else is ever changed.
2. Our entries sit in matcher groups of their own, appended after the user's. Installing
   again replaces our groups where they are (twice is the same as once); uninstalling
   removes them, then any event list and ``hooks`` object that only we had made non-empty.
   A handler of ours found in a group of the user's (moved or copied there by hand) is
   taken out of it either way, the user's handlers and matcher kept (a group left with
   none goes): else installing again would run our hook twice, and uninstalling would
   leave it behind.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import slm_mesh.hooks

SERVER_NAME = "slm-mesh"
_OURS = ("slm_mesh/hooks/run.py", "slm-mesh hook ")


def hook_command(event: str, agent: str) -> str:
    run = Path(slm_mesh.hooks.__file__).with_name("run.py")
    return shlex.join([sys.executable, "-I", "-S", str(run), event, "--agent", agent])


def slm_mesh_command() -> str:
    """The ``slm-mesh`` command of this installation, absolute when it can be found."""
    beside = Path(sys.executable).with_name("slm-mesh")
    if beside.exists():
        return str(beside)
    return shutil.which("slm-mesh") or "slm-mesh"


def is_ours(command: Any) -> bool:
    return isinstance(command, str) and any(mark in command for mark in _OURS)


def _group_is_ours(group: Any) -> bool:
    """A matcher group (``{"matcher", "hooks": [...]}``) or a flat entry (Cursor's
    ``{"command", "matcher"}``) that runs our hook."""
    if not isinstance(group, dict):
        return False
    if is_ours(group.get("command")):
        return True
    handlers = group.get("hooks")
    return (
        isinstance(handlers, list)
        and bool(handlers)
        and all(isinstance(h, dict) and is_ours(h.get("command")) for h in handlers)
    )


def _is_our_handler(handler: Any) -> bool:
    return isinstance(handler, dict) and is_ours(handler.get("command"))


def _has_ours(group: Any) -> bool:
    """A group of ours, or one of the user's with a handler of ours in it (rule 2)."""
    if _group_is_ours(group):
        return True
    handlers = group.get("hooks") if isinstance(group, dict) else None
    return isinstance(handlers, list) and any(_is_our_handler(h) for h in handlers)


def _without_ours(group: Any) -> Any | None:
    """``group`` without our handlers (rule 2); None when nothing of it is left."""
    if _group_is_ours(group):
        return None
    handlers = group.get("hooks") if isinstance(group, dict) else None
    if not isinstance(handlers, list) or not any(_is_our_handler(h) for h in handlers):
        return group
    theirs = [h for h in handlers if not _is_our_handler(h)]
    return {**group, "hooks": theirs} if theirs else None


def merge_hooks(
    config: dict[str, Any], ours: dict[str, list[dict[str, Any]]], key: str = "hooks"
) -> dict[str, Any]:
    """``config`` with our groups for each event in ``ours`` (rule 2). ``{}`` removes ours."""
    out = dict(config)
    hooks = out.get(key)
    if hooks is not None and not isinstance(hooks, dict):
        from slm_mesh.install.files import ConfigError

        raise ConfigError(f'"{key}" is not an object; nothing was changed')
    hooks = dict(hooks or {})
    for event in list(hooks):
        groups = hooks[event]
        if not isinstance(groups, list) or not any(_has_ours(g) for g in groups):
            continue
        kept: list[Any] = []
        at = None  # where our groups go: where the first of ours was
        for group in groups:
            if at is None and _group_is_ours(group):
                at = len(kept)
            if (left := _without_ours(group)) is not None:
                kept.append(left)
        if event in ours:
            at = len(kept) if at is None else at
            kept[at:at] = ours[event]
        if kept:
            hooks[event] = kept
        else:
            del hooks[event]
    for event, groups in ours.items():
        present = hooks.get(event)
        if present is None:
            hooks[event] = list(groups)
        elif isinstance(present, list) and not any(_has_ours(g) for g in present):
            hooks[event] = [*present, *groups]
    if hooks:
        out[key] = hooks
    else:
        out.pop(key, None)
    return out


def has_hooks(config: dict[str, Any], key: str = "hooks") -> list[str]:
    """The events of ``config`` that have a group of ours."""
    hooks = config.get(key)
    if not isinstance(hooks, dict):
        return []
    return [
        event
        for event, groups in hooks.items()
        if isinstance(groups, list) and any(_has_ours(g) for g in groups)
    ]


def our_commands(config: dict[str, Any], key: str = "hooks") -> set[str]:
    """The commands of every hook of ours in ``config`` (each names its event and agent)."""
    hooks = config.get(key)
    if not isinstance(hooks, dict):
        return set()
    found: set[str] = set()
    for groups in hooks.values():
        for group in groups if isinstance(groups, list) else []:
            if _has_ours(group):
                handlers = group.get("hooks")
                for handler in handlers if isinstance(handlers, list) else [group]:
                    if _is_our_handler(handler):
                        found.add(handler["command"])
    return found


def mcp_entry(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"command": slm_mesh_command(), "args": ["mcp"], **(extra or {})}


def is_our_server(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    command = entry.get("command")
    return (
        isinstance(command, str)
        and Path(command).name == SERVER_NAME
        and entry.get("args") == ["mcp"]
    )


def merge_server(
    config: dict[str, Any],
    entry: dict[str, Any] | None,
    key: str = "mcpServers",
    *,
    keep_empty: bool = False,
) -> tuple[dict[str, Any], str]:
    """``config`` with our MCP server entry (None: without it) and what was done: "added",
    "updated", "kept" (an entry of that name that is not ours stays), "removed", "absent".
    Removing the last server drops the ``key`` too, unless ``keep_empty`` (a file the agent
    itself always writes it in); a file left empty goes."""
    out = dict(config)
    servers = out.get(key)
    if servers is not None and not isinstance(servers, dict):
        from slm_mesh.install.files import ConfigError

        raise ConfigError(f'"{key}" is not an object; nothing was changed')
    servers = dict(servers or {})
    present = servers.get(SERVER_NAME)
    if entry is None:
        if present is None:
            return out, "absent"
        if not is_our_server(present):
            return out, "kept"
        del servers[SERVER_NAME]
        if servers or (keep_empty and len(out) > 1):
            out[key] = servers
        else:
            out.pop(key)
        return out, "removed"
    if present is not None and not is_our_server(present):
        return out, "kept"
    if present == entry:
        return out, "kept"
    servers[SERVER_NAME] = entry
    out[key] = servers
    return out, "updated" if present is not None else "added"
