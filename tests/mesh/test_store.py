"""The SQLite store: migrations, refusing what it can't use, durable ids and sequences."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlite_utils

from slm_mesh.store import SCHEMA_VERSION, SchemaError, SQLiteStore, Store
from slm_mesh.store.sqlite.schema import migrate, read_version
from tests.mesh.harness import Bench

TABLES = {"meta", "peers", "messages", "state", "locks", "events"}


class Boom(Exception):
    pass


def test_an_empty_database_is_migrated_to_the_current_schema() -> None:
    db = sqlite_utils.Database(memory=True)
    assert read_version(db) == 0
    assert migrate(db) == 0
    assert read_version(db) == SCHEMA_VERSION
    assert set(db.table_names()) >= TABLES
    assert migrate(db) == SCHEMA_VERSION  # nothing left to run
    db.close()


def test_a_new_store_is_empty_and_sound(tmp_path: Path) -> None:
    store = SQLiteStore.open_file(tmp_path / "mesh.db")
    assert store.integrity_ok()
    assert set(store.counts().values()) == {0}
    assert store.last_seq() == 0
    assert store.size_bytes() > 0
    store.close()


def test_reopening_a_store_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "mesh.db"
    bench = Bench(Store.open(path))
    a, _ = bench.register("a"), bench.register("b")
    [msg_id] = bench.call(a.conn, "message.send", to="b", body="kept")["ids"]
    bench.call(0, "state.set", key="k", value={"v": 1})
    bench.call(a.conn, "lock.acquire", path="/r/a")
    seq = bench.store.last_seq()
    bench.store.close()

    store = SQLiteStore.open_file(path)
    [version] = store.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'")
    assert int(version["value"]) == SCHEMA_VERSION
    message = store.get_message(msg_id)
    assert message is not None
    assert message["body"] == "kept"
    peer = store.get_peer(a.peer_id)
    assert peer is not None
    assert peer["name"] == "a"
    state = store.state_get("default", "k")
    assert state is not None
    assert state["version"] == 1
    assert [(r["path"], r["peer_id"]) for r in store.all_locks()] == [("/r/a", a.peer_id)]
    assert store.last_seq() == seq
    store.close()


def test_a_database_from_a_newer_version_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "mesh.db"
    Store.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
    conn.close()

    with pytest.raises(SchemaError):
        Store.open(path)

    with sqlite3.connect(path) as conn:
        [(version,)] = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'")
    conn.close()
    assert int(version) == SCHEMA_VERSION + 1


@pytest.mark.parametrize(
    "content",
    [b"this is not a database\n" * 100, b"SQLite format 3\x00" + b"\xff" * 4000],
    ids=["text", "corrupt-header"],
)
def test_a_file_that_is_not_an_slm_mesh_database_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "mesh.db"
    path.write_bytes(content)
    with pytest.raises(SchemaError):
        Store.open(path)
    assert path.read_bytes() == content


def test_a_rolled_back_transaction_leaves_no_trace() -> None:
    store = Store.open(None)
    peer = {
        "id": "p1",
        "name": "a",
        "cwd": "/r",
        "summary": "",
        "status": "active",
        "state": "live",
        "resume_token": "t",
        "joined_at": 1.0,
    }

    def write_then_fail() -> None:
        with store.transaction():
            store.insert_peer(peer)
            store.append_event("peer_joined", 1.0, {"peer_id": "p1"})
            raise Boom

    with pytest.raises(Boom):
        write_then_fail()
    assert store.get_peer("p1") is None
    assert store.peers_in(("live",)) == []
    assert store.events_after(0, None, 10) == []
    assert store.counts()["peers"] == 0
    store.close()


def test_event_seq_keeps_growing_after_every_event_is_pruned(tmp_path: Path) -> None:
    path = tmp_path / "mesh.db"
    store = Store.open(path)
    seqs = [store.append_event("state_changed", 1.0, {"n": n}) for n in range(3)]
    assert seqs == [1, 2, 3]
    assert store.prune(read_before=0.0, events_before=2.0) == (0, 3)
    assert store.events_after(0, None, 10) == []
    assert store.last_seq() == 3
    assert store.append_event("state_changed", 3.0, {}) == 4
    store.prune(read_before=0.0, events_before=4.0)
    store.close()

    store = Store.open(path)
    assert store.last_seq() == 4
    assert store.append_event("state_changed", 5.0, {}) == 5
    store.close()


def test_event_read_after_a_prune_resumes_from_the_head_of_the_log(bench: Bench) -> None:
    for n in range(3):
        bench.call(0, "state.set", key="k", value=n)
    bench.store.prune(read_before=0.0, events_before=bench.now + 1)
    out = bench.call(0, "event.read")
    assert out == {"events": [], "last_seq": 3}
    bench.call(0, "state.set", key="k", value=3)
    [event] = bench.call(0, "event.read", after=out["last_seq"])["events"]
    assert event["seq"] == 4


def test_message_ids_are_never_reused_after_pruning(bench: Bench) -> None:
    a, b = bench.register("a"), bench.register("b")
    [first] = bench.call(a.conn, "message.send", to="b", body="x")["ids"]
    bench.call(b.conn, "message.inbox")
    bench.store.prune(read_before=bench.now + 1, events_before=0.0)
    assert bench.store.get_message(first) is None
    [second] = bench.call(a.conn, "message.send", to="b", body="y")["ids"]
    assert second > first


def committed_elsewhere(path: Path, sql: str) -> list[tuple[object, ...]]:
    """What another connection sees: only committed rows."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_a_write_outside_a_transaction_commits_at_once(tmp_path: Path) -> None:
    path = tmp_path / "mesh.db"
    store = Store.open(path)
    seq = store.append_event("state_changed", 1.0, {})
    assert committed_elsewhere(path, "SELECT seq FROM events") == [(seq,)]
    with store.transaction():
        store.append_event("state_changed", 2.0, {})
    assert len(committed_elsewhere(path, "SELECT seq FROM events")) == 2
    store.close()


def test_writes_after_a_restart_that_ended_stale_locks_are_committed(tmp_path: Path) -> None:
    path = tmp_path / "mesh.db"
    before = Bench(Store.open(path))
    a = before.register("a")
    before.call(a.conn, "lock.acquire", path="/r/a", ttl=10)
    before.store.close()  # the broker stops; the lock runs out meanwhile

    after = Bench(Store.open(path), now=before.now + 60)
    after.mesh.start(after.now)  # ends the stale lock
    [msg_id] = after.call(0, "message.send", to="a", body="after the restart")["ids"]

    assert committed_elsewhere(path, "SELECT path FROM locks") == []
    assert committed_elsewhere(path, "SELECT id FROM messages") == [(msg_id,)]
    after.store.close()


def test_unread_messages_are_found_without_walking_the_read_ones(tmp_path: Path) -> None:
    """Read messages are kept a day: the unread count and the inbox (asked on every tool
    call) must seek the unread ones in the (recipient_id, status, id) index."""
    store = SQLiteStore.open_file(tmp_path / "mesh.db")
    queries: list[str] = []
    store.conn.set_trace_callback(queries.append)
    store.unread_count("p1")
    store.inbox("p1", unread_only=True, sender_id=None, filter_sender=False, limit=20)
    store.conn.set_trace_callback(None)
    reads = [q for q in queries if q.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 2
    for query in reads:
        plan = " ".join(
            row["detail"] for row in store.conn.execute(f"EXPLAIN QUERY PLAN {query}").fetchall()
        )
        assert "(recipient_id=? AND status=?)" in plan, plan
    store.close()


def test_a_version_1_database_gains_where_peers_and_locks_are(tmp_path: Path) -> None:
    from slm_mesh.store.sqlite.schema import MIGRATIONS

    path = tmp_path / "mesh.db"
    db = sqlite_utils.Database(path)
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    MIGRATIONS[1](db)
    db.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    db.execute(
        "INSERT INTO locks (path, peer_id, mode, acquired_at, expires_at) "
        "VALUES ('/r/a', 'p1', 'exclusive', 1, 2)"
    )
    db.conn.commit()
    db.close()
    store = Store.open(path)
    assert store.all_locks() == [
        {
            "path": "/r/a",
            "peer_id": "p1",
            "mode": "exclusive",
            "reason": None,
            "acquired_at": 1.0,
            "expires_at": 2.0,
            "host": None,
            "repo": None,
            "rel": None,
        }
    ]
    store.close()
