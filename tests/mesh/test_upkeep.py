"""Upkeep: what is pruned, and when."""

from slm_mesh.config import EVENT_RETENTION_S, HOURS, READ_MESSAGE_RETENTION_S
from slm_mesh.store import SQLiteStore
from tests.mesh.harness import Bench


def message_ids(bench: Bench) -> list[int]:
    assert isinstance(bench.store, SQLiteStore)
    rows = bench.store.conn.execute("SELECT id FROM messages ORDER BY id").fetchall()
    return [r["id"] for r in rows]


def test_read_messages_are_pruned_after_a_day_and_unread_ones_kept(bench: Bench) -> None:
    a, b = bench.register("a"), bench.register("b")
    [read_id] = bench.call(a.conn, "message.send", to="b", body="read me")["ids"]
    bench.call(b.conn, "message.inbox")
    [unread_id] = bench.call(a.conn, "message.send", to="b", body="later")["ids"]
    bench.now += READ_MESSAGE_RETENTION_S - 1
    bench.mesh.upkeep(bench.now)
    assert message_ids(bench) == [read_id, unread_id]
    bench.now += 2
    bench.mesh.upkeep(bench.now)
    assert message_ids(bench) == [unread_id]


def test_messages_to_a_peer_gone_for_a_day_are_pruned_with_the_peer(bench: Bench) -> None:
    a, b = bench.register("a"), bench.register("b")
    bench.disconnect(b.conn)
    bench.call(a.conn, "message.send", to="b", body="never read")
    bench.advance(bench.mesh.ctx.grace_s + 1)  # b is gone now
    assert bench.peer_state(b.peer_id) == "gone"
    bench.now += READ_MESSAGE_RETENTION_S + 1
    bench.mesh.upkeep(bench.now)
    assert message_ids(bench) == []
    assert bench.store.get_peer(b.peer_id) is None
    assert bench.store.get_peer(a.peer_id) is not None


def test_events_are_pruned_after_two_days_and_seq_keeps_growing(bench: Bench) -> None:
    a = bench.register("a")
    bench.call(a.conn, "state.set", key="k", value=1)
    last = bench.mesh.last_seq()
    bench.now += EVENT_RETENTION_S + 1 * HOURS
    bench.mesh.upkeep(bench.now)
    assert bench.call(a.conn, "event.read")["events"] == []
    bench.call(a.conn, "state.set", key="k", value=2)
    [event] = bench.call(a.conn, "event.read", after=last)["events"]
    assert event["seq"] == last + 1
