"""The lock invariant across brokers: sessions on two "machines" contend for the files of
one repository (each in its own clone), through real broker processes on one mesh.

A checker follows the lock events of the whole mesh (in ``seq`` order, from one broker)
and replays them: every grant is checked against what is held at that step, so one
overlapping exclusive pair, or exclusive beside shared, at any moment fails the test.
The default run is short; ``pytest -m slow`` runs the issue's 2 brokers × 10 sessions ×
500 rounds.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
import trio

from slm_mesh.mesh import paths
from tests.multi.conftest import Node
from tests.wire import RawConn

REPO = "github.com/acme/app"
TARGETS = ("src/a.py", "src/b.py", "src/**", "src/*.py", "docs/x.md")


def root(host: str) -> str:
    return f"/clones/{host}"


class Checker:
    def __init__(self) -> None:
        self.held: dict[tuple[str, str], str] = {}  # (peer, rel) -> mode
        self.grants = 0
        self.violations: list[str] = []

    def see(self, event: dict[str, Any]) -> None:
        data = event["data"]
        rel = data["path"][len(root(data["host"])) :]
        key = (data["peer_id"], rel)
        if event["type"] != "lock_acquired":
            self.held.pop(key, None)
            return
        self.grants += 1
        for (peer, other), mode in self.held.items():
            clash = "exclusive" in (mode, data["mode"]) and paths.overlaps(other, rel)
            if peer != data["peer_id"] and clash:
                self.violations.append(
                    f"seq {event['seq']}: {key} {data['mode']} beside {(peer, other)} {mode}"
                )
        self.held[key] = data["mode"]


async def contend(node: Node, name: str, rounds: int, seed: int) -> int:
    rng = random.Random(seed)
    conn = await RawConn.unix(node.settings.socket_path)
    host = node.settings.host
    await conn.register(name, cwd=root(host), git_root=root(host), repo=REPO)
    granted = 0
    try:
        for _ in range(rounds):
            target = rng.choice(TARGETS)
            mode = rng.choice(("exclusive", "exclusive", "shared"))
            answer = await conn.request("lock.acquire", {"path": target, "mode": mode, "wait": 60})
            assert "result" in answer, answer
            granted += 1
            await conn.call("lock.release", path=target)
    finally:
        await conn.aclose()
    return granted


async def run(nodes: list[Node], sessions: int, rounds: int) -> Checker:
    checker = Checker()
    watch = await RawConn.unix(nodes[0].settings.socket_path)
    await watch.call("event.subscribe", types=["lock_acquired", "lock_released", "lock_expired"])
    done = trio.Event()
    totals: list[int] = []

    async def follow() -> None:
        while not done.is_set() or checker.grants < sum(totals):
            checker.see((await watch.notification("event"))["params"])

    async def one(i: int) -> None:
        node = nodes[i % len(nodes)]
        totals.append(await contend(node, f"s{i}", rounds, seed=i))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow)
        with trio.fail_after(600):
            async with trio.open_nursery() as workers:
                for i in range(sessions):
                    workers.start_soon(one, i)
            done.set()
            with trio.fail_after(60):
                while checker.grants < sum(totals):  # noqa: ASYNC110 - follow() moves it
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert checker.grants == sum(totals) == sessions * rounds
    listed = await watch.call("lock.list")
    assert listed["locks"] == []
    await watch.aclose()
    return checker


@pytest.mark.parametrize(
    ("sessions", "rounds"),
    [(10, 30), pytest.param(10, 500, marks=pytest.mark.slow)],
)
async def test_no_two_incompatible_holders_across_brokers_ever(
    nodes: Callable[[int], list[Node]], sessions: int, rounds: int
) -> None:
    brokers = nodes(2)
    checker = await run(brokers, sessions * 2, rounds)
    assert checker.violations == []
