"""Abusive clients against the real broker: each is limited or disconnected with the
contract's answer, the broker's memory stays bounded, nothing is logged as an error, and a
well-behaved peer's calls keep being answered all along.

The process tests run ``slm-mesh broker`` with some limits lowered through their
environment variables (so they also prove those variables work) and read the broker's RSS
from /proc. ``python bench/abuse.py`` runs the same abusers at the default limits and
measures the well-behaved peer's latency; here we only check that it keeps being answered.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import trio

from slm_mesh.config import Limits, Settings
from slm_mesh.protocol import errors
from tests.wire import RawConn, broker_process, in_process_broker

MiB = 1024 * 1024


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def logged_errors(settings: Settings) -> list[str]:
    log = settings.data_dir.parent / "broker.log"
    return [line for line in log.read_text().splitlines() if " ERROR " in line]


class GoodPeer:
    """A registered peer that keeps making ordinary calls while the abuse goes on."""

    def __init__(self, conn: RawConn, pause: float) -> None:
        self.conn = conn
        self.pause = pause
        self.answered = 0
        self.done = trio.Event()

    async def run(self) -> None:
        await self.conn.register("good", cwd="/bench")
        i = 0
        while not self.done.is_set():
            i += 1
            with trio.fail_after(10):  # liveness, not a latency target
                assert await self.conn.call("mesh.ping") == "pong"
                await self.conn.call("state.set", key="good", value=i)
                await self.conn.call("lock.acquire", path="/bench/good.py", ttl=60)
                await self.conn.call("lock.release", path="/bench/good.py")
            self.answered += 1
            self.conn.notifications.clear()  # broadcasts it receives: read and dropped
            await trio.sleep(self.pause)


@asynccontextmanager
async def good_peer_alongside(path: Path, pause: float = 0.005) -> AsyncIterator[GoodPeer]:
    """A good peer calling the broker for as long as the block runs (four calls, then
    ``pause`` seconds); at least one more of its rounds is answered after the block ends."""
    good = GoodPeer(await RawConn.unix(path), pause)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(good.run)
            yield good
            before = good.answered
            with trio.fail_after(10):
                while good.answered <= before:  # noqa: ASYNC110 - its own task makes progress
                    await trio.sleep(0.01)
            good.done.set()
    finally:  # (a failed test leaves no socket for a later one's garbage collection)
        with trio.CancelScope(shield=True):
            await good.conn.aclose()


async def test_a_line_without_newline_is_cut_at_1_mib_and_memory_stays_bounded(
    settings: Settings,
) -> None:
    with broker_process(settings) as proc:
        async with good_peer_alongside(settings.socket_path) as good:
            abuser = await RawConn.unix(settings.socket_path)
            rss_before = rss_mib(proc.pid)
            chunk = b"x" * (64 * 1024)
            for _ in range(256):  # 16 MiB, never a newline
                await abuser.stream.send_all(chunk)
            rss_during = rss_mib(proc.pid)
            await abuser.send_line(b'\n{"jsonrpc":"2.0","id":"next","method":"mesh.ping"}')
            with trio.fail_after(10):
                cut = await abuser.read()
                after = await abuser.read()
            assert cut["id"] is None
            assert cut["error"]["code"] == errors.TOO_LARGE
            assert cut["error"]["data"]["limit"] == MiB
            assert after == {"jsonrpc": "2.0", "id": "next", "result": "pong"}
            await abuser.aclose()
        assert good.answered > 0
        # The broker held at most the cap and a chunk of the 16 MiB at any time.
        assert rss_during - rss_before < 8, (rss_before, rss_during)
    assert logged_errors(settings) == []


async def test_a_peer_that_never_reads_broadcasts_is_disconnected_and_its_messages_wait(
    settings: Settings,
) -> None:
    with broker_process(settings, SLM_MESH_MAX_OUTGOING_QUEUE="50") as proc:
        async with good_peer_alongside(settings.socket_path):
            sink = await RawConn.unix(settings.socket_path)
            reg = await sink.register("sink", cwd="/bench")
            sender = await RawConn.unix(settings.socket_path)
            await sender.register("broadcaster", cwd="/bench")
            rss_before = rss_mib(proc.pid)
            to_sink = 0
            for i in range(5000):
                sent = await sender.call("message.send", to="all", body=f"{i}:" + "b" * 2000)
                to_sink += sum(r["name"] == "sink" for r in sent["recipients"])
                peers = await sender.call("peer.list", include_away=True)
                if not any(p["name"] == "sink" and p["connected"] for p in peers["peers"]):
                    break
            else:
                raise AssertionError("the peer that never reads was never disconnected")
            assert rss_mib(proc.pid) - rss_before < 16
            with trio.fail_after(10):  # what was written before the cut, then EOF
                while await sink.read_line():
                    pass
            back = await RawConn.unix(settings.socket_path)
            await back.call("peer.register", cwd="/bench", resume=reg["resume_token"])
            inbox = await back.call("message.inbox", limit=1, mark_read=False)
            assert inbox["unread_left"] == to_sink
            for c in (sink, sender, back):
                await c.aclose()
    assert logged_errors(settings) == []


async def test_connections_past_the_cap_are_refused_while_held_ones_keep_working(
    settings: Settings,
) -> None:
    cap = 24
    with broker_process(settings, SLM_MESH_MAX_CONNECTIONS_PER_UID=str(cap)) as proc:
        async with good_peer_alongside(settings.socket_path):
            rss_before = rss_mib(proc.pid)
            held: list[RawConn] = []
            for _ in range(cap + 5):
                c = await RawConn.unix(settings.socket_path)
                await c.send_line('{"jsonrpc":"2.0","id":1,"method":"mesh.ping"}')
                with trio.fail_after(10):
                    answer = await c.read()
                if "error" in answer:
                    break
                held.append(c)
            assert answer["error"]["code"] == errors.QUOTA_EXCEEDED
            assert answer["error"]["data"]["limit"] == cap
            with trio.fail_after(10):
                assert await c.read_line() == b""  # and closed
            await c.aclose()
            assert len(held) == cap - 1  # the good peer holds the other one
            for c in held:
                assert await c.call("mesh.ping") == "pong"
            assert rss_mib(proc.pid) - rss_before < 16
            for c in held:
                await c.aclose()
    assert logged_errors(settings) == []


async def test_a_call_flood_is_rate_limited_with_retry_after_and_nobody_else_is(
    settings: Settings,
) -> None:
    env = {"SLM_MESH_RATE_LIMIT_PER_S": "200", "SLM_MESH_RATE_LIMIT_BURST": "100"}
    with broker_process(settings, **env):
        # The lowered limit binds the good peer too: it stays well under it (80 calls/s).
        async with good_peer_alongside(settings.socket_path, pause=0.05) as good:
            flooder = await RawConn.unix(settings.socket_path)
            try:
                line = b'{"jsonrpc":"2.0","id":1,"method":"mesh.ping"}\n'
                start = trio.current_time()
                await flooder.stream.send_all(line * 3000)
                answers = []
                with trio.fail_after(30):
                    for _ in range(3000):
                        answers.append(await flooder.read())
                elapsed = trio.current_time() - start
                limited = [a["error"] for a in answers if "error" in a]
                ok = len(answers) - len(limited)
                assert {e["code"] for e in limited} == {errors.RATE_LIMITED}
                # At most one token's time, rounded up to the millisecond; never 0.
                assert all(0 < e["data"]["retry_after"] <= 1 / 200 + 0.001 for e in limited)
                assert 100 <= ok <= 100 + math.ceil(200 * elapsed) + 1
                # A call after the flood is refused at most once: waiting the retry_after
                # of that refusal gets it accepted. (Not the flood's last refusal's: calls
                # of the flood accepted after it may have taken the tokens it counted on.)
                answer = await flooder.request("mesh.ping")
                if "error" in answer:
                    assert answer["error"]["code"] == errors.RATE_LIMITED
                    await trio.sleep(answer["error"]["data"]["retry_after"])  # as it says
                    answer = await flooder.request("mesh.ping")
                assert answer.get("result") == "pong", answer
            finally:
                await flooder.aclose()
        assert good.answered > 0
    assert logged_errors(settings) == []


async def test_a_subscriber_that_stalls_is_disconnected_and_memory_stays_bounded(
    settings: Settings,
) -> None:
    with broker_process(settings, SLM_MESH_MAX_OUTGOING_QUEUE="50") as proc:
        async with good_peer_alongside(settings.socket_path):
            stalled = await RawConn.unix(settings.socket_path)
            await stalled.call("event.subscribe", types=["*"])
            writer = await RawConn.unix(settings.socket_path)
            rss_before = rss_mib(proc.pid)
            subscribers = (await writer.call("mesh.status"))["counts"]["subscribers"]
            for i in range(5000):
                await writer.call("state.set", key="churn", value=f"{i}:" + "s" * 2000)
                status = await writer.call("mesh.status")
                if status["counts"]["subscribers"] < subscribers:
                    break
            else:
                raise AssertionError("the stalled subscriber was never disconnected")
            assert rss_mib(proc.pid) - rss_before < 16
            await stalled.aclose()
            await writer.aclose()
    assert logged_errors(settings) == []


async def test_a_client_that_never_reads_its_answers_stops_being_read_within_the_byte_budget(
    settings: Settings,
) -> None:
    budget = 256 * 1024
    small = replace(settings, limits=Limits(max_outgoing_bytes=budget))
    async with in_process_broker(small) as b:
        setup = await b.connect()
        for i in range(4):
            await setup.call("state.set", namespace="big", key=f"k{i}", value="v" * 10_000)
        answer_bytes = len(json.dumps(await setup.call("state.list", namespace="big")))
        abuser = await b.connect()
        request = b'{"jsonrpc":"2.0","id":1,"method":"state.list","params":{"namespace":"big"}}\n'
        # Far more answers than the budget and the socket buffers hold: sending blocks
        # for good once the broker stops reading.
        for _ in range(5000):
            with trio.move_on_after(0.5) as blocked:
                await abuser.stream.send_all(request)
            if blocked.cancelled_caught:
                break
        else:
            raise AssertionError("the broker kept reading a client that never reads")
        [conn] = [c for c in b.broker.conns.values() if c.queued_bytes]
        assert conn.queued_bytes <= budget // 2 + answer_bytes
        assert await setup.call("mesh.ping") == "pong"  # others are unaffected
        # Nothing was lost: reading now gets every answer it asked for.
        assert isinstance(abuser.stream, trio.SocketStream)
        await abuser.stream.send_eof()
        with trio.fail_after(30):
            answers = 0
            while line := await abuser.read_line():
                assert json.loads(line)["result"]["entries"]
                answers += 1
        assert answers > 50


async def test_a_slow_reader_of_large_pushes_is_disconnected_by_bytes_before_the_item_cap(
    settings: Settings,
) -> None:
    budget = 512 * 1024
    small = replace(settings, limits=Limits(max_outgoing_bytes=budget, max_outgoing_queue=1000))
    async with in_process_broker(small) as b:
        slow = await b.connect()
        reg = await slow.register("slow")
        sender = await b.connect()
        sent = 0
        while reg["peer_id"] in b.broker.mesh.sessions.conn_of:
            await sender.call("message.send", to="slow", body="m" * 60_000)
            sent += 1
            assert sent < 1000, "never disconnected"
        # The budget and the kernel's socket buffers, not 1,000 messages of 60 KB.
        assert sent < 100
        assert await sender.call("mesh.ping") == "pong"


async def test_a_peer_resuming_to_more_queued_messages_than_its_queue_holds_stays_connected(
    settings: Settings,
) -> None:
    """Messages pile up for an away peer (a runaway sender): resuming must not push them all
    at once into a queue that can't hold them, which dropped the peer again on every try."""
    small = replace(settings, limits=Limits(max_outgoing_queue=20))
    async with in_process_broker(small) as b:
        away = await b.connect()
        reg = await away.register("away")
        await away.aclose()
        b.opened.remove(away)
        sender = await b.connect()
        with trio.fail_after(10):
            while reg["peer_id"] in b.broker.mesh.sessions.conn_of:  # noqa: ASYNC110
                await trio.sleep(0.01)
        for i in range(100):
            await sender.call("message.send", to="away", body=f"m{i}")
        seen = 0
        for _ in range(3):  # again and again: every resume keeps the connection
            back = await b.connect()
            got = await back.call("peer.register", cwd="/repo", resume=reg["resume_token"])
            assert got["resumed"] is True
            assert await back.call("mesh.ping") == "pong"
            pushed = [n["params"]["body"] for n in back.notifications if n["method"] == "message"]
            assert 0 < len(pushed) <= 20
            # The oldest not yet pushed come first.
            assert pushed == [f"m{i}" for i in range(seen, seen + len(pushed))]
            seen += len(pushed)
            inbox = await back.call("message.inbox", limit=1, mark_read=False)
            assert inbox["unread_left"] == 100  # pushed or not, all still in the inbox
            await back.aclose()
            b.opened.remove(back)
