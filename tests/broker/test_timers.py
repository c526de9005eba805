"""The broker's timers (lock TTLs, grace): one task keeps every deadline."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from slm_mesh.broker.timers import Timers


class Fired:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str, Any]] = []

    def __call__(self, kind: str, key: Any) -> None:
        self.calls.append((trio.current_time(), kind, key))


async def test_timers_fire_at_their_deadlines_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fired = Fired()
    async with trio.open_nursery() as nursery:
        timers = Timers(nursery, fired)
        timers.arm("lock", "b", 20.0)
        timers.arm("lock", "a", 10.0)
        timers.arm("grace", "a", 10.0)  # another kind, same key: its own timer
        assert len(timers) == 3
        await trio.sleep(30)
        assert fired.calls == [(10.0, "lock", "a"), (10.0, "grace", "a"), (20.0, "lock", "b")]
        assert len(timers) == 0
        nursery.cancel_scope.cancel()


async def test_arming_again_moves_the_deadline_either_way(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fired = Fired()
    async with trio.open_nursery() as nursery:
        timers = Timers(nursery, fired)
        timers.arm("lock", "later", 5.0)
        timers.arm("lock", "later", 15.0)
        timers.arm("lock", "sooner", 15.0)
        await trio.sleep(1)
        timers.arm("lock", "sooner", 3.0)  # while the task sleeps towards 15
        await trio.sleep(30)
        assert fired.calls == [(3.0, "lock", "sooner"), (15.0, "lock", "later")]
        nursery.cancel_scope.cancel()


async def test_a_disarmed_timer_never_fires_and_can_be_armed_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fired = Fired()
    async with trio.open_nursery() as nursery:
        timers = Timers(nursery, fired)
        timers.arm("lock", "x", 5.0)
        timers.disarm("lock", "x")
        timers.disarm("lock", "never armed")
        assert len(timers) == 0
        await trio.sleep(10)
        assert fired.calls == []
        timers.arm("lock", "x", 12.0)
        await trio.sleep(10)
        assert fired.calls == [(12.0, "lock", "x")]
        nursery.cancel_scope.cancel()


async def test_a_timer_may_arm_another_from_its_fire(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[tuple[float, Any]] = []
    async with trio.open_nursery() as nursery:

        def fire(kind: str, key: Any) -> None:
            calls.append((trio.current_time(), key))
            if key < 3:  # a retry, as a failed write re-arms its timer
                timers.arm(kind, key + 1, trio.current_time() + 2.0)

        timers = Timers(nursery, fire)
        timers.arm("lock", 1, 1.0)
        await trio.sleep(10)
        assert calls == [(1.0, 1), (3.0, 2), (5.0, 3)]
        nursery.cancel_scope.cancel()


async def test_forgotten_deadlines_do_not_pile_up(autojump_clock: trio.testing.MockClock) -> None:
    fired = Fired()
    async with trio.open_nursery() as nursery:
        timers = Timers(nursery, fired)
        timers.arm("lock", "kept", 1000.0)
        for i in range(10_000):  # a lock taken and released over and over
            timers.arm("lock", "busy", 600.0 + i)
            timers.disarm("lock", "busy")
        assert len(timers) == 1
        assert len(timers._heap) < 200
        await trio.sleep(2000)
        assert fired.calls == [(1000.0, "lock", "kept")]
        nursery.cancel_scope.cancel()
