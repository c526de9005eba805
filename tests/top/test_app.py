"""``slm-mesh top`` driven by textual's Pilot (headless, fast) against a real broker
process, with real sessions joining, locking and talking beside it.

Each test is a plain function that runs its own asyncio loop: textual runs on asyncio,
while the suite's async tests run under trio.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from slm_mesh.client.aio import MeshClient
from slm_mesh.config import Settings
from slm_mesh.protocol.errors import StoreUnavailable
from slm_mesh.top.app import TopApp
from slm_mesh.top.columns import GAP
from tests import pg
from tests.wire import PERSON, broker_env, broker_process, stop_process

WAIT_S = 10.0


@pytest.fixture
def broker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    with broker_process(settings) as proc:
        yield proc


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


@asynccontextmanager
async def top(settings: Settings, size: tuple[int, int] = (80, 24)) -> AsyncIterator[Pilot[int]]:
    app = TopApp(settings)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: " · up " in header(pilot), "top to connect")
        yield pilot


@asynccontextmanager
async def session(settings: Settings, name: str, **params: Any) -> AsyncIterator[MeshClient]:
    async with MeshClient.open(settings) as client:
        await client.register(name=name, cwd=params.pop("cwd", "/repo"), **params)
        yield client


async def until(pilot: Pilot[int], condition: Callable[[], object], what: str) -> None:
    """Let the app run until ``condition`` holds (the screen has no event to wait on)."""
    with anyio.move_on_after(WAIT_S):
        while not condition():
            await pilot.pause(0.02)
        return
    raise AssertionError(f"timed out waiting for {what}")


def shown(pilot: Pilot[int], pane: str) -> list[tuple[str, ...]]:
    app = pilot.app
    assert isinstance(app, TopApp)
    return [row.cells for row in app.pane(pane).rows_shown]


def column(pilot: Pilot[int], pane: str, index: int) -> list[str]:
    return [cells[index] for cells in shown(pilot, pane)]


def header(pilot: Pilot[int]) -> str:
    return str(pilot.app.query_one("#header", Static).render())


def test_the_panes_follow_the_mesh_as_it_changes(
    settings: Settings, broker: subprocess.Popen[bytes]
) -> None:
    async def scenario() -> None:
        async with top(settings) as pilot, session(settings, "backend", agent="codex") as a:
            await until(pilot, lambda: "backend" in column(pilot, "peers", 0), "the peer")
            await a.call("peer.update", {"summary": "refactoring auth"})
            await until(pilot, lambda: "refactoring auth" in column(pilot, "peers", 6), "summary")
            await a.call("lock.acquire", {"path": "src/auth.ts"})
            await until(pilot, lambda: column(pilot, "locks", 0) == ["/repo/src/auth.ts"], "lock")
            await a.call("lock.release", {"path": "src/auth.ts"})
            await until(pilot, lambda: shown(pilot, "locks") == [], "the lock released")
            await a.call("message.send", {"to": "backend", "body": "schema v2\nmore"})
            await until(pilot, lambda: column(pilot, "messages", 2) == ["schema v2"], "message")
            assert column(pilot, "messages", 1) == ["backend → backend"]
            kinds = column(pilot, "events", 1)
            for kind in ("peer_joined", "peer_updated", "lock_acquired", "lock_released"):
                assert kind in kinds

    run(scenario)


def test_m_sends_the_selected_peer_a_message_it_receives(
    settings: Settings, broker: subprocess.Popen[bytes]
) -> None:
    async def scenario() -> None:
        async with session(settings, "backend") as a, top(settings) as pilot:
            await until(pilot, lambda: column(pilot, "peers", 0) == ["backend"], "the peer")
            await pilot.press("m")
            await pilot.press(*"please rebase", "enter")
            with anyio.fail_after(WAIT_S):
                method, message = await a.notifications.receive()
            assert method == "message"
            assert (message["body"], message["from_name"]) == ("please rebase", PERSON)
            await until(pilot, lambda: "sent to backend" in header(pilot), "the note")

    run(scenario)


def test_shift_m_sends_to_everyone_and_escape_sends_nothing(
    settings: Settings, broker: subprocess.Popen[bytes]
) -> None:
    async def scenario() -> None:
        async with (
            session(settings, "a") as a,
            session(settings, "b") as b,
            top(settings) as pilot,
        ):
            await until(pilot, lambda: len(shown(pilot, "peers")) == 2, "the peers")
            await pilot.press("m", *"never mind", "escape")
            await pilot.press("M", *"stand-up", "enter")
            for client in (a, b):
                with anyio.fail_after(WAIT_S):
                    _, message = await client.notifications.receive()
                assert message["body"] == "stand-up"  # the cancelled one never came

    run(scenario)


def test_r_releases_the_selected_lock_only_once_confirmed(
    settings: Settings, broker: subprocess.Popen[bytes]
) -> None:
    async def scenario() -> None:
        async with session(settings, "backend") as a, top(settings) as pilot:
            await a.call("lock.acquire", {"path": "src/auth.ts"})
            await until(pilot, lambda: shown(pilot, "locks") != [], "the lock")
            await pilot.press("2", "r", "n")
            await pilot.press("r", "escape")
            assert (await a.call("lock.list"))["locks"] != []
            await pilot.press("r", "y")
            await until(pilot, lambda: shown(pilot, "locks") == [], "the release")
            assert (await a.call("lock.list"))["locks"] == []
            with anyio.fail_after(WAIT_S):
                _, told = await a.notifications.receive()
            assert told["type"] == "alert"
            assert "released your exclusive lock on /repo/src/auth.ts" in told["body"]
            assert "was told" in header(pilot)
            page = await a.call("event.read", {"types": ["lock_released"]})
            assert page["events"][-1]["data"]["released_by"] == PERSON

    run(scenario)


def test_the_filter_narrows_every_pane_and_escape_clears_it(
    settings: Settings, broker: subprocess.Popen[bytes]
) -> None:
    async def scenario() -> None:
        async with (
            session(settings, "backend") as a,
            session(settings, "frontend"),
            top(settings) as pilot,
        ):
            await a.call("lock.acquire", {"path": "src/auth.ts"})
            await until(pilot, lambda: len(shown(pilot, "peers")) == 2, "the peers")
            await pilot.press("slash", *"front")
            await until(pilot, lambda: column(pilot, "peers", 0) == ["frontend"], "filtered")
            assert shown(pilot, "locks") == []
            assert all("front" in " ".join(row).casefold() for row in shown(pilot, "events"))
            await pilot.press("escape")
            await until(pilot, lambda: len(shown(pilot, "peers")) == 2, "unfiltered")

    run(scenario)


def test_i_shows_the_selected_peers_details_and_question_mark_the_keys(
    settings: Settings, broker: subprocess.Popen[bytes]
) -> None:
    async def scenario() -> None:
        async with (
            session(settings, "backend", git_root="/repo", git_branch="auth") as a,
            top(settings) as pilot,
        ):
            await a.call("lock.acquire", {"path": "src/auth.ts"})
            await until(pilot, lambda: column(pilot, "peers", 0) == ["backend"], "the peer")
            await pilot.press("i")
            text = "\n".join(str(w.render()) for w in pilot.app.screen.query(Static))
            assert "auth" in text and "/repo/src/auth.ts (exclusive)" in text
            await pilot.press("x")  # any key closes it
            assert pilot.app.screen is pilot.app.screen_stack[0]
            await pilot.press("question_mark")
            text = "\n".join(str(w.render()) for w in pilot.app.screen.query(Static))
            assert "release the selected lock" in text

    run(scenario)


def test_the_event_pane_follows_the_newest_unless_the_cursor_was_moved(
    settings: Settings, broker: subprocess.Popen[bytes]
) -> None:
    async def scenario() -> None:
        async with session(settings, "writer") as a, top(settings) as pilot:
            app = pilot.app
            assert isinstance(app, TopApp)
            events = app.pane("events")

            async def write(first: int, last: int) -> None:
                for i in range(first, last):
                    await a.call("state.set", {"key": f"k{i}", "value": i})
                wanted = f"default/k{last - 1} set"
                await until(pilot, lambda: wanted in column(pilot, "events", 2)[0], "the last")

            await write(0, 12)  # more than the pane shows
            assert events.selected_key() == events.rows_shown[0].key  # the newest
            assert events.scroll_y == 0
            await pilot.press("4", "down", "down")
            held = events.selected_key()
            assert held == events.rows_shown[2].key
            await write(12, 20)
            assert events.selected_key() == held  # still the row the person chose
            await pilot.press("home")
            await write(20, 25)
            assert events.selected_key() == events.rows_shown[0].key  # following again

    run(scenario)


def test_calls_per_second_are_the_meshs_not_tops_own_polling(
    settings: Settings, broker: subprocess.Popen[bytes]
) -> None:
    """Nothing but top speaks to the broker: after a few refreshes calls/s is 0."""

    async def scenario() -> None:
        async with top(settings) as pilot:
            app = pilot.app
            assert isinstance(app, TopApp)
            await until(pilot, lambda: len(app.view.samples) >= 3, "three refreshes")
            assert app.view.calls_per_s() == 0
            assert " 0 calls/s" in header(pilot)

    run(scenario)


def test_the_broker_going_away_is_said_and_its_return_noticed(
    settings: Settings, broker: subprocess.Popen[bytes]
) -> None:
    async def scenario() -> None:
        async with top(settings) as pilot:
            first = broker.pid
            assert f"broker {first}" in header(pilot)
            stop_process(broker)
            await until(pilot, lambda: "broker stopped" in header(pilot), "the stop")
            with broker_process(settings) as again:
                await until(pilot, lambda: f"broker {again.pid}" in header(pilot), "the return")

    run(scenario)


@pytest.mark.needs("postgresql")
def test_the_slow_refresh_carries_on_after_the_shared_store_was_out_of_reach(
    settings: Settings, own_cluster: pg.Cluster
) -> None:
    settings = dataclasses.replace(settings, store_url=own_cluster.url, mesh_name=pg.mesh_name())

    def store_up(pilot: Pilot[int]) -> bool | None:
        app = pilot.app
        assert isinstance(app, TopApp)
        status = app.view.status
        return None if status is None else bool(status["store"]["available"])

    async def scenario() -> None:
        async with session(settings, "backend") as a, top(settings) as pilot:
            await a.call("message.send", {"to": "backend", "body": "hi"})
            await until(pilot, lambda: column(pilot, "peers", 4) == ["1"], "one unread")
            own_cluster.stop("fast")
            # A refresh saw the store gone (its peer.list was refused with -32011)...
            await until(pilot, lambda: store_up(pilot) is False, "the store seen gone")
            own_cluster.start()
            with anyio.fail_after(30):
                while True:
                    try:
                        await a.call("message.inbox", {"mark_read": True})
                        break
                    except StoreUnavailable:
                        await pilot.pause(0.2)
            # ... and the refreshes go on: the unread count going down shows.
            await until(pilot, lambda: column(pilot, "peers", 4) == [""], "the message read")

    with broker_process(settings):
        run(scenario)


@pytest.mark.parametrize("size", [(80, 24), (200, 50)])
def test_the_panes_share_the_screen_without_overlapping(
    settings: Settings, broker: subprocess.Popen[bytes], size: tuple[int, int]
) -> None:
    async def scenario() -> None:
        async with (
            session(settings, "backend", summary="x" * 300) as a,
            top(settings, size) as pilot,
        ):
            await a.call("lock.acquire", {"path": "src/" + "deep/" * 40 + "auth.ts"})
            await until(pilot, lambda: shown(pilot, "locks") != [], "the lock")
            app = pilot.app
            assert isinstance(app, TopApp)
            regions = [app.pane(name).region for name in ("peers", "locks", "messages", "events")]
            for i, one in enumerate(regions):
                assert one.width >= 39 and one.height >= 4
                for other in regions[i + 1 :]:
                    assert not one.overlaps(other)
            for name in ("peers", "locks", "messages", "events"):
                pane = app.pane(name)
                assert sum(pane.widths) + GAP * len(pane.widths) < pane.region.width

    run(scenario)


def test_top_in_a_pipe_says_it_needs_a_terminal(settings: Settings) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "slm_mesh", "top"],
        env=broker_env(settings),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "needs a terminal" in done.stderr
