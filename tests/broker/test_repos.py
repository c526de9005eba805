"""The broker works out the repository of a session that registers without one (the hooks
send only the git root): from the remote in its config, else from its root commit, which
``git`` tells in a worker thread while the line waits (``broker/repos.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from slm_mesh.broker.repos import Repositories
from slm_mesh.config import Settings
from slm_mesh.protocol.jsonrpc import parse_line
from tests.gitcmd import git
from tests.wire import in_process_broker

REMOTE = "https://github.com/Acme/App.git"


def repository(path: Path, *, remote: str | None = None, commit: bool = True) -> Path:
    path.mkdir(parents=True)
    git(path, "init", "-q")
    if commit:
        git(path, "commit", "-q", "--allow-empty", "-m", "first")
    if remote:
        git(path, "remote", "add", "origin", remote)
    return path


def register_line(root: Path, **more: object) -> bytes:
    params = {"name": "hooks", "cwd": str(root), "git_root": str(root), **more}
    calls = [
        {"jsonrpc": "2.0", "id": 1, "method": "peer.register", "params": params},
        {"jsonrpc": "2.0", "id": 2, "method": "peer.whoami", "params": {}},
    ]
    return json.dumps(calls).encode()


async def test_a_registration_without_a_repo_gets_the_remote_of_its_repository(
    settings: Settings, tmp_short: Path
) -> None:
    root = repository(tmp_short / "app", remote=REMOTE, commit=False)
    async with in_process_broker(settings) as b:
        conn = await b.connect()
        await conn.register("hooks", cwd=str(root), git_root=str(root))
        me = await conn.call("peer.whoami")
        assert me["repo"] == "github.com/Acme/App"


async def test_without_a_remote_the_root_commit_is_learned_before_the_batch_goes_on(
    settings: Settings, tmp_short: Path
) -> None:
    root = repository(tmp_short / "app")
    first = git(root, "rev-list", "--max-parents=0", "HEAD")
    async with in_process_broker(settings) as b:
        conn = await b.connect()
        with trio.fail_after(30):
            await conn.send_line(register_line(root))
            registered, whoami = sorted(await conn.answer(), key=lambda a: a["id"])
        assert "result" in registered, registered
        assert whoami["result"]["repo"] == f"root:{first}"  # the batch's second call saw it


async def test_a_repo_the_session_gives_is_kept(settings: Settings, tmp_short: Path) -> None:
    root = repository(tmp_short / "app", remote=REMOTE, commit=False)
    async with in_process_broker(settings) as b:
        conn = await b.connect()
        await conn.register("mcp", cwd=str(root), git_root=str(root), repo="example.org/mine")
        assert (await conn.call("peer.whoami"))["repo"] == "example.org/mine"


def test_a_remote_added_later_is_read_at_the_next_registration(tmp_short: Path) -> None:
    root = repository(tmp_short / "app", commit=False)
    repos = Repositories()
    assert repos.from_files(str(root)) == (False, None)  # only git can tell (no commit yet)
    git(root, "remote", "add", "origin", "git@gitlab.com:team/app.git")
    assert repos.from_files(str(root)) == (True, "gitlab.com/team/app")


def test_a_folder_that_is_no_repository_has_no_identity_and_asks_no_git(tmp_short: Path) -> None:
    folder = tmp_short / "plain"
    folder.mkdir()
    repos = Repositories()
    assert repos.from_files(str(folder)) == (True, None)
    line = register_line(folder)
    assert repos.to_learn(parse_line(line)) == []


async def test_a_worktree_reads_the_config_of_its_repository(tmp_short: Path) -> None:
    main = repository(tmp_short / "app", remote=REMOTE)
    git(main, "worktree", "add", "-q", str(tmp_short / "wt"))
    repos = Repositories()
    assert repos.from_files(str(tmp_short / "wt")) == (True, "github.com/Acme/App")
    git(main, "remote", "remove", "origin")
    first = git(main, "rev-list", "--max-parents=0", "HEAD")
    parsed = parse_line(register_line(tmp_short / "wt"))
    assert repos.to_learn(parsed) == [str(tmp_short / "wt")]
    with trio.fail_after(30):
        await repos.learn(repos.to_learn(parsed))
    assert repos.from_files(str(tmp_short / "wt")) == (True, f"root:{first}")
    assert repos.to_learn(parsed) == []  # remembered: git runs once
