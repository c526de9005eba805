"""A git repository's identity, the same in every clone of it on every machine: its
normalised remote URL, else its root commit. Two sessions whose repository has one
identity lock the same files (``mesh/locks.py``) and share ``scope: repo``.

Read from the files (``config`` of the repository's common git dir) like the rest of the
workspace detection; only a repository with no remote asks ``git`` for its root commit.
Stdlib only: the MCP server and the CLI import it on their start-up path.
"""

from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

ROOT_COMMIT_TIMEOUT_S = 2.0

_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$")  # git@host:owner/repo.git


def normalise_remote(url: str) -> str | None:
    """``host/path`` of a remote URL, lower-case host, no user, port, scheme or ``.git``:
    ``git@github.com:Acme/App.git`` and ``https://github.com/Acme/App`` are one
    repository. None for a local path (no host: it names nothing on another machine)."""
    url = url.strip()
    if not url:
        return None
    if "://" in url:
        scheme, _, rest = url.partition("://")
        if scheme == "file":
            return None
        host, _, path = rest.partition("/")
        host = host.rpartition("@")[2].split(":")[0]
    elif match := _SCP_LIKE.match(url):
        host, path = match.group(1), match.group(2)
    else:
        return None  # a local path
    path = path.strip("/").removesuffix(".git").strip("/")
    if not host or not path:
        return None
    return f"{host.lower()}/{path}"


def common_dir(git_dir: Path) -> Path:
    """The git dir that holds the config (a worktree's ``commondir`` points at it)."""
    try:
        pointer = (git_dir / "commondir").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return git_dir
    target = Path(pointer)
    return target if target.is_absolute() else (git_dir / target).resolve()


def remote_url(git_dir: Path) -> str | None:
    """The URL of remote ``origin``, else of the first remote, from the config."""
    parser = configparser.RawConfigParser(strict=False)
    try:
        parser.read(common_dir(git_dir) / "config", encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return None
    remotes = [s for s in parser.sections() if s.startswith('remote "')]
    remotes.sort(key=lambda s: s != 'remote "origin"')
    for section in remotes:
        url = parser.get(section, "url", fallback=None)
        if url:
            return url
    return None


def root_commit(root: Path) -> str | None:
    """The first commit of HEAD's history (the oldest, if several), asking ``git``."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "rev-list", "--max-parents=0", "HEAD"],
            capture_output=True,
            text=True,
            timeout=ROOT_COMMIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    commits = done.stdout.split()
    return commits[-1] if done.returncode == 0 and commits else None


def identity_of(root: Path) -> str | None:
    """The identity of the repository whose root is ``root`` (its ``.git`` a folder, or a
    file pointing at one), or None."""
    dot_git = root / ".git"
    try:
        if dot_git.is_file():
            text = dot_git.read_text(encoding="utf-8").strip()
            if not text.startswith("gitdir:"):
                return None
            target = Path(text[len("gitdir:") :].strip())
            dot_git = target if target.is_absolute() else (root / target).resolve()
    except (OSError, UnicodeDecodeError):
        return None
    return identity(root, dot_git)


def identity(root: Path, git_dir: Path) -> str | None:
    """The repository's identity (see the module), or None if it has neither."""
    url = remote_url(git_dir)
    found = normalise_remote(url) if url else None
    if found:
        return found
    commit = root_commit(root)
    return f"root:{commit}" if commit else None
