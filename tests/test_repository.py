"""A repository's identity: one for every clone, on every machine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from slm_mesh import repository
from slm_mesh.mcp_server import workspace


@pytest.mark.parametrize(
    "url",
    [
        "git@github.com:Acme/App.git",
        "https://github.com/Acme/App",
        "https://user@GitHub.com/Acme/App.git/",
        "ssh://git@github.com:22/Acme/App.git",
        "git://github.com/Acme/App",
    ],
)
def test_every_spelling_of_one_remote_is_one_repository(url: str) -> None:
    assert repository.normalise_remote(url) == "github.com/Acme/App"


@pytest.mark.parametrize("url", ["/srv/git/app.git", "../app", "file:///srv/git/app.git", ""])
def test_a_local_remote_names_nothing_on_another_machine(url: str) -> None:
    assert repository.normalise_remote(url) is None


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True)


def test_two_clones_and_a_worktree_have_one_identity(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for clone in (a, b):
        clone.mkdir()
        _git(clone, "init", "-q")
    _git(a, "remote", "add", "origin", "git@github.com:acme/app.git")
    _git(b, "remote", "add", "upstream", "https://github.com/acme/app")
    assert workspace.detect(a).repo == workspace.detect(b).repo == "github.com/acme/app"
    _git(a, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "1")
    _git(a, "worktree", "add", "-q", str(tmp_path / "wt"))
    assert workspace.detect(tmp_path / "wt").repo == "github.com/acme/app"


def test_without_a_remote_the_root_commit_names_it(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    _git(
        tmp_path,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "first",
    )
    first = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    _git(
        tmp_path,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "second",
    )
    assert workspace.detect(tmp_path).repo == f"root:{first}"


def test_the_cli_finds_the_same_identity_from_the_root(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "remote", "add", "origin", "git@github.com:acme/app.git")
    assert repository.identity_of(tmp_path) == workspace.detect(tmp_path).repo
    assert repository.identity_of(tmp_path / "nowhere") is None
