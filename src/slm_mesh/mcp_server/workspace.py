"""Where the agent works: its directory, and the git repository and branch around it.

Git is read from the files, not by running ``git`` (a subprocess would cost more than the
whole registration): walk up from the cwd to the first ``.git``; a ``.git`` *file* (a
worktree or submodule) points with ``gitdir: …`` at the real git dir; its ``HEAD`` holds
``ref: refs/heads/<branch>``, or a commit id when detached.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from slm_mesh import repository
from slm_mesh.protocol.table import MAX_BRANCH_CHARS

DETACHED_PREFIX = "detached@"
SHORT_SHA = 12


@dataclass(frozen=True, slots=True)
class Workspace:
    cwd: str
    git_root: str | None = None
    git_branch: str | None = None
    repo: str | None = None  # the repository's identity (slm_mesh.repository)


def detect(cwd: Path | None = None) -> Workspace:
    """The workspace of ``cwd`` (the process's working directory by default)."""
    where = (cwd or Path.cwd()).absolute()
    root, git_dir = find_git(where)
    if root is None or git_dir is None:
        return Workspace(str(where))
    return Workspace(
        str(where), str(root), read_branch(git_dir), repository.identity(root, git_dir)
    )


class Head:
    """The branch of the checkout around ``cwd``, looked at again and again cheaply: the
    ``HEAD`` file is read again only when a stat of it differs (git replaces it at every
    switch), or when asked to (``reread``: a rewrite in place within the file system's
    time granularity keeps size and mtime)."""

    def __init__(self, cwd: Path) -> None:
        git_dir = find_git(cwd)[1]
        self._head = None if git_dir is None else str(git_dir / "HEAD")
        self._seen: tuple[int, int, int] | None = None
        self._branch: str | None = None

    def branch(self, *, reread: bool = False) -> str | None:
        """The checked-out branch (as :func:`read_branch`); None outside a checkout or
        while ``HEAD`` can't be read."""
        if self._head is None:
            return None
        try:
            st = os.stat(self._head)
        except OSError:
            return None
        seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        if reread or seen != self._seen:
            self._seen = seen
            self._branch = read_branch(Path(self._head).parent)
        return self._branch


def find_git(start: Path) -> tuple[Path | None, Path | None]:
    """The repository root at or above ``start`` and its git dir, or (None, None)."""
    for folder in (start, *start.parents):
        dot_git = folder / ".git"
        try:
            if dot_git.is_dir():
                return folder, dot_git
            if dot_git.is_file():
                git_dir = _follow_gitdir_file(dot_git)
                return (folder, git_dir) if git_dir is not None else (None, None)
        except OSError:
            return None, None
    return None, None


def read_branch(git_dir: Path) -> str | None:
    """The checked-out branch (cut to what ``peer.register`` takes), ``detached@<sha>``
    for a detached HEAD, None if unreadable."""
    try:
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if head.startswith("ref:"):
        ref = head[4:].strip()
        return ref.removeprefix("refs/heads/")[:MAX_BRANCH_CHARS] or None
    if head:
        return DETACHED_PREFIX + head[:SHORT_SHA]
    return None


def _follow_gitdir_file(dot_git: Path) -> Path | None:
    try:
        text = dot_git.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith("gitdir:"):
        return None
    target = Path(text[len("gitdir:") :].strip())
    return target if target.is_absolute() else (dot_git.parent / target).resolve()
