"""The hook's path stays lean (it runs at every tool call of every agent), and its
hand-rolled pieces agree with the stdlib-based ones they stand in for."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from slm_mesh import locations
from slm_mesh.hooks import connection, process
from slm_mesh.mcp_server import workspace
from tests.hooks.conftest import RUN

# Python wrappers whose imports would cost a hook more than its work, and the heavy parts
# of the package.
HEAVY_STDLIB = {
    "os", "json", "re", "enum", "typing", "socket", "signal", "selectors", "subprocess",
    "dataclasses", "pathlib", "logging", "threading",
}  # fmt: skip
HEAVY_PREFIXES = ("mcp", "trio", "anyio", "pydantic", "cyclopts", "sqlite", "slm_mesh.cli")
ALL_MODULES = (
    "slm_mesh.hooks.main, slm_mesh.hooks.briefing, slm_mesh.hooks.guard, "
    "slm_mesh.hooks.delivery, slm_mesh.hooks.git_commit"
)


def imported_by(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_every_event_path_imports_only_c_modules_of_the_stdlib() -> None:
    baseline = imported_by("pass")
    src = str(RUN.parents[2])
    loaded = imported_by(f"import sys; sys.path.insert(0, {src!r}); import {ALL_MODULES}")
    new = loaded - baseline
    assert new & HEAVY_STDLIB == set()
    assert not any(name.startswith(HEAVY_PREFIXES) for name in new), sorted(new)
    assert {n for n in new if not n.startswith("slm_mesh")} <= {
        "_json", "_socket", "__future__", "posix", "pwd", "time"
    }  # fmt: skip


def test_the_installed_entry_runs_without_site(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(RUN), "Notification"],
        input=b"{}",
        capture_output=True,
        env={"SLM_MESH_DATA_DIR": str(tmp_path), "PATH": os.environ.get("PATH", "")},
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, b"", b"")


ENVS = [
    {},
    {"SLM_MESH_DATA_DIR": "~/mesh"},
    {"SLM_MESH_DATA_DIR": "/srv/mesh/"},
    {"XDG_RUNTIME_DIR": "/run/user/1000"},
    {"XDG_RUNTIME_DIR": "/run/user/1000", "SLM_MESH_DATA_DIR": "/d"},
    {"SLM_MESH_SOCKET": "~/s.sock"},
    {"SLM_MESH_SOCKET": "/x/y.sock", "SLM_MESH_DATA_DIR": "/d"},
]


@pytest.mark.parametrize("env", ENVS)
def test_where_the_broker_listens_is_read_as_locations_reads_it(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name in ("SLM_MESH_DATA_DIR", "SLM_MESH_SOCKET", "XDG_RUNTIME_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    data = locations.data_dir()
    assert connection.data_dir() == data
    assert connection.socket_path(data) == locations.socket_path(data)


def repo_layouts(root: Path) -> list[Path]:
    """Folders to detect from: a repo, a subfolder, a worktree (.git file), detached HEAD,
    a relative gitdir, and no repo at all."""
    plain = root / "plain"
    (plain / ".git").mkdir(parents=True)
    (plain / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (plain / "a" / "b").mkdir(parents=True)
    gitdir = root / "store" / "worktrees" / "wt"
    gitdir.mkdir(parents=True)
    (gitdir / "HEAD").write_text("0123456789abcdef0123456789abcdef01234567\n")
    worktree = root / "wt"
    worktree.mkdir()
    (worktree / ".git").write_text(f"gitdir: {gitdir}\n")
    relative = root / "rel"
    relative.mkdir()
    (relative / ".git").write_text("gitdir: ../store/worktrees/wt\n")
    bad = root / "bad"
    bad.mkdir()
    (bad / ".git").write_text("nonsense\n")
    nothing = root / "nothing"
    nothing.mkdir()
    return [plain, plain / "a" / "b", worktree, relative, bad, nothing]


def test_the_workspace_is_read_as_the_mcp_server_reads_it(tmp_path: Path) -> None:
    for folder in repo_layouts(tmp_path):
        theirs = workspace.detect(folder)
        mine = process.workspace(str(folder))
        assert mine.get("git_root") == theirs.git_root, folder
        assert mine.get("git_branch") == theirs.git_branch, folder
        assert mine["cwd"] == theirs.cwd


def test_the_agent_is_the_nearest_ancestor_that_is_not_a_shell(tmp_path: Path) -> None:
    script = tmp_path / "whose.py"
    script.write_text(
        f"import sys; sys.path.insert(0, {str(RUN.parents[2])!r})\n"
        "from slm_mesh.hooks import process\n"
        "print(process.agent_pid())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != process.AGENT_PID_ENV}
    # us → sh → sh → python: the agent is us; the shells ran the command for us (the inner
    # one is made to stay, as a shell does when the command is not its last).
    inner = shlex.quote(f"{shlex.quote(sys.executable)} -I -S {shlex.quote(str(script))}; true")
    done = subprocess.run(
        ["sh", "-c", f"sh -c {inner}; true"], capture_output=True, text=True, env=env, check=True
    )
    assert int(done.stdout) == os.getpid()
    assert process.agent_pid("4242", 1) == 4242  # given, and not a process we can read
    assert process.agent_pid("", os.getpid()) == os.getpid()
