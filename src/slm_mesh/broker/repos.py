"""The repository a session works in, for the sessions that do not say: the hooks'.

Rules:
1. A ``peer.register`` with a ``git_root`` and no ``repo`` gets the repository's identity
   (:mod:`slm_mesh.repository`) from the broker, the one its MCP server would have sent:
   so the session's locks are keyed by (repository, path from its root) and ``scope:
   repo`` finds it, on every machine. A hook runs at every tool call and reads no more
   than it must, so this is the broker's job.
2. The remote URL is read from the repository's config file on the event loop (a small
   local file, read again only when its stat changed).
3. A repository without a remote is known by its root commit, which only ``git`` tells
   (a process, long on a long history): it runs in a worker thread, never on the event
   loop, while the line that asked waits (:meth:`Repositories.learn`) so that a batch's
   calls still run in order. An identity learned so is remembered; "none" (no commit yet,
   no ``git``) for :data:`NONE_REMEMBERED_S` only.
4. At most :data:`MAX_REMEMBERED` repositories are remembered of each kind; the oldest go
   first.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import trio

from slm_mesh import repository
from slm_mesh.protocol.jsonrpc import Batch, Call, Invalid, Parsed

MAX_REMEMBERED = 1024
NONE_REMEMBERED_S = 60.0
REGISTER = "peer.register"

_Stat = tuple[int, int, int]


def _stat(path: Path) -> _Stat | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def root_wanted(params: Any) -> str | None:
    """The ``git_root`` of registration params that give no ``repo`` (rule 1)."""
    if not isinstance(params, dict) or params.get("repo") is not None:
        return None
    root = params.get("git_root")
    return root if isinstance(root, str) and root.startswith("/") else None


class Repositories:
    def __init__(self) -> None:
        self._configs: dict[str, Path] = {}  # git root → its config file
        self._remotes: dict[str, tuple[_Stat | None, str | None]] = {}  # (config's stat, id)
        self._root_commits: dict[str, tuple[str | None, float]] = {}  # (id, learned when)
        self._learning: dict[str, trio.Event] = {}

    def fill(self, params: dict[str, Any]) -> dict[str, Any]:
        """``peer.register`` params with ``repo``, when it is missing and known now."""
        root = root_wanted(params)
        if root is None:
            return params
        known, found = self.from_files(root)
        return {**params, "repo": found} if known and found else params

    def from_files(self, root: str) -> tuple[bool, str | None]:
        """``(known, identity)`` of the repository at ``root``, from its config (rule 2) or
        a root commit learned before (rule 3); ``known`` False when only ``git`` can tell."""
        config = self._config_of(root)
        if config is None:
            return True, None  # not a repository (or not one we can read)
        stat = _stat(config)
        remembered = self._remotes.get(root)
        if remembered is not None and remembered[0] == stat:
            found = remembered[1]
        else:
            found = repository.from_remote(config)
            _remember(self._remotes, root, (stat, found))
        if found:
            return True, found
        learned = self._root_commits.get(root)
        if learned is not None and (
            learned[0] is not None or time.monotonic() - learned[1] < NONE_REMEMBERED_S
        ):
            return True, learned[0]
        return False, None

    def _config_of(self, root: str) -> Path | None:
        config = self._configs.get(root)
        if config is None:
            git_dir = repository.git_dir_of(Path(root))
            if git_dir is None:
                return None
            config = repository.config_of(git_dir)
            _remember(self._configs, root, config)
        return config

    def to_learn(self, parsed: Parsed) -> list[str]:
        """The roots of this line's registrations that only ``git`` can name (rule 3)."""
        if isinstance(parsed, Call):
            calls: list[Call | Invalid] = [parsed]
        elif isinstance(parsed, Batch):
            calls = parsed.items
        else:
            return []
        roots = []
        for call in calls:
            if isinstance(call, Call) and call.method == REGISTER:
                root = root_wanted(call.params)
                if root is not None and not self.from_files(root)[0]:
                    roots.append(root)
        return roots

    async def learn(self, roots: list[str]) -> None:
        """Ask ``git`` for the root commits of ``roots`` in worker threads (rule 3)."""
        for root in dict.fromkeys(roots):
            already = self._learning.get(root)
            if already is not None:
                await already.wait()
                continue
            done = self._learning[root] = trio.Event()
            try:
                found = await trio.to_thread.run_sync(
                    repository.from_root_commit, Path(root), abandon_on_cancel=True
                )
                _remember(self._root_commits, root, (found, time.monotonic()))
            finally:
                del self._learning[root]
                done.set()


def _remember(table: dict[str, Any], key: str, value: Any) -> None:
    table.pop(key, None)
    table[key] = value
    while len(table) > MAX_REMEMBERED:
        del table[next(iter(table))]  # the oldest (rule 4)
