"""``install AGENT``, ``uninstall AGENT`` and ``install --status``: the agents' hooks and MCP
server entry, in their own configuration files (:mod:`slm_mesh.install`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slm_mesh.cli.outcome import OK, CliError, usage
from slm_mesh.cli.render import Output, home_relative
from slm_mesh.install import AGENTS, ConfigError, Plan, plan, project_root


def _project(project: bool, user: bool, agent: str | None) -> Path | None:
    if project and user:
        raise usage("--project and --user exclude each other")
    if agent == "git" and user:
        raise usage("git hooks belong to a repository: run it there, without --user")
    return project_root() if project or agent == "git" else None


def _plan(agent: str, install: bool, project: Path | None) -> Plan:
    try:
        return plan(agent, install=install, project=project)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def no_agent(out: Output) -> int:
    raise usage("name the AGENT to install for (claude, codex, gemini, cursor, git), or --status")


def change(out: Output, agent: str, install: bool, project: bool, user: bool, dry_run: bool) -> int:
    """Install or uninstall ``agent``'s part, or print what would change (``dry_run``)."""
    the_plan = _plan(agent, install, _project(project, user, agent))
    files: list[dict[str, Any]] = []
    try:
        backups: dict[Path, Path | None] = dict(the_plan.apply()) if not dry_run else {}
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    for step in the_plan.steps:
        doc: dict[str, Any] = {
            "path": str(step.path),
            "what": step.what,
            "changed": step.change.changed,
        }
        if step.change.changed:
            if dry_run:
                doc["diff"] = step.change.diff()
            backup = backups.get(step.path)
            doc["backup"] = str(backup) if backup else None
        files.append(doc)
    verb = "install" if install else "uninstall"
    if out.as_json:
        out.json(
            {
                "agent": agent,
                "action": verb,
                "dry_run": dry_run,
                "files": files,
                "notes": the_plan.notes,
            }
        )
        return OK
    for doc in files:
        where = home_relative(doc["path"])
        if not doc["changed"]:
            out.line(f"{where}: unchanged ({doc['what']})")
        elif dry_run:
            out.line(f"{where}: would change ({doc['what']}):")
            out.line(doc["diff"].rstrip("\n"))
        else:
            saved = f"; the old one is {home_relative(doc['backup'])}" if doc["backup"] else ""
            out.line(f"{where}: written ({doc['what']}){saved}")
    if not the_plan.changed:
        out.note(f"nothing to do: slm-mesh is {'already' if install else 'not'} installed there")
    for note in the_plan.notes:
        out.note(note)
    return OK


def status(out: Output) -> int:
    """Where each agent has our hooks and MCP server, and whether they are current."""
    rows: list[dict[str, Any]] = []
    root = project_root()
    for agent in AGENTS:
        scopes = [("project", root)] if agent == "git" else [("user", None), ("project", root)]
        for scope, project in scopes:
            try:
                installed = plan(agent, install=False, project=project)
                current = not plan(agent, install=True, project=project).changed
            except ConfigError as exc:
                if agent == "git" and "not in a git repository" in str(exc):
                    rows.append({"agent": agent, "scope": scope, "installed": False, "files": []})
                    continue
                rows.append({"agent": agent, "scope": scope, "installed": None, "error": str(exc)})
                continue
            paths = [str(s.path) for s in installed.steps if s.change.changed]
            rows.append(
                {
                    "agent": agent,
                    "scope": scope,
                    "installed": bool(paths),
                    "current": bool(paths) and current,
                    "files": paths,
                }
            )
    if out.as_json:
        out.json({"agents": rows})
        return OK
    table = []
    for row in rows:
        if row.get("error"):
            state = f"error: {row['error']}"
        elif not row["installed"]:
            state = "not installed"
        elif row["current"]:
            state = "installed"
        else:
            state = "installed, out of date: run slm-mesh install again"
        where = ", ".join(home_relative(p) for p in row.get("files", []))
        table.append([row["agent"], row["scope"], state, where])
    out.table(["AGENT", "SCOPE", "STATE", "FILES"], table)
    return OK
