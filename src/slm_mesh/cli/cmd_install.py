"""``install AGENT``, ``uninstall AGENT`` and ``install --status``: the agents' hooks and MCP
server entry, in their own configuration files (:mod:`slm_mesh.install`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slm_mesh.cli.outcome import OK, CliError, usage
from slm_mesh.cli.render import Output, home_relative
from slm_mesh.install import AGENTS, ConfigError, Plan, plan, project_root
from slm_mesh.install.scopes import AGENT_NAMES, Twice, in_other_scope


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
    warnings = [twice_warning(the_plan.twice)] if the_plan.twice else []
    for warning in warnings:  # on stderr, --json or not: it is no error (install/scopes.py)
        out.note(f"warning: {warning}")
    if out.as_json:
        out.json(
            {
                "agent": agent,
                "action": verb,
                "dry_run": dry_run,
                "files": files,
                "notes": the_plan.notes,
                "warnings": warnings,
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


def twice_warning(twice: Twice) -> str:
    """What to tell of our hooks in the other scope too (see :mod:`slm_mesh.install.scopes`)."""
    where = home_relative(str(twice.path))
    flag = " --project" if twice.scope == "project" else ""
    keep = f"keep one: `slm-mesh uninstall {twice.agent}{flag}` takes them out of {where}"
    name = AGENT_NAMES[twice.agent]
    said = f"{where} ({twice.scope} scope) has slm-mesh's {twice.agent} hooks too"
    if twice.runs_twice:
        return (
            f"{said}: {name} runs the hooks of both, so each runs twice (every message "
            f"handed over twice, every tool call waiting for two hooks); {keep}"
        )
    return (
        f"{said}, with the same commands: {name} runs them once, but twice as soon as the "
        f"two differ (one installed again from another slm-mesh); {keep}"
    )


def _both_scopes(agent: str, project: Path | None, root: Path) -> Twice | None:
    """Our hooks of ``agent`` in this scope and in the other one too."""
    from slm_mesh.install.agents import installed_hooks

    try:
        here = installed_hooks(agent, project)
    except ConfigError:
        return None  # (its row says why)
    return in_other_scope(agent, project, root, here)


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
            twice = _both_scopes(agent, project, root) if agent != "git" else None
            rows.append(
                {
                    "agent": agent,
                    "scope": scope,
                    "installed": bool(paths),
                    "current": bool(paths) and current,
                    "files": paths,
                    "hooks_also_in": twice.scope if twice else None,
                    "hooks_run_twice": bool(twice and twice.runs_twice),
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
        if row.get("hooks_also_in"):
            other = row["hooks_also_in"]
            state += (
                f"; hooks in the {other} scope too: each runs twice, keep one"
                if row["hooks_run_twice"]
                else f"; hooks in the {other} scope too (the same: run once)"
            )
        where = ", ".join(home_relative(p) for p in row.get("files", []))
        table.append([row["agent"], row["scope"], state, where])
    out.table(["AGENT", "SCOPE", "STATE", "FILES"], table)
    return OK
