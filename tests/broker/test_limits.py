"""Every limit gives its error code, never a crash, and never hurts other connections."""

import json
from dataclasses import replace

import trio

from slm_mesh.config import Limits, Settings
from slm_mesh.protocol import errors
from tests.wire import RawConn, in_process_broker


async def test_calls_past_the_rate_limit_get_rate_limited_with_retry_after(
    settings: Settings,
) -> None:
    tight = replace(settings, limits=Limits(rate_limit_per_s=10, rate_limit_burst=20))
    async with in_process_broker(tight) as b:
        c = await b.connect()
        batch = [{"jsonrpc": "2.0", "id": i, "method": "mesh.ping"} for i in range(30)]
        await c.send_line(json.dumps(batch))
        answers = await c.answer()
        limited = [a for a in answers if "error" in a]
        assert len(limited) == 10
        assert {a["error"]["code"] for a in limited} == {errors.RATE_LIMITED}
        assert all(a["error"]["data"]["retry_after"] > 0 for a in limited)
        other = await b.connect()
        assert await other.call("mesh.ping") == "pong"  # its own bucket


async def test_bad_lines_count_against_the_rate_limit(settings: Settings) -> None:
    tight = replace(settings, limits=Limits(rate_limit_per_s=1, rate_limit_burst=3))
    async with in_process_broker(tight) as b:
        c = await b.connect()
        for _ in range(3):
            await c.send_line("{not json")
        codes = [(await c.read())["error"]["code"] for _ in range(3)]
        assert codes == [errors.PARSE_ERROR] * 3
        await c.send_line("{not json")
        assert (await c.read())["error"]["code"] == errors.RATE_LIMITED


async def test_connections_past_the_cap_are_refused_with_quota_exceeded(
    settings: Settings,
) -> None:
    capped = replace(settings, limits=Limits(max_connections_per_uid=3))
    async with in_process_broker(capped) as b:
        conns = [await b.connect() for _ in range(3)]
        for c in conns:
            assert await c.call("mesh.ping") == "pong"
        extra = await b.connect()
        with trio.fail_after(5):
            refused = await extra.read()
        assert refused["error"]["code"] == errors.QUOTA_EXCEEDED
        assert refused["error"]["data"]["limit"] == 3
        await conns[0].aclose()
        b.opened.remove(conns[0])
        with trio.fail_after(5):
            while True:  # the slot frees once the broker has seen the close
                again = await RawConn.unix(settings.socket_path)
                b.opened.append(again)
                await again.send_line('{"jsonrpc":"2.0","id":1,"method":"mesh.ping"}')
                if (await again.read()).get("result") == "pong":
                    break
                await trio.sleep(0.01)


async def test_a_client_that_never_reads_is_disconnected_and_others_are_unaffected(
    settings: Settings,
) -> None:
    small = replace(settings, limits=Limits(max_outgoing_queue=50))
    async with in_process_broker(small) as b:
        stalled = await b.connect()
        await stalled.call("event.subscribe")
        sender = await b.connect()
        for i in range(2000):  # each write is an event pushed at the stalled reader
            await sender.call("state.set", key="k", value="x" * 1000 + str(i))
            if len(b.broker.conns) < 2:
                break
        assert len(b.broker.conns) == 1  # the stalled subscriber was dropped
        assert await sender.call("mesh.ping") == "pong"


async def test_a_message_for_a_dropped_slow_reader_stays_queued_for_its_next_session(
    settings: Settings,
) -> None:
    small = replace(settings, limits=Limits(max_outgoing_queue=20))
    async with in_process_broker(small) as b:
        slow = await b.connect()
        reg = await slow.register("slow")
        await slow.call("event.subscribe")
        sender = await b.connect()
        ids: list[int] = []
        for i in range(3000):
            sent = await sender.call("message.send", to=reg["peer_id"], body="y" * 2000 + str(i))
            ids.extend(sent["ids"])
            if reg["peer_id"] not in b.broker.mesh.sessions.conn_of:
                break
        assert reg["peer_id"] not in b.broker.mesh.sessions.conn_of
        again = await b.connect()
        await again.call("peer.register", cwd="/repo", resume=reg["resume_token"])
        inbox = await again.call("message.inbox", limit=500, mark_read=False)
        total = inbox["unread_left"]
        assert total == len(ids)  # every message is still there, unread
