"""Sessions that live as long as an agent's process: the broker watches the pid.

Rules:
1. One task per watched session, in the broker's system nursery, under a cancel scope that
   ``unwatch`` cancels (a connection adopted the session, or it is gone).
2. On Linux the task waits on a pidfd (``os.pidfd_open``), which the kernel makes readable
   the moment the process exits: no polling, and a reused pid can't fool it once the fd is
   open. Where there is no pidfd it asks ``kill(pid, 0)`` every
   :data:`~slm_mesh.config.PROCESS_POLL_S`.
3. When the process has exited, ``on_exit(peer_id)`` runs once.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import trio

from slm_mesh.config import PROCESS_POLL_S
from slm_mesh.pids import alive as process_alive


class ProcessWatch:
    def __init__(self, nursery: trio.Nursery, on_exit: Callable[[str], None]) -> None:
        self._nursery = nursery
        self._on_exit = on_exit
        self._scopes: dict[str, trio.CancelScope] = {}

    def __len__(self) -> int:
        return len(self._scopes)

    def watch(self, peer_id: str, pid: int) -> None:
        self.unwatch(peer_id)
        scope = trio.CancelScope()
        self._scopes[peer_id] = scope
        self._nursery.start_soon(self._run, peer_id, pid, scope)

    def unwatch(self, peer_id: str) -> None:
        scope = self._scopes.pop(peer_id, None)
        if scope is not None:
            scope.cancel()

    async def _run(self, peer_id: str, pid: int, scope: trio.CancelScope) -> None:
        with scope:
            await wait_exited(pid)
        if self._scopes.get(peer_id) is not scope:
            return  # unwatched (or watched anew) meanwhile
        del self._scopes[peer_id]
        self._on_exit(peer_id)


async def wait_exited(pid: int) -> None:
    """Return once process ``pid`` has exited (rule 2)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):
        # Nothing to wait on but the clock: ask the kernel now and then (rule 2).
        while process_alive(pid):  # noqa: ASYNC110
            await trio.sleep(PROCESS_POLL_S)
        return
    try:
        await trio.lowlevel.wait_readable(fd)
    finally:
        os.close(fd)
