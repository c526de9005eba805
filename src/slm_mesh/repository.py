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


def config_of(git_dir: Path) -> Path:
    """The repository's config file (in its common git dir)."""
    return common_dir(git_dir) / "config"


def remote_url(git_dir: Path) -> str | None:
    """The URL of remote ``origin``, else of the first remote, from the config."""
    return remote_url_in(config_of(git_dir))


def remote_url_in(config: Path) -> str | None:
    """:func:`remote_url`, from the config file ``config``."""
    parser = configparser.RawConfigParser(strict=False)
    try:
        parser.read(config, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        return None
    remotes = [s for s in parser.sections() if s.startswith('remote "')]
    remotes.sort(key=lambda s: s != 'remote "origin"')
    for section in remotes:
        url = parser.get(section, "url", fallback=None)
        if url:
            return url
    return None


def from_remote(config: Path) -> str | None:
    """The identity the remote named in ``config`` gives, if any."""
    url = remote_url_in(config)
    return normalise_remote(url) if url else None


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


def from_root_commit(root: Path) -> str | None:
    """The identity HEAD's root commit gives (asking ``git``), if any."""
    commit = root_commit(root)
    return f"root:{commit}" if commit else None


def git_dir_of(root: Path) -> Path | None:
    """The git dir of the repository whose root is ``root`` (its ``.git`` a folder, or a
    file pointing at one), or None."""
    dot_git = root / ".git"
    try:
        if dot_git.is_dir():
            return dot_git
        if not dot_git.is_file():
            return None
        text = dot_git.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith("gitdir:"):
        return None
    target = Path(text[len("gitdir:") :].strip())
    return target if target.is_absolute() else (root / target).resolve()


def identity_of(root: Path) -> str | None:
    """The identity of the repository whose root is ``root``, or None."""
    git_dir = git_dir_of(root)
    return identity(root, git_dir) if git_dir is not None else None


def identity(root: Path, git_dir: Path) -> str | None:
    """The repository's identity (see the module), or None if it has neither."""
    return from_remote(config_of(git_dir)) or from_root_commit(root)
