"""Which agent the server registers as: clientInfo first, then environment, then the
process tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from slm_mesh.mcp_server import agent


@pytest.mark.parametrize(
    ("client_name", "expected"),
    [
        ("claude-code", "claude-code"),
        ("Claude Code", "claude-code"),
        ("cursor-vscode", "cursor"),
        ("codex-mcp-client", "codex"),
        ("Windsurf", "windsurf"),
        ("Visual Studio Code", "vscode"),
        ("gemini-cli-mcp-client", "gemini-cli"),
        ("aider", "aider"),
        ("my-own-client", None),
        (None, None),
    ],
)
def test_a_client_name_names_its_agent(client_name: str | None, expected: str | None) -> None:
    assert agent.from_client_name(client_name) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CLAUDECODE": "1"}, "claude-code"),
        ({"CURSOR_TRACE_ID": "x", "TERM_PROGRAM": "vscode"}, "cursor"),
        ({"CODEX_SANDBOX": "seatbelt"}, "codex"),
        ({"WINDSURF_SESSION": "1", "TERM_PROGRAM": "vscode"}, "windsurf"),
        ({"GEMINI_CLI": "1"}, "gemini-cli"),
        ({"TERM_PROGRAM": "vscode"}, "vscode"),
        ({"TERM_PROGRAM": "iTerm.app"}, None),
        ({}, None),
    ],
)
def test_the_environment_gives_the_agent_away(env: dict[str, str], expected: str | None) -> None:
    assert agent.from_environment(env) == expected


def fake_proc(tmp_path: Path, tree: dict[int, tuple[str, int, list[str]]]) -> Path:
    """A /proc with ``pid: (comm, ppid, argv)`` entries."""
    for pid, (comm, ppid, argv) in tree.items():
        folder = tmp_path / str(pid)
        folder.mkdir()
        (folder / "stat").write_text(f"{pid} ({comm}) S {ppid} 1 1 0")
        (folder / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    return tmp_path


def test_an_ancestor_process_gives_the_agent_away(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        {
            40: ("sh", 30, ["/bin/sh", "-c", "slm-mesh mcp"]),
            30: ("node", 20, ["node", "/usr/lib/node_modules/.bin/claude"]),
            20: ("bash", 1, ["bash"]),
        },
    )
    assert agent.from_process_tree(40, proc=proc) == "claude-code"


def test_a_comm_with_spaces_and_parens_is_read_whole(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {50: ("x) S 1 (codex", 51, []), 51: ("codex", 1, [])})
    # The first process is not "codex" (its name only contains it); its parent is.
    assert agent.from_process_tree(50, proc=proc) == "codex"


def test_the_process_tree_search_stops_at_init_or_a_missing_process(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {60: ("bash", 61, ["bash"])})
    assert agent.from_process_tree(60, proc=proc) is None
    assert agent.from_process_tree(1, proc=proc) is None


def test_client_info_wins_then_the_environment_then_the_raw_client_name() -> None:
    no_tree = 1  # pid 1: the tree search ends at once
    assert agent.detect("cursor", {"CLAUDECODE": "1"}, no_tree) == "cursor"
    assert agent.detect("some client", {"CLAUDECODE": "1"}, no_tree) == "claude-code"
    assert agent.detect("Some Client/2.0", {}, no_tree) == "some-client-2.0"
    assert agent.detect(None, {}, no_tree) == "unknown"


def test_a_launcher_may_name_the_agent_s_pid() -> None:
    assert agent.agent_pid({"SLM_MESH_AGENT_PID": "4242"}) == 4242
    assert agent.agent_pid({"SLM_MESH_AGENT_PID": "nonsense"}) > 0
