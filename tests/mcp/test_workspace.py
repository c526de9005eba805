"""The workspace a session registers: cwd, and git root and branch read from the files."""

from __future__ import annotations

import os
from pathlib import Path

from slm_mesh.mcp_server import workspace


def test_a_directory_inside_a_checkout_names_its_root_and_branch(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/feature/login\n")
    inside = tmp_path / "src" / "auth"
    inside.mkdir(parents=True)
    assert workspace.detect(inside) == workspace.Workspace(
        str(inside), str(tmp_path), "feature/login"
    )


def test_a_detached_head_is_named_by_its_commit(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("0123456789abcdef0123456789abcdef01234567\n")
    assert workspace.detect(tmp_path).git_branch == "detached@0123456789ab"


def test_a_worktree_follows_its_gitdir_file(tmp_path: Path) -> None:
    real = tmp_path / "main" / ".git" / "worktrees" / "wt"
    real.mkdir(parents=True)
    (real / "HEAD").write_text("ref: refs/heads/hotfix\n")
    tree = tmp_path / "wt"
    tree.mkdir()
    (tree / ".git").write_text("gitdir: ../main/.git/worktrees/wt\n")
    found = workspace.detect(tree)
    assert (found.git_root, found.git_branch) == (str(tree), "hotfix")


def test_outside_any_checkout_there_is_only_the_cwd(tmp_path: Path) -> None:
    assert workspace.detect(tmp_path) == workspace.Workspace(str(tmp_path))


def test_an_unreadable_head_gives_a_root_without_a_branch(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    assert workspace.detect(tmp_path) == workspace.Workspace(str(tmp_path), str(tmp_path), None)


def test_head_reads_the_branch_again_once_git_replaced_the_file(tmp_path: Path) -> None:
    git_dir = tmp_path / ".git"
    git_dir.mkdir()
    (git_dir / "HEAD").write_text("ref: refs/heads/main\n")
    head = workspace.Head(tmp_path / "sub")  # found from below, as a cwd is
    assert head.branch() == "main"
    (git_dir / "HEAD.lock").write_text("ref: refs/heads/feature-x\n")  # as git switches
    (git_dir / "HEAD.lock").replace(git_dir / "HEAD")
    assert head.branch() == "feature-x"


def test_head_rereads_on_request_what_a_stat_can_not_tell_apart(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    path = tmp_path / ".git" / "HEAD"
    path.write_text("ref: refs/heads/aaaa\n")
    head = workspace.Head(tmp_path)
    assert head.branch() == "aaaa"
    before = path.stat()
    path.write_text("ref: refs/heads/bbbb\n")  # in place, same size, same mtime
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert head.branch() == "aaaa"  # the stat is all it looks at
    assert head.branch(reread=True) == "bbbb"


def test_head_outside_a_checkout_or_unreadable_has_no_branch(tmp_path: Path) -> None:
    assert workspace.Head(tmp_path).branch() is None
    (tmp_path / ".git").mkdir()
    assert workspace.Head(tmp_path).branch() is None


def test_head_of_a_worktree_is_the_one_its_gitdir_file_names(tmp_path: Path) -> None:
    real = tmp_path / "main" / ".git" / "worktrees" / "wt"
    real.mkdir(parents=True)
    (real / "HEAD").write_text("ref: refs/heads/hotfix\n")
    (tmp_path / "main" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    tree = tmp_path / "wt"
    tree.mkdir()
    (tree / ".git").write_text("gitdir: ../main/.git/worktrees/wt\n")
    head = workspace.Head(tree)
    assert head.branch() == "hotfix"
    (real / "HEAD").write_text("ref: refs/heads/hotfix-2\n")
    assert head.branch() == "hotfix-2"


def test_a_branch_name_past_the_protocols_limit_is_cut_to_it(tmp_path: Path) -> None:
    """git takes a branch name longer than ``peer.register`` and ``peer.update`` do: both
    readers (the MCP server's, the hooks') cut it, so the session still joins, and a
    switch to it neither fails the ``peer.update`` nor every later resume."""
    from slm_mesh.hooks import process
    from slm_mesh.protocol.table import MAX_BRANCH_CHARS, METHODS

    for method in ("peer.register", "peer.update"):
        assert METHODS[method].by_name["git_branch"].max_chars == MAX_BRANCH_CHARS
    assert process.MAX_BRANCH_CHARS == MAX_BRANCH_CHARS  # (the hooks import no protocol)
    long = "feature/" + "step/" * 60
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text(f"ref: refs/heads/{long}\n")
    assert workspace.detect(tmp_path).git_branch == long[:MAX_BRANCH_CHARS]
    assert workspace.Head(tmp_path).branch() == long[:MAX_BRANCH_CHARS]
    assert process.workspace(str(tmp_path))["git_branch"] == long[:MAX_BRANCH_CHARS]
