"""Daemon-owned deadlines (lock TTLs, away peers' grace), all kept by one task.

Rules:
1. One deadline per (kind, key). Arming an armed timer moves its deadline (a renewed lock);
   disarming forgets it (a released lock, a resumed peer): it never fires.
2. One task sleeps in a cancel scope whose deadline is the earliest armed one, and calls
   ``fire(kind, key)`` for each timer that is due, earliest first. A ``fire`` may arm
   timers again (a retry).
3. Arming costs a heap push, disarming a dict removal: no task per timer (a lock taken and
   released spawned and woke one before, about a tenth of the broker's CPU in a loop of
   mixed calls). Forgotten entries stay in the heap until they come up, or until they
   outnumber the live ones, when the heap is rebuilt.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import Any

import trio

TimerKey = tuple[str, Any]
_COMPACT_SLACK = 64  # forgotten heap entries tolerated beyond the live ones


class Timers:
    def __init__(self, nursery: trio.Nursery, fire: Callable[[str, Any], None]) -> None:
        self._fire = fire
        self._deadlines: dict[TimerKey, float] = {}
        self._heap: list[tuple[float, int, TimerKey]] = []
        self._order = itertools.count()  # ties keep the order they were armed in
        self._sleep = trio.CancelScope()  # the task's current sleep
        nursery.start_soon(self._run)

    def __len__(self) -> int:
        return len(self._deadlines)

    def arm(self, kind: str, key: Any, deadline: float) -> None:
        """Fire at trio time ``deadline`` (moving the deadline if already armed)."""
        timer = (kind, key)
        self._deadlines[timer] = deadline
        heapq.heappush(self._heap, (deadline, next(self._order), timer))
        if deadline < self._sleep.deadline:
            self._sleep.deadline = deadline
        if len(self._heap) > 2 * len(self._deadlines) + _COMPACT_SLACK:
            self._compact()

    def disarm(self, kind: str, key: Any) -> None:
        self._deadlines.pop((kind, key), None)

    async def _run(self) -> None:
        while True:
            with trio.CancelScope(deadline=self._next_deadline()) as sleep:
                self._sleep = sleep
                await trio.sleep_forever()
            self._fire_due(trio.current_time())

    def _next_deadline(self) -> float:
        heap = self._heap
        while heap and self._deadlines.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # forgotten or moved
        return heap[0][0] if heap else math.inf

    def _fire_due(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, timer = heapq.heappop(heap)
            if self._deadlines.get(timer) != deadline:
                continue  # forgotten or moved
            del self._deadlines[timer]
            self._fire(*timer)

    def _compact(self) -> None:
        self._heap = [
            (deadline, next(self._order), timer) for timer, deadline in self._deadlines.items()
        ]
        heapq.heapify(self._heap)
