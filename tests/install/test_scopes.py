"""Our hooks for one agent in both scopes (the user's files and the project's): ``install``
warns on stderr, ``install --status`` flags both rows (see ``slm_mesh/install/scopes.py``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from slm_mesh.config import Settings
from slm_mesh.install import scopes
from slm_mesh.install.agents import hooks_file, hooks_to_install
from tests.hooks.model_server import ModelServer, Turn, text
from tests.hooks.test_claude_code import CLAUDE_BOUND_S, claude_env
from tests.install.conftest import Run
from tests.outside import require

# A hook of ours written by another installation of slm-mesh (another Python, another path).
OTHER_INSTALL = (
    "/opt/other/bin/python -I -S /opt/other/lib/slm_mesh/hooks/run.py PostToolUse --agent claude"
)


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("slm-mesh: warning: ")]


def status_of(slm: Run, agent: str) -> dict[str, dict[str, Any]]:
    rows = json.loads(slm("install", "--status", "--json").stdout)["agents"]
    return {row["scope"]: row for row in rows if row["agent"] == agent}


def test_installing_claude_in_the_second_scope_warns_and_status_flags_both(
    slm: Run, home: Path, repo: Path
) -> None:
    assert warnings(slm("install", "claude").stderr) == []  # one scope: nothing to say
    done = slm("install", "claude", "--project")
    assert done.returncode == 0  # a warning, not an error: both are written
    assert (repo / ".claude" / "settings.local.json").exists()
    [warning] = warnings(done.stderr)
    # The same installation wrote both: Claude Code runs identical commands once.
    assert "~/.claude/settings.json (user scope) has slm-mesh's claude hooks too" in warning
    assert "with the same commands: Claude Code runs them once, but twice as soon" in warning
    assert "keep one: `slm-mesh uninstall claude` takes them out of ~/.claude/settings.json" in (
        warning
    )
    [again] = warnings(slm("install", "claude").stderr)  # and the other way round
    assert f"{repo}/.claude/settings.local.json (project scope) has slm-mesh's" in again
    assert "`slm-mesh uninstall claude --project`" in again
    claude = status_of(slm, "claude")
    assert (claude["user"]["hooks_also_in"], claude["project"]["hooks_also_in"]) == (
        "project",
        "user",
    )
    assert not claude["user"]["hooks_run_twice"]
    assert (
        "hooks in the project scope too (the same: run once)" in slm("install", "--status").stdout
    )

    slm("uninstall", "claude", "--project")
    assert status_of(slm, "claude")["user"]["hooks_also_in"] is None
    assert warnings(slm("install", "claude").stderr) == []


def test_claude_hooks_of_another_installation_in_the_other_scope_run_twice(
    slm: Run, home: Path, repo: Path
) -> None:
    settings = repo / ".claude" / "settings.local.json"
    settings.parent.mkdir()
    group = {"hooks": [{"type": "command", "command": OTHER_INSTALL}]}
    settings.write_text(json.dumps({"hooks": {"PostToolUse": [group]}}))
    done = slm("install", "claude", "--json")
    assert json.loads(done.stdout)["warnings"] == [
        w.removeprefix("slm-mesh: warning: ") for w in warnings(done.stderr)
    ]
    [warning] = warnings(done.stderr)
    assert "(project scope) has slm-mesh's claude hooks too: Claude Code runs the hooks of " in (
        warning
    )
    assert "so each runs twice (every message handed over twice" in warning
    claude = status_of(slm, "claude")
    assert claude["user"]["hooks_run_twice"] and claude["project"]["hooks_run_twice"]
    text = slm("install", "--status").stdout
    assert text.count("hooks in the user scope too: each runs twice, keep one") == 1
    assert text.count("hooks in the project scope too: each runs twice, keep one") == 1


@pytest.mark.parametrize("agent", ["codex", "gemini", "cursor"])
def test_other_agents_in_both_scopes_are_warned_of_as_running_twice(
    slm: Run, home: Path, agent: str
) -> None:
    slm("install", agent, "--project")
    done = slm("install", agent, "--dry-run")  # a dry run warns too: it is about what is there
    [warning] = warnings(done.stderr)
    assert f"(project scope) has slm-mesh's {agent} hooks too: " in warning
    assert "so each runs twice" in warning
    assert warnings(slm("install", agent, "--project").stderr) == []  # the user's has none
    assert status_of(slm, agent)["project"]["hooks_also_in"] is None


def test_a_project_at_the_home_folder_shares_the_users_file(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CODEX_HOME", raising=False)
    assert hooks_file("codex", None).path == hooks_file("codex", home).path
    path = hooks_file("codex", None).path
    path.parent.mkdir()
    ours = hooks_to_install("codex")
    path.write_text(json.dumps({"hooks": {"Stop": [{"hooks": [{"command": sorted(ours)[0]}]}]}}))
    assert scopes.in_other_scope("codex", None, home, ours) is None  # one file: one copy
    elsewhere = home / "elsewhere"
    twice = scopes.in_other_scope("codex", elsewhere, elsewhere, ours)
    assert twice is not None and (twice.scope, twice.path) == ("user", path)


@pytest.fixture
def claude() -> str:
    return require("claude")


@pytest.mark.needs("claude")
def test_claude_code_runs_a_hook_command_in_both_scopes_once_and_two_different_ones_both(
    settings: Settings, home: Path, repo: Path, tmp_short: Path, claude: str
) -> None:
    """What ``RUN_IDENTICAL_ONCE`` says of Claude Code, checked with the real CLI."""
    log = tmp_short / "ran"

    def hooks(tag: str) -> str:
        command = f"sh -c 'echo {tag} >> {log}'"
        group = {"hooks": [{"type": "command", "command": command, "timeout": 10}]}
        return json.dumps({"hooks": {"UserPromptSubmit": [group]}})

    (home / ".claude").mkdir()
    (repo / ".claude").mkdir()
    (home / ".claude" / "settings.json").write_text(hooks("same"))
    ran = []
    for project_tag in ("same", "other"):
        (repo / ".claude" / "settings.local.json").write_text(hooks(project_tag))
        log.unlink(missing_ok=True)
        server = ModelServer([Turn([text("hi")])])
        with server.serve():
            done = subprocess.run(
                [claude, "-p", "hello", "--output-format", "json"],
                env=claude_env(settings, home, server.url),
                cwd=repo,
                capture_output=True,
                text=True,
                timeout=CLAUDE_BOUND_S,
                check=False,
            )
        assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
        ran.append(sorted(log.read_text().split()))
    assert ran == [["same"], ["other", "same"]]
    assert "claude" in scopes.RUN_IDENTICAL_ONCE
