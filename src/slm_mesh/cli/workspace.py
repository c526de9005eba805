"""Where the shell is: its directory and the git repository around it.

Read from the files (walk up to the first ``.git``), never by running ``git``: a person
waits for every command. Paths are written the way the MCP server registers them
(``Path.cwd().absolute()``), so ``peers --scope directory|repo`` compares like with like.
"""

from __future__ import annotations

import posixpath
from pathlib import Path


def cwd() -> str:
    return str(Path.cwd().absolute())


def lock_path(path: str, base: str) -> str:
    """``path`` the way the broker stores a lock on it: absolute against ``base``, with
    ``.``, ``..`` and repeated slashes resolved (lexically: a glob names no real file)."""
    joined = posixpath.join(base, path)
    return "/" + posixpath.normpath(joined).lstrip("/")


def git_root(start: Path | None = None) -> str | None:
    """The repository root at or above ``start`` (the cwd by default), or None."""
    where = (start or Path.cwd()).absolute()
    for folder in (where, *where.parents):
        try:
            if (folder / ".git").exists():
                return str(folder)
        except OSError:
            return None
    return None
