"""Sessions, pushes and the message lifecycle, against the real broker on a real socket."""

import json

import trio
import trio.testing

from slm_mesh.config import Settings
from slm_mesh.protocol import errors
from tests.wire import in_process_broker, person_of


async def test_a_message_is_pushed_to_its_recipient_and_stays_unread_until_read(
    settings: Settings,
) -> None:
    async with in_process_broker(settings) as b:
        alice, bob = await b.connect(), await b.connect()
        await alice.register("alice")
        bob_id = (await bob.register("bob"))["peer_id"]
        sent = await alice.call("message.send", to="bob", body="auth.ts is mine for an hour")
        assert [r["peer_id"] for r in sent["recipients"]] == [bob_id]
        with trio.fail_after(5):
            push = await bob.notification("message")
        assert push["params"]["body"] == "auth.ts is mine for an hour"
        assert push["params"]["from_name"] == "alice"
        assert push["params"]["id"] == sent["ids"][0]
        # Pushed, not read: the inbox still has it as unread (without marking it).
        peek = await bob.call("message.inbox", mark_read=False)
        assert [m["id"] for m in peek["messages"]] == sent["ids"]
        assert peek["messages"][0]["status"] == "pushed"
        assert peek["unread_left"] == 1
        read = await bob.call("message.inbox")
        assert read["unread_left"] == 0
        assert (await bob.call("message.inbox"))["messages"] == []


async def test_broadcast_reaches_every_connected_peer_but_the_sender(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        conns = [await b.connect() for _ in range(4)]
        for i, c in enumerate(conns):
            await c.register(f"p{i}")
        anon = await b.connect()
        sent = await conns[0].call("message.send", to="all", body="schema v2.1")
        assert sorted(r["name"] for r in sent["recipients"]) == ["p1", "p2", "p3"]
        for c in conns[1:]:
            with trio.fail_after(5):
                assert (await c.notification("message"))["params"]["body"] == "schema v2.1"
        from_cli = await anon.call("message.send", to="all", body="from the shell")
        assert len(from_cli["recipients"]) == 4
        with trio.fail_after(5):
            note = await conns[0].notification("message")
        assert (note["params"]["from"], note["params"]["from_name"]) == person_of(settings)


async def test_sending_to_an_unknown_peer_is_peer_not_found(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        c = await b.connect()
        assert (await c.error("message.send", to="nobody", body="x"))["code"] == (
            errors.PEER_NOT_FOUND
        )


async def test_resume_within_grace_returns_same_id_inbox_and_locks(
    settings: Settings, autojump_clock: trio.testing.MockClock
) -> None:
    async with in_process_broker(settings) as b:
        a = await b.connect()
        reg = await a.register("backend")
        await a.call("lock.acquire", path="src/auth.ts")
        await a.aclose()
        await trio.sleep(settings.grace_s / 2)
        other = await b.connect()
        await other.call("message.send", to="backend", body="while you were away")
        peers = (await other.call("peer.list"))["peers"]
        assert [(p["name"], p["status"], p["connected"]) for p in peers] == [
            ("backend", "away", False)
        ]
        again = await b.connect()
        back = await again.call("peer.register", cwd="/repo", resume=reg["resume_token"])
        assert back["peer_id"] == reg["peer_id"]
        assert back["resumed"] is True
        with trio.fail_after(5):
            queued = await again.notification("message")
        assert queued["params"]["body"] == "while you were away"
        locks = (await again.call("lock.list"))["locks"]
        assert [(lk["path"], lk["peer_id"]) for lk in locks] == [
            ("/repo/src/auth.ts", reg["peer_id"])
        ]
        await trio.sleep(settings.grace_s * 2)  # the grace no longer matters
        assert (await again.call("peer.whoami"))["peer_id"] == reg["peer_id"]


async def test_peer_leaves_after_the_grace_and_its_locks_go_with_it(
    settings: Settings, autojump_clock: trio.testing.MockClock
) -> None:
    async with in_process_broker(settings) as b:
        watcher = await b.connect()
        await watcher.call("event.subscribe", types=["peer_left", "lock_released"])
        a = await b.connect()
        reg = await a.register("a")
        await a.call("lock.acquire", path="/repo/x")
        start = trio.current_time()
        await a.aclose()
        with trio.fail_after(settings.grace_s + 5):
            first = await watcher.notification("event")
            second = await watcher.notification("event")
        assert trio.current_time() - start >= settings.grace_s
        assert {first["params"]["type"], second["params"]["type"]} == {"peer_left", "lock_released"}
        assert (await watcher.call("lock.list"))["locks"] == []
        late = await b.connect()
        again = await late.call("peer.register", cwd="/repo", resume=reg["resume_token"])
        assert again["resumed"] is False
        assert again["peer_id"] != reg["peer_id"]


async def test_names_are_unique_among_live_peers(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        names = [(await (await b.connect()).register("backend"))["name"] for _ in range(3)]
        assert names == ["backend", "backend-2", "backend-3"]


async def test_event_subscribe_replays_then_streams_without_a_gap(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        writer = await b.connect()
        for i in range(5):
            await writer.call("state.set", key=f"k{i}", value=i)
        reader = await b.connect()
        sub = await reader.call("event.subscribe", after=2)
        replayed = [n["params"]["seq"] for n in reader.notifications]
        assert replayed == [3, 4, 5]
        assert sub["last_seq"] == 5
        reader.notifications.clear()
        await writer.call("state.set", key="live", value=1)
        with trio.fail_after(5):
            live = await reader.notification("event")
        assert live["params"]["seq"] == 6
        assert live["params"]["type"] == "state_changed"
        assert live["params"]["data"]["key"] == "live"


async def test_a_full_inbox_is_answered_in_pieces_each_under_the_line_cap(
    settings: Settings,
) -> None:
    async with in_process_broker(settings) as b:
        me, sender = await b.connect(), await b.connect()
        await me.register("me")
        await me.call("peer.unregister")  # no pushes: the messages just wait
        reg = await me.register("me")
        await me.aclose()
        for i in range(40):
            await sender.call("message.send", to=reg["peer_id"], body=f"{i:02d}" + "é" * 30_000)
        back = await b.connect()
        await back.call("peer.register", cwd="/repo", resume=reg["resume_token"])
        back.notifications.clear()
        seen: list[int] = []
        while True:
            await back.send_line(
                '{"jsonrpc":"2.0","id":1,"method":"message.inbox","params":{"limit":500}}'
            )
            line = await back.read_line()
            while b'"method"' in line[:40]:  # skip pushes of the resumed session
                line = await back.read_line()
            assert len(line) < 1024 * 1024
            page = json.loads(line)["result"]
            seen.extend(int(m["body"][:2]) for m in page["messages"])
            if page["unread_left"] == 0:
                break
        assert seen == list(range(40))


async def test_a_connection_whose_peer_is_resumed_elsewhere_is_told(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        old, new = await b.connect(), await b.connect()
        joined = await old.register("backend")
        back = await new.call(
            "peer.register", name="backend", cwd="/r", resume=joined["resume_token"]
        )
        assert back["peer_id"] == joined["peer_id"]
        with trio.fail_after(5):
            note = await old.notification("peer.detached")
        assert note["params"] == {"peer_id": joined["peer_id"], "reason": "resumed"}
        assert (await old.error("peer.whoami"))["code"] == errors.NOT_REGISTERED
        assert (await new.call("peer.whoami"))["name"] == "backend"
        # It never acts as the person behind its agent's back: it may read, not write,
        # until it registers again.
        refused = await old.error("state.set", key="k", value=1)
        assert refused["code"] == errors.NOT_REGISTERED
        assert "taken from it (resumed)" in refused["message"]
        assert (await old.error("message.send", to="backend", body="x"))["code"] == (
            errors.NOT_REGISTERED
        )
        assert [p["name"] for p in (await old.call("peer.list"))["peers"]] == ["backend"]
        assert await old.call("state.get", key="k") is None
        again = await old.register("frontend")
        assert again["peer_id"] != joined["peer_id"]
        assert (await old.call("state.set", key="k", value=1))["version"] == 1
