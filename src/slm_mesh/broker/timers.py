"""Daemon-owned deadlines (lock TTLs, away peers' grace) as trio cancel scopes.

Rules:
1. One cancel scope per (kind, key), with the deadline as its deadline, in a task of the
   broker's system nursery. Arming an armed timer moves its deadline (a renewed lock);
   disarming cancels the scope (a released lock, a resumed peer).
2. A scope that ends by its deadline calls ``fire(kind, key)``; one that was disarmed or
   replaced first calls nothing. Disarming before the task has even started is safe: the
   scope is cancelled on entry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

TimerKey = tuple[str, Any]


class Timers:
    def __init__(self, nursery: trio.Nursery, fire: Callable[[str, Any], None]) -> None:
        self._nursery = nursery
        self._fire = fire
        self._scopes: dict[TimerKey, trio.CancelScope] = {}

    def __len__(self) -> int:
        return len(self._scopes)

    def arm(self, kind: str, key: Any, deadline: float) -> None:
        """Fire at trio time ``deadline`` (moving the deadline if already armed)."""
        scope = self._scopes.get((kind, key))
        if scope is not None:
            scope.deadline = deadline
            return
        scope = trio.CancelScope(deadline=deadline)
        self._scopes[(kind, key)] = scope
        self._nursery.start_soon(self._run, kind, key, scope)

    def disarm(self, kind: str, key: Any) -> None:
        scope = self._scopes.pop((kind, key), None)
        if scope is not None:
            scope.cancel()

    async def _run(self, kind: str, key: Any, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep_forever()
        if self._scopes.get((kind, key)) is not scope:
            return  # disarmed (or replaced) before it fired
        del self._scopes[(kind, key)]
        self._fire(kind, key)
