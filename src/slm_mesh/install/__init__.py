"""``slm-mesh install|uninstall AGENT``: the MCP server and the hooks, merged into the
agent's own configuration (:mod:`.agents` says which files), and ``install --status``.

Rules (each file, each agent):
1. Only our part changes: every other setting and hook stays as it was (byte for byte in a
   file the agent itself wrote); installing twice is the same as once.
2. A file that can't be parsed is refused with its line and column; nothing is written,
   for any file of that agent, unless every one of them can be changed.
3. Writes are atomic, with a backup of the old file (``<name>.slm-mesh.bak``);
   ``--dry-run`` writes nothing and prints the diff.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from slm_mesh.install.files import Change, ConfigError, apply

if TYPE_CHECKING:
    from slm_mesh.install.scopes import Twice

AGENTS = ("claude", "codex", "gemini", "cursor", "git")

__all__ = ["AGENTS", "ConfigError", "Plan", "plan", "project_root"]


@dataclass
class Step:
    change: Change
    what: str

    @property
    def path(self) -> Path:
        return self.change.path


@dataclass
class Plan:
    """What ``install``/``uninstall`` of one agent changes, before anything is written."""

    agent: str
    install: bool
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    twice: Twice | None = None  # installing: our hooks are in the other scope too

    @property
    def changed(self) -> bool:
        return any(step.change.changed for step in self.steps)

    def apply(self) -> list[tuple[Path, Path | None]]:
        """Write every changed file; (file, backup) for each.

        Raises:
            ConfigError: a file could not be written (naming those that were).
        """
        done: list[tuple[Path, Path | None]] = []
        for step in self.steps:
            if not step.change.changed:
                continue
            try:
                done.append((step.path, apply(step.change)))
            except OSError as exc:
                written = "".join(f"; {path} was written" for path, _ in done)
                where = str(step.path)
                if step.path.is_symlink():
                    where += f" (a link to {step.path.resolve()})"
                raise ConfigError(f"can't write {where}: {exc.strerror}{written}") from None
        return done


def project_root(cwd: Path | None = None) -> Path:
    """The repository around ``cwd`` (its working tree's top), else ``cwd`` itself."""
    from slm_mesh.hooks.process import find_git

    here = (cwd or Path.cwd()).absolute()
    root, _ = find_git(str(here))
    return Path(root) if root else here


def plan(agent: str, *, install: bool, project: Path | None) -> Plan:
    """What to change for ``agent`` (rule 2: every file is read and checked first).

    Raises:
        ConfigError: a file can't be read or parsed, or the agent is unknown.
    """
    if agent == "git":
        from slm_mesh.install import git_hook

        return git_hook.plan(install=install, cwd=project or Path.cwd())
    from slm_mesh.install import agents, scopes

    if agent not in AGENTS:
        raise ConfigError(f"unknown agent {agent!r}: one of {', '.join(AGENTS)}")
    out = Plan(agent, install)
    for target in agents.files(agent, project):
        change, what = target.change(install)
        out.steps.append(Step(change, what))
    if install:
        root = project_root() if project is None else project
        out.twice = scopes.in_other_scope(agent, project, root, agents.hooks_to_install(agent))
    if agent == "codex" and install:
        out.notes.append(
            "Codex runs new hooks only once they are trusted: review them in Codex with "
            "/hooks, or run it once with --dangerously-bypass-hook-trust."
        )
    if agent == "claude" and install and project is not None:
        out.notes.append(
            "Claude Code asks once before it starts the project's MCP server (.mcp.json)."
        )
    return out
