"""A hooks-only session is in its repository, as an MCP server's session is: the broker
works its identity out (the hooks send only the git root), so a lock or an edit in one
clone counts in every clone of the repository, and ``scope: repo`` finds it. On both
stores; several machines are in ``tests/multi/test_hooks.py``."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slm_mesh.config import Settings
from tests import stores
from tests.gitcmd import git
from tests.hooks.conftest import Agent, agent_process
from tests.wire import LineClient, broker_process, make_settings

pytest_generate_tests = stores.parametrize
REMOTE = "git@github.com:acme/app.git"
IDENTITY = "github.com/acme/app"


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(store: str, tmp_short: Path, request: pytest.FixtureRequest) -> Settings:
    return stores.on(make_settings(tmp_short), store, request)


@pytest.fixture
def broker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    with broker_process(settings) as proc:
        yield proc


def repository(path: Path, remote: str | None) -> Path:
    """A real repository with one commit (and ``remote`` as origin)."""
    (path / "src").mkdir(parents=True)
    git(path, "init", "-q")
    (path / "src" / "app.py").write_text("x = 1\n")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "first")
    if remote:
        git(path, "remote", "add", "origin", remote)
    return path


def other_clone(of: Path, to: Path) -> Path:
    """A copy of ``of`` elsewhere: another clone of the same repository (same remote,
    same root commit)."""
    shutil.copytree(of, to, symlinks=True)
    return to


def edit(agent: Agent, path: Path) -> dict[str, Any] | None:
    return agent.output("PreToolUse", tool_name="Edit", tool_input={"file_path": str(path)})


@pytest.mark.parametrize(
    "remote",
    [pytest.param(REMOTE, id="remote"), pytest.param(None, id="root-commit")],
)
def test_a_hooks_only_session_meets_the_sessions_of_every_clone(
    settings: Settings, broker: subprocess.Popen[bytes], tmp_short: Path, remote: str | None
) -> None:
    here = repository(tmp_short / "here", remote)
    there = other_clone(here, tmp_short / "there")
    root = git(here, "rev-list", "--max-parents=0", "HEAD")
    other = LineClient(settings.socket_path)  # a raw client in the other clone: no repo given
    try:
        other.call("peer.register", name="other", cwd=str(there), git_root=str(there))
        with agent_process(settings, here, kind="codex") as agent:
            agent.output("SessionStart", source="startup")
            [mine] = other.call("peer.list", scope="repo")["peers"]
            assert (mine["agent"], mine["lifetime"], mine["git_root"]) == (
                "codex",
                "process",
                str(here),
            )
            assert mine["repo"] == (IDENTITY if remote else f"root:{root}")

            other.call("lock.acquire", path="src/app.py", reason="rewriting it")
            answer = edit(agent, here / "src" / "app.py")
            assert answer is not None and "deny" in str(answer)
            assert 'src/app.py is locked by another session, "other"' in str(answer)
            other.call("lock.release", path="src/app.py")

            other.call("file.edited", paths=["src/app.py"])
            warned = edit(agent, here / "src" / "app.py")
            assert warned is not None
            assert '"other" edited src/app.py' in str(warned) and "without a lock" in str(warned)
    finally:
        other.close()


def test_a_lock_the_hooks_took_in_one_clone_holds_in_the_other(
    settings: Settings, broker: subprocess.Popen[bytes], tmp_short: Path
) -> None:
    here = repository(tmp_short / "here", REMOTE)
    there = other_clone(here, tmp_short / "there")
    other = LineClient(settings.socket_path)
    try:
        other.call(
            "peer.register", name="other", cwd=str(there), git_root=str(there), repo=IDENTITY
        )
        with agent_process(settings, here, kind="claude") as agent:
            agent.env_extra["SLM_MESH_AUTOLOCK"] = "1"
            agent.output("SessionStart", source="startup")
            agent.output(
                "PostToolUse",
                tool_name="Edit",
                tool_input={"file_path": str(here / "src" / "app.py")},
                tool_response={"success": True},
            )
            refused = other.request("lock.acquire", path="src/app.py")["error"]
            assert refused["code"] == -32003
            assert refused["data"]["holders"][0]["agent"] == "claude-code"
    finally:
        other.close()


def test_a_hooks_only_session_that_moves_is_found_in_its_new_repository(
    settings: Settings, broker: subprocess.Popen[bytes], tmp_short: Path
) -> None:
    """Following the agent (mesh/sessions.py rule 3) on this store: the broker names the
    repository it moved into, and ``scope: repo`` finds it there, not where it started."""
    here = repository(tmp_short / "here", REMOTE)
    elsewhere = repository(tmp_short / "elsewhere", "git@github.com:acme/lib.git")
    git(elsewhere, "switch", "-q", "-c", "dev")
    watcher = LineClient(settings.socket_path)
    try:
        with agent_process(settings, here, kind="claude") as agent:
            agent.output("SessionStart", source="startup")
            [mine] = watcher.call("peer.list", scope="repo", repo=IDENTITY)["peers"]
            agent.output("UserPromptSubmit", prompt="go on", cwd=str(elsewhere))
            found = watcher.call("peer.list", scope="repo", repo="github.com/acme/lib")["peers"]
            assert [(p["peer_id"], p["git_root"], p["git_branch"]) for p in found] == [
                (mine["peer_id"], str(elsewhere), "dev")
            ]
            assert watcher.call("peer.list", scope="repo", repo=IDENTITY)["peers"] == []
            read = watcher.call("event.read", types=["peer_updated"])
            assert [(e["data"]["repo"], e["data"]["git_branch"]) for e in read["events"]] == [
                ("github.com/acme/lib", "dev")
            ]
            agent.output("UserPromptSubmit", prompt="again", cwd=str(elsewhere))
            again = watcher.call("event.read", types=["peer_updated"])["events"]
            assert len(again) == 1  # where it was: nothing written, no event
    finally:
        watcher.close()
