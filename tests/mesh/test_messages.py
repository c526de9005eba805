"""Messages: durable before the answer, one row per recipient, queued → pushed → read."""

from __future__ import annotations

from pathlib import Path

import pytest

from slm_mesh.config import Limits
from slm_mesh.protocol import errors
from slm_mesh.store import Store
from tests.mesh.harness import GRACE_S, PERSON, Bench, Peer


def status_of(bench: Bench, recipient: Peer, message_id: int) -> str:
    """The message's status as its recipient's inbox shows it (without reading it)."""
    inbox = bench.call(
        recipient.conn, "message.inbox", unread_only=False, mark_read=False, limit=500
    )
    [status] = [m["status"] for m in inbox["messages"] if m["id"] == message_id]
    return str(status)


def test_a_sent_message_is_committed_before_send_returns(tmp_path: Path) -> None:
    db = tmp_path / "mesh.db"
    bench = Bench(Store.open(db))
    a, b = bench.register("a"), bench.register("b")
    out = bench.call(a.conn, "message.send", to="b", body="hello")
    # Another connection to the file sees it: it is on disk, not in an open transaction.
    other = Store.open(db)
    [row] = other.inbox(b.peer_id, unread_only=True, sender_id=None, filter_sender=False, limit=5)
    assert row["id"] == out["ids"][0]
    assert row["body"] == "hello"
    other.close()
    bench.store.close()


def test_a_message_to_a_connected_peer_is_delivered_and_stays_queued_until_pushed(
    bench: Bench,
) -> None:
    a, b = bench.register("a"), bench.register("b")
    bench.take()
    out = bench.call(a.conn, "message.send", to=b.peer_id, body="hi", type="alert")
    [msg_id] = out["ids"]
    assert out["recipients"] == [
        {"peer_id": b.peer_id, "name": "b", "id": msg_id, "connected": True}
    ]
    [pushed] = bench.delivered(b.conn)
    assert pushed["id"] == msg_id
    assert pushed["from"] == a.peer_id
    assert pushed["from_name"] == "a"
    assert pushed["type"] == "alert"
    assert bench.delivered(a.conn) == []
    assert status_of(bench, b, msg_id) == "queued"
    [sent] = bench.events("message_sent")
    assert sent["data"]["ids"] == [msg_id]
    assert sent["data"]["recipients"] == [b.peer_id]


def test_a_message_moves_queued_pushed_read_and_pushing_never_marks_it_read(
    bench: Bench,
) -> None:
    a, b = bench.register("a"), bench.register("b")
    [msg_id] = bench.call(a.conn, "message.send", to="b", body="hi")["ids"]
    assert status_of(bench, b, msg_id) == "queued"

    bench.mesh.pushed([msg_id], bench.now)
    assert status_of(bench, b, msg_id) == "pushed"
    peek = bench.call(b.conn, "message.inbox", mark_read=False)
    assert [m["id"] for m in peek["messages"]] == [msg_id]
    assert peek["unread_left"] == 1

    inbox = bench.call(b.conn, "message.inbox")
    assert [(m["id"], m["status"]) for m in inbox["messages"]] == [(msg_id, "read")]
    assert inbox["unread_left"] == 0
    assert status_of(bench, b, msg_id) == "read"
    assert bench.call(b.conn, "message.inbox")["messages"] == []
    everything = bench.call(b.conn, "message.inbox", unread_only=False)["messages"]
    assert [m["id"] for m in everything] == [msg_id]


def test_pushed_does_not_bring_a_read_message_back(bench: Bench) -> None:
    a, b = bench.register("a"), bench.register("b")
    [msg_id] = bench.call(a.conn, "message.send", to="b", body="hi")["ids"]
    bench.call(b.conn, "message.ack", ids=[msg_id])
    bench.mesh.pushed([msg_id], bench.now)  # a late report from the connection
    assert status_of(bench, b, msg_id) == "read"


def test_ack_marks_read_and_counts_only_the_callers_unread_messages(bench: Bench) -> None:
    a, b, c = bench.register("a"), bench.register("b"), bench.register("c")
    [to_b] = bench.call(a.conn, "message.send", to="b", body="for b")["ids"]
    [to_c] = bench.call(a.conn, "message.send", to="c", body="for c")["ids"]

    assert bench.call(b.conn, "message.ack", ids=[to_b, to_c]) == {"acked": 1, "ids": [to_b]}
    assert status_of(bench, b, to_b) == "read"
    assert status_of(bench, c, to_c) == "queued"
    # Marked already: not this call's (what lets two readers tell whose each message is).
    assert bench.call(b.conn, "message.ack", ids=[to_b]) == {"acked": 0, "ids": []}
    assert bench.call(c.conn, "message.inbox", mark_read=False)["unread_left"] == 1


def test_inbox_reads_a_page_and_reports_how_many_are_left(bench: Bench) -> None:
    a, b = bench.register("a"), bench.register("b")
    ids = [bench.call(a.conn, "message.send", to="b", body=str(i))["ids"][0] for i in range(5)]
    page = bench.call(b.conn, "message.inbox", limit=2)
    assert [m["id"] for m in page["messages"]] == ids[:2]
    assert page["unread_left"] == 3
    rest = bench.call(b.conn, "message.inbox", limit=10)
    assert [m["id"] for m in rest["messages"]] == ids[2:]
    assert rest["unread_left"] == 0


def test_inbox_filters_by_sender_name_id_or_the_person(bench: Bench) -> None:
    a, b, me = bench.register("a"), bench.register("b"), bench.register("me")
    bench.call(a.conn, "message.send", to="me", body="from a")
    bench.call(b.conn, "message.send", to="me", body="from b")
    bench.call(0, "message.send", to="me", body="from the shell")

    def bodies(sender: str) -> list[str]:
        out = bench.call(me.conn, "message.inbox", mark_read=False, **{"from": sender})
        return [m["body"] for m in out["messages"]]

    assert bodies("a") == ["from a"]
    assert bodies(b.peer_id) == ["from b"]
    assert bodies("cli") == ["from the shell"]
    assert bodies("person") == ["from the shell"]
    assert bodies(PERSON) == ["from the shell"]
    with pytest.raises(errors.PeerNotFound):
        bodies("nobody")


def test_an_anonymous_sender_is_the_person(bench: Bench) -> None:
    b = bench.register("b")
    bench.call(0, "message.send", to="b", body="from the shell")
    [msg] = bench.call(b.conn, "message.inbox")["messages"]
    assert msg["from"] == "person"
    assert msg["from_name"] == PERSON


# -- broadcast ---------------------------------------------------------------------------


def test_broadcast_gives_every_connected_peer_but_the_sender_its_own_row(bench: Bench) -> None:
    a, b, c = bench.register("a"), bench.register("b"), bench.register("c")
    away = bench.register("away")
    bench.disconnect(away.conn)
    bench.take()

    out = bench.call(a.conn, "message.send", to="all", body="lunch?")

    assert {r["peer_id"] for r in out["recipients"]} == {b.peer_id, c.peer_id}
    assert len(set(out["ids"])) == 2
    assert sorted(out["ids"]) == sorted(r["id"] for r in out["recipients"])
    for peer in (b, c):
        [msg] = bench.call(peer.conn, "message.inbox")["messages"]
        assert msg["broadcast"] is True
        assert msg["to"] == peer.peer_id
    assert {m["to"] for m in bench.delivered()} == {b.peer_id, c.peer_id}
    assert bench.call(a.conn, "message.inbox")["messages"] == []
    back = bench.resume(away)
    assert bench.call(back.conn, "message.inbox")["messages"] == []


def test_a_detached_connection_gets_no_broadcast(bench: Bench) -> None:
    a, b = bench.register("a"), bench.register("b")
    back = bench.resume(b)
    bench.take()
    bench.call(a.conn, "message.send", to="all", body="x")
    assert [e_conn for e_conn in (back.conn, b.conn) if bench.delivered(e_conn)] == [back.conn]


def test_broadcast_with_nobody_there_is_empty_not_an_error(bench: Bench) -> None:
    assert bench.call(0, "message.send", to="all", body="anyone?")["ids"] == []
    a = bench.register("a")
    assert bench.call(a.conn, "message.send", to="all", body="anyone?") == {
        "ids": [],
        "recipients": [],
    }
    assert bench.events("message_sent") == []


def test_an_anonymous_broadcast_reaches_every_connected_peer(bench: Bench) -> None:
    a, b = bench.register("a"), bench.register("b")
    out = bench.call(0, "message.send", to="all", body="from the shell")
    assert {r["peer_id"] for r in out["recipients"]} == {a.peer_id, b.peer_id}


def test_broadcast_scope_limits_it_to_the_senders_directory_or_repo(bench: Bench) -> None:
    me = bench.register("me", cwd="/r/web", git_root="/r")
    same_dir = bench.register("same-dir", cwd="/r/web", git_root="/r")
    same_repo = bench.register("same-repo", cwd="/r/api", git_root="/r")
    bench.register("elsewhere", cwd="/q", git_root="/q")

    def reached(scope: str) -> set[str]:
        out = bench.call(me.conn, "message.send", to="all", body="x", scope=scope)
        return {r["name"] for r in out["recipients"]}

    assert reached("directory") == {same_dir.name}
    assert reached("repo") == {same_dir.name, same_repo.name}
    assert reached("machine") == {same_dir.name, same_repo.name, "elsewhere"}


def test_a_scoped_broadcast_from_the_cli_is_invalid_params(bench: Bench) -> None:
    bench.register("a")
    with pytest.raises(errors.InvalidParams) as exc:
        bench.call(0, "message.send", to="all", body="x", scope="repo")
    assert exc.value.data == {"field": "scope"}


# -- recipients that are away, gone or unknown -------------------------------------------


def test_a_message_to_an_away_peer_by_name_is_queued_for_it(bench: Bench) -> None:
    a, b = bench.register("a"), bench.register("b")
    bench.disconnect(b.conn)
    bench.take()
    out = bench.call(a.conn, "message.send", to="b", body="later")
    assert out["recipients"][0]["connected"] is False
    assert bench.delivered() == []
    row = bench.store.get_message(out["ids"][0])
    assert row is not None
    assert (row["recipient_id"], row["status"]) == (b.peer_id, "queued")


@pytest.mark.parametrize("how", ["unregister", "grace"])
def test_a_message_to_a_gone_peer_is_peer_not_found(bench: Bench, how: str) -> None:
    a, b = bench.register("a"), bench.register("b")
    if how == "unregister":
        bench.call(b.conn, "peer.unregister")
    else:
        bench.disconnect(b.conn)
        bench.advance(GRACE_S)
    for to in ("b", b.peer_id):
        with pytest.raises(errors.PeerNotFound) as exc:
            bench.call(a.conn, "message.send", to=to, body="hello?")
        assert exc.value.code == errors.PEER_NOT_FOUND


def test_a_message_to_an_unknown_peer_is_peer_not_found_and_stores_nothing(bench: Bench) -> None:
    a = bench.register("a")
    with pytest.raises(errors.PeerNotFound) as exc:
        bench.call(a.conn, "message.send", to="nobody", body="hello?")
    assert exc.value.code == errors.PEER_NOT_FOUND
    assert bench.store.counts()["messages"] == 0


# -- bodies ------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_too_large_counting_bytes_not_characters() -> None:
    bench = Bench(limits=Limits(max_body_bytes=8))
    a, _ = bench.register("a"), bench.register("b")
    bench.call(a.conn, "message.send", to="b", body="x" * 8)
    for body in ("x" * 9, "é" * 5):
        with pytest.raises(errors.TooLarge) as exc:
            bench.call(a.conn, "message.send", to="b", body=body)
        assert exc.value.code == errors.TOO_LARGE
        assert exc.value.data["limit"] == 8
    assert bench.store.counts()["messages"] == 1


def test_a_json_message_needs_a_json_body(bench: Bench) -> None:
    a, _ = bench.register("a"), bench.register("b")
    with pytest.raises(errors.InvalidParams) as exc:
        bench.call(a.conn, "message.send", to="b", body="{not json", type="json")
    assert exc.value.data == {"field": "body"}
    bench.call(a.conn, "message.send", to="b", body='{"ok": true}', type="json")


def test_a_reply_names_an_existing_message(bench: Bench) -> None:
    a, b = bench.register("a"), bench.register("b")
    [first] = bench.call(a.conn, "message.send", to="b", body="q")["ids"]
    [reply] = bench.call(b.conn, "message.send", to="a", body="a", reply_to=first)["ids"]
    [msg] = bench.call(a.conn, "message.inbox")["messages"]
    assert (msg["id"], msg["reply_to"]) == (reply, first)
    with pytest.raises(errors.InvalidParams) as exc:
        bench.call(b.conn, "message.send", to="a", body="a", reply_to=first + 100)
    assert exc.value.data == {"field": "reply_to"}


def test_the_sent_event_names_the_recipient_and_shows_the_first_line(bench: Bench) -> None:
    a, b = bench.register("a"), bench.register("b")
    bench.call(a.conn, "message.send", to="b", body="\n  build is green  \nsecond line")
    long = "x" * 200
    bench.call(a.conn, "message.send", to="all", body=long)
    one, everyone = (e["data"] for e in bench.events("message_sent"))
    assert (one["to"], one["to_name"], one["preview"]) == (b.peer_id, "b", "build is green")
    assert everyone["to_name"] == "all"
    assert everyone["preview"] == "x" * 79 + "…"
