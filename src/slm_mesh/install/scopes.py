"""Our hooks for one agent in both its scopes: the user's files and the project's.

Rules:
1. An agent runs the hooks of its user's file and of the project's: ours in both, and each
   hook runs twice (each message handed over twice, every tool call waits for two hooks).
   Claude Code (2.1.197, checked with the real CLI) runs a command that is in both files
   only once, so there they run twice only when the commands differ (installed from
   another slm-mesh, or one of them out of date); of the other agents we know no such
   thing, so there ours in both always count as running twice.
2. ``install`` warns of it (on stderr; it is no error: the user may mean it for a while)
   and ``install --status`` flags both scopes' rows. Nothing is changed for it.
3. The user's file and the project's may be one file (a project at the home folder):
   then there is one copy, not two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slm_mesh.install import agents
from slm_mesh.install.files import ConfigError

# Agents that run a hook command found in several of their settings files once.
RUN_IDENTICAL_ONCE = frozenset({"claude"})
AGENT_NAMES = {
    "claude": "Claude Code",
    "codex": "Codex",
    "gemini": "Gemini CLI",
    "cursor": "Cursor",
}


@dataclass(frozen=True)
class Twice:
    """``agent``'s hooks of ours are in its other scope's file too."""

    agent: str
    scope: str  # the other scope: "user" or "project"
    path: Path  # its hooks file
    runs_twice: bool  # False: the agent runs them once (identical commands, rule 1)


def scope_of(project: Path | None) -> str:
    return "user" if project is None else "project"


def in_other_scope(agent: str, project: Path | None, root: Path, here: set[str]) -> Twice | None:
    """Whether ``agent``'s other scope has hooks of ours too, beside ``here`` (the commands
    of ours in this scope, or those install writes), in the scope of ``project`` (None:
    the user's; ``root``: the project the user's scope goes with). None when it has none,
    or its file can't be read (``install`` of that scope says why)."""
    other = root if project is None else None
    this_file = agents.hooks_file(agent, project).path
    other_file = agents.hooks_file(agent, other).path
    if _same_file(this_file, other_file):  # rule 3
        return None
    try:
        there = agents.installed_hooks(agent, other)
    except ConfigError:
        return None
    if not there or not here:
        return None
    once = agent in RUN_IDENTICAL_ONCE and there == here
    return Twice(agent, scope_of(other), other_file, runs_twice=not once)


def _same_file(a: Path, b: Path) -> bool:
    return a.absolute() == b.absolute() or (a.exists() and b.exists() and a.samefile(b))
