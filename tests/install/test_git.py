"""``slm-mesh install git``: a pre-commit hook that refuses a commit of files another live
session holds, chaining the hook that was there."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from slm_mesh.config import Settings
from tests.install.conftest import Run
from tests.wire import LineClient, broker_env, broker_process

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(settings: Settings, repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**broker_env(settings), **GIT_ENV}
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def staged(settings: Settings, repo: Path) -> Path:
    (repo / "src").mkdir()
    (repo / "src" / "a.py").write_text("a = 1\n")
    (repo / "README").write_text("hi\n")
    assert git(settings, repo, "add", "src/a.py", "README").returncode == 0
    return repo


@pytest.fixture
def holder(settings: Settings, staged: Path) -> Iterator[LineClient]:
    with broker_process(settings):
        client = LineClient(settings.socket_path)
        client.call(
            "peer.register", name="backend", agent="codex", cwd=str(staged), summary="auth rework"
        )
        try:
            yield client
        finally:
            client.close()


def test_a_commit_of_a_held_file_is_refused_until_it_is_released(
    settings: Settings, slm: Run, staged: Path, holder: LineClient
) -> None:
    hooks = staged / ".git" / "hooks"
    earlier = hooks / "pre-commit"
    earlier.write_text('#!/bin/sh\necho ran >> "$(git rev-parse --git-dir)/earlier-hook"\n')
    earlier.chmod(0o755)
    slm("install", "git")
    assert (hooks / "pre-commit.slm-mesh-chained").exists()
    holder.call("lock.acquire", path="src/a.py", reason="rewriting")

    refused = git(settings, staged, "commit", "-m", "change")
    assert refused.returncode == 1
    assert "slm-mesh: this commit has files that another session holds:" in refused.stderr
    assert '  src/a.py: locked by "backend" (codex) for 10 more min, working on "auth rework"' in (
        refused.stderr
    )
    assert "README" not in refused.stderr
    assert (staged / ".git" / "earlier-hook").read_text() == "ran\n"  # chained, ran first

    holder.call("lock.release", path="src/a.py")
    assert git(settings, staged, "commit", "-m", "change").returncode == 0

    slm("uninstall", "git")
    assert earlier.read_text().startswith("#!/bin/sh\necho ran")  # put back
    assert os.access(earlier, os.X_OK)
    assert not (hooks / "pre-commit.slm-mesh-chained").exists()


def test_the_committers_own_lock_does_not_refuse_its_commit(
    settings: Settings, slm: Run, staged: Path, holder: LineClient
) -> None:
    slm("install", "git")
    me = LineClient(settings.socket_path)  # a session of the process that runs git: us
    try:
        me.call("peer.register", name="me", cwd=str(staged), pid=os.getpid())
        me.call("lock.acquire", path="src/**")
        assert git(settings, staged, "commit", "-m", "mine").returncode == 0
    finally:
        me.close()


def test_without_a_broker_the_commit_goes_through(
    settings: Settings, slm: Run, staged: Path
) -> None:
    slm("install", "git")
    done = git(settings, staged, "commit", "-m", "x")
    assert done.returncode == 0, done.stderr
    assert "slm-mesh" not in done.stderr


def test_the_hook_is_executable_and_a_disabled_one_stays_disabled(
    settings: Settings, slm: Run, repo: Path
) -> None:
    hooks = repo / ".git" / "hooks"
    earlier = hooks / "pre-commit"
    earlier.write_text("#!/bin/sh\nexit 1\n")  # switched off by its owner: not executable
    earlier.chmod(0o644)
    slm("install", "git")
    assert os.access(earlier, os.X_OK)  # ours runs, or git skips it silently
    assert (hooks / "pre-commit.slm-mesh-chained").stat().st_mode & 0o777 == 0o644
    slm("uninstall", "git")
    assert earlier.read_text() == "#!/bin/sh\nexit 1\n"
    assert earlier.stat().st_mode & 0o777 == 0o644  # still switched off
