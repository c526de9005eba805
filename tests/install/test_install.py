"""``slm-mesh install|uninstall AGENT``: merged into the files already there, twice is once,
round trips leave the user's bytes alone, what is written validates against the agents'
published schemas, a file that can't be parsed is refused."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from slm_mesh.install.files import BACKUP_SUFFIX
from tests.install.conftest import Run, validate

# A settings file as Claude Code writes it (JSON.stringify(x, null, 2)), with hooks and
# settings of the user's own.
CLAUDE_SETTINGS: dict[str, Any] = {
    "model": "opus",
    "permissions": {"allow": ["Bash(npm test:*)"]},
    "hooks": {
        "PreToolUse": [
            {"matcher": "Bash", "hooks": [{"type": "command", "command": "echo guard"}]}
        ],
        "Stop": [{"hooks": [{"type": "command", "command": "say done", "timeout": 5}]}],
    },
}
CODEX_HOOKS: dict[str, Any] = {
    "hooks": {
        "PostToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "lint"}]}]
    }
}
CODEX_CONFIG = """\
model = "gpt-5.5"

[mcp_servers.docs]
command = "docs-server"
args = ["--stdio"]

[projects."/work/x"]
trust_level = "trusted"
"""


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def as_claude_writes(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def our_commands(hooks: dict[str, Any]) -> dict[str, list[str]]:
    return {
        event: [
            h["command"]
            for group in groups
            for h in group.get("hooks", [group])
            if "slm_mesh/hooks/run.py" in h.get("command", "")
        ]
        for event, groups in hooks.items()
    }


def test_claude_install_merges_validates_and_round_trips(slm: Run, home: Path) -> None:
    settings = home / ".claude" / "settings.json"
    original = write(settings, as_claude_writes(CLAUDE_SETTINGS))
    state = home / ".claude.json"
    original_state = write(state, as_claude_writes({"numStartups": 3, "mcpServers": {}}))
    slm("install", "claude")
    installed = json.loads(settings.read_text())
    validate(installed, "claude-code-settings.json")
    assert (
        installed["model"] == "opus" and installed["permissions"] == CLAUDE_SETTINGS["permissions"]
    )
    hooks = installed["hooks"]
    assert hooks["PreToolUse"][0] == CLAUDE_SETTINGS["hooks"]["PreToolUse"][0]  # theirs first
    assert hooks["PreToolUse"][1]["matcher"] == "Edit|Write|MultiEdit|NotebookEdit"
    assert hooks["Stop"][0] == CLAUDE_SETTINGS["hooks"]["Stop"][0]
    stop = hooks["Stop"][1]["hooks"][0]
    assert stop["asyncRewake"] is True and stop["timeout"] > 8 * 3600
    assert sorted(our_commands(hooks)) == sorted(
        ["SessionStart", "UserPromptSubmit", "PreToolUse", "PostToolUse", "Stop", "SessionEnd"]
    )
    assert all(len(commands) == 1 for commands in our_commands(hooks).values())
    server = json.loads(state.read_text())["mcpServers"]["slm-mesh"]
    assert server["args"] == ["mcp"] and server["command"].endswith("slm-mesh")
    assert json.loads(state.read_text())["numStartups"] == 3
    assert (settings.parent / ("settings.json" + BACKUP_SUFFIX)).read_text() == original

    once = settings.read_text(), state.read_text()
    again = slm("install", "claude")
    assert (settings.read_text(), state.read_text()) == once  # twice is once
    assert "unchanged" in again.stdout

    slm("uninstall", "claude")
    assert settings.read_text() == original  # byte for byte
    assert state.read_text() == original_state


def test_claude_install_creates_what_is_missing_and_uninstall_removes_it(
    slm: Run, home: Path
) -> None:
    slm("install", "claude")
    validate(
        json.loads((home / ".claude" / "settings.json").read_text()), "claude-code-settings.json"
    )
    slm("uninstall", "claude")
    assert not (home / ".claude" / "settings.json").exists()
    assert not (home / ".claude.json").exists()


def claude_status(slm: Run) -> tuple[bool, bool]:
    """(installed, current) of Claude at user scope, as ``install --status`` says."""
    rows = json.loads(slm("install", "--status", "--json").stdout)["agents"]
    user = next(r for r in rows if r["agent"] == "claude" and r["scope"] == "user")
    return user["installed"], user["current"]


def test_a_handler_of_ours_moved_into_a_group_of_the_users_is_found(slm: Run, home: Path) -> None:
    """Installing again runs our hook once, not twice; uninstalling leaves none of ours;
    the user's handler and matcher stay where they were."""
    settings = home / ".claude" / "settings.json"
    slm("install", "claude")
    config = json.loads(settings.read_text())
    ours = config["hooks"]["PreToolUse"].pop()["hooks"][0]  # moved by hand into theirs:
    mine = {"type": "command", "command": "echo mine"}
    config["hooks"]["PreToolUse"].append({"matcher": "Edit|Write", "hooks": [mine, ours]})
    write(settings, as_claude_writes(config))
    assert claude_status(slm) == (True, False)  # ours, not as install writes it

    slm("install", "claude")
    hooks = json.loads(settings.read_text())["hooks"]
    validate({"hooks": hooks}, "claude-code-settings.json")
    assert our_commands(hooks)["PreToolUse"] == [ours["command"]]  # once
    assert {"matcher": "Edit|Write", "hooks": [mine]} in hooks["PreToolUse"]
    assert claude_status(slm) == (True, True)

    config = json.loads(settings.read_text())
    group = next(g for g in config["hooks"]["PreToolUse"] if g.get("matcher") == "Edit|Write")
    group["hooks"].append(config["hooks"]["PreToolUse"].pop()["hooks"][0])  # again by hand
    write(settings, as_claude_writes(config))
    slm("uninstall", "claude")
    left = json.loads(settings.read_text()) if settings.exists() else {}
    assert left.get("hooks") == {"PreToolUse": [{"matcher": "Edit|Write", "hooks": [mine]}]}


def test_an_mcp_entry_of_the_same_name_that_is_not_ours_is_kept(slm: Run, home: Path) -> None:
    theirs = {"mcpServers": {"slm-mesh": {"command": "/opt/fork/slm-mesh-dev", "args": ["serve"]}}}
    text = write(home / ".claude.json", as_claude_writes(theirs))
    out = slm("install", "claude")
    assert (home / ".claude.json").read_text() == text
    assert "MCP server kept" in out.stdout
    slm("uninstall", "claude")
    assert (home / ".claude.json").read_text() == text


def test_codex_install_validates_keeps_the_toml_and_round_trips(slm: Run, home: Path) -> None:
    hooks_file = home / ".codex" / "hooks.json"
    config = home / ".codex" / "config.toml"
    original_hooks = write(hooks_file, as_claude_writes(CODEX_HOOKS))
    write(config, CODEX_CONFIG)
    out = slm("install", "codex")
    assert "trusted" in out.stderr  # says how its hooks get trusted, and trusts nothing
    installed = json.loads(hooks_file.read_text())
    validate(installed, "codex-hooks.json")
    assert installed["hooks"]["PostToolUse"][0] == CODEX_HOOKS["hooks"]["PostToolUse"][0]
    assert installed["hooks"]["PreToolUse"][0]["matcher"] == "apply_patch|Edit|Write"
    parsed = tomllib.loads(config.read_text())
    assert parsed["mcp_servers"]["docs"] == {"command": "docs-server", "args": ["--stdio"]}
    ours = parsed["mcp_servers"]["slm-mesh"]
    assert ours["args"] == ["mcp"] and "SLM_MESH_DATA_DIR" in ours["env_vars"]
    assert ours["default_tools_approval_mode"] == "approve"
    assert "hooks" not in parsed  # trust is the user's to give
    assert config.read_text().startswith(CODEX_CONFIG)
    once = hooks_file.read_text(), config.read_text()
    slm("install", "codex")
    assert (hooks_file.read_text(), config.read_text()) == once
    slm("uninstall", "codex")
    assert hooks_file.read_text() == original_hooks
    assert config.read_text() == CODEX_CONFIG


def test_codex_home_moves_the_files(slm: Run, tmp_short: Path) -> None:
    codex_home = tmp_short / "codex-home"
    slm("install", "codex", CODEX_HOME=str(codex_home))
    validate(json.loads((codex_home / "hooks.json").read_text()), "codex-hooks.json")
    assert (codex_home / "config.toml").exists()


def test_gemini_and_cursor_round_trip(slm: Run, home: Path) -> None:
    gemini = home / ".gemini" / "settings.json"
    original = write(gemini, as_claude_writes({"theme": "GitHub"}))
    slm("install", "gemini")
    config = json.loads(gemini.read_text())
    assert config["theme"] == "GitHub" and set(config["mcpServers"]) == {"slm-mesh"}
    assert config["hooks"]["BeforeTool"][0]["matcher"] == "write_file|replace"
    assert config["hooks"]["SessionStart"][0]["hooks"][0]["timeout"] == 15_000  # milliseconds
    slm("uninstall", "gemini")
    assert gemini.read_text() == original

    slm("install", "cursor")
    hooks = json.loads((home / ".cursor" / "hooks.json").read_text())
    assert hooks["version"] == 1
    assert hooks["hooks"]["preToolUse"][0]["matcher"] == "Write|Edit|MultiEdit|Delete"
    assert set(json.loads((home / ".cursor" / "mcp.json").read_text())["mcpServers"]) == {
        "slm-mesh"
    }
    slm("uninstall", "cursor")
    assert not (home / ".cursor" / "hooks.json").exists()
    assert not (home / ".cursor" / "mcp.json").exists()


def test_project_scope_writes_the_repositorys_files(slm: Run, home: Path, repo: Path) -> None:
    slm("install", "claude", "--project")
    validate(
        json.loads((repo / ".claude" / "settings.local.json").read_text()),
        "claude-code-settings.json",
    )
    assert "slm-mesh" in json.loads((repo / ".mcp.json").read_text())["mcpServers"]
    assert not (home / ".claude").exists()
    status = json.loads(slm("install", "--status", "--json").stdout)["agents"]
    claude = {row["scope"]: row for row in status if row["agent"] == "claude"}
    assert (claude["project"]["installed"], claude["project"]["current"]) == (True, True)
    assert claude["user"]["installed"] is False
    assert slm("install", "claude", "--project", "--user", ok=False).returncode == 2


def test_dry_run_prints_the_diff_and_writes_nothing(slm: Run, home: Path) -> None:
    settings = home / ".claude" / "settings.json"
    original = write(settings, as_claude_writes(CLAUDE_SETTINGS))
    out = slm("install", "claude", "--dry-run")
    assert (
        "+++ " in out.stdout
        and '+        "matcher": "Edit|Write|MultiEdit|NotebookEdit",' in out.stdout
    )
    assert settings.read_text() == original
    assert not (home / ".claude.json").exists()
    as_json = json.loads(slm("install", "claude", "--dry-run", "--json").stdout)
    assert [f["changed"] for f in as_json["files"]] == [True, True]
    assert settings.read_text() == original


@pytest.mark.parametrize(
    ("agent", "relative", "broken", "where"),
    [
        (
            "claude",
            ".claude/settings.json",
            '{\n  "model": "opus",\n  "hooks": {,\n}\n',
            "line 3, column 13",
        ),
        ("codex", ".codex/config.toml", 'model = "x"\n[mcp_servers\n', "line 2, column 13"),
    ],
)
def test_a_file_that_cannot_be_parsed_is_refused_with_line_and_column(
    slm: Run, home: Path, agent: str, relative: str, broken: str, where: str
) -> None:
    write(home / relative, broken)
    done = slm("install", agent, ok=False)
    assert done.returncode == 1
    assert where in done.stderr and "nothing was changed" in done.stderr
    assert (home / relative).read_text() == broken
    assert sorted(p.name for p in home.rglob("*") if p.is_file()) == [Path(relative).name]


def test_a_settings_file_that_is_a_symlink_stays_one(slm: Run, home: Path, tmp_short: Path) -> None:
    dotfiles = tmp_short / "dotfiles" / "claude-settings.json"
    original = write(dotfiles, as_claude_writes(CLAUDE_SETTINGS))
    link = home / ".claude" / "settings.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(dotfiles)
    slm("install", "claude")
    assert link.is_symlink() and link.resolve() == dotfiles  # the link is kept, its file changed
    assert "slm_mesh/hooks/run.py" in dotfiles.read_text()
    slm("uninstall", "claude")
    assert link.is_symlink() and dotfiles.read_text() == original


def test_an_mcp_servers_value_that_is_not_an_object_is_refused_not_replaced(
    slm: Run, home: Path
) -> None:
    text = write(home / ".cursor" / "mcp.json", as_claude_writes({"mcpServers": ["mine"]}))
    done = slm("install", "cursor", ok=False)
    assert done.returncode == 1
    assert f'{home}/.cursor/mcp.json: "mcpServers" is not an object' in done.stderr
    assert (home / ".cursor" / "mcp.json").read_text() == text
    assert not (home / ".cursor" / "hooks.json").exists()  # nothing written, for any file


def test_a_file_that_cannot_be_written_is_a_clear_error(slm: Run, home: Path) -> None:
    link = home / ".cursor" / "mcp.json"
    link.parent.mkdir(parents=True)
    link.symlink_to("/proc/slm-mesh-test.json")  # a folder nobody can create files in
    done = slm("install", "cursor", ok=False)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert f"can't write {link} (a link to /proc/slm-mesh-test.json): " in done.stderr
    assert f"{home}/.cursor/hooks.json was written" in done.stderr  # (the file before it)
