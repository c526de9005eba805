"""The person at the shell: one stable identity with a durable inbox (slm_mesh.person)."""

from __future__ import annotations

from typing import Any

import pytest

from slm_mesh import person
from slm_mesh.mesh.messages import shown_on
from slm_mesh.protocol import errors
from tests.mesh.harness import GRACE_S, PERSON, Bench

SHELL = 0  # an anonymous connection: the person


def test_an_agent_can_answer_the_person_by_id_name_or_cli_with_no_shell_running(
    bench: Bench,
) -> None:
    agent = bench.register("backend")
    asked = bench.call(SHELL, "message.send", to="backend", body="status?")
    [question] = bench.call(agent.conn, "message.inbox")["messages"]
    assert (question["from"], question["from_name"]) == ("person", PERSON)
    for to in (question["from"], PERSON, "cli"):
        sent = bench.call(
            agent.conn, "message.send", to=to, body=f"green ({to})", reply_to=asked["ids"][0]
        )
        assert sent["recipients"][0]["peer_id"] == "person"
        assert sent["recipients"][0]["name"] == PERSON
        assert sent["recipients"][0]["connected"] is False  # nobody follows: it waits
    page = bench.call(SHELL, "message.inbox")
    assert [m["body"] for m in page["messages"]] == [
        "green (person)",
        f"green ({PERSON})",
        "green (cli)",
    ]
    assert {m["reply_to"] for m in page["messages"]} == {asked["ids"][0]}
    assert page["unread_left"] == 0


def test_the_persons_inbox_outlives_every_connection_and_grace(bench: Bench) -> None:
    agent = bench.register("backend")
    bench.call(agent.conn, "message.send", to=PERSON, body="kept")
    bench.disconnect(agent.conn)
    bench.advance(GRACE_S * 10)
    [msg] = bench.call(bench.new_conn(), "message.inbox")["messages"]
    assert msg["body"] == "kept"
    assert msg["from_name"] == "backend"


def test_messages_to_the_person_are_pushed_to_every_connection_that_follows_it(
    bench: Bench,
) -> None:
    first, second, other = bench.new_conn(), bench.new_conn(), bench.new_conn()
    assert bench.call(first, "message.subscribe") == {"person": PERSON, "peer_id": "person"}
    bench.call(second, "message.subscribe")
    agent = bench.register("backend")
    bench.take()
    sent = bench.call(agent.conn, "message.send", to="person", body="hi")
    assert sent["recipients"][0]["connected"] is True
    assert [m["body"] for m in bench.delivered(first)] == ["hi"]
    assert [m["body"] for m in bench.delivered(second)] == ["hi"]
    assert bench.delivered(other) == []
    bench.disconnect(first)
    bench.take()
    bench.call(agent.conn, "message.send", to="person", body="again")
    assert bench.delivered(first) == []
    assert [m["body"] for m in bench.delivered(second)] == ["again"]
    # Pushed is not read: both wait in the inbox until read or acked.
    page = bench.call(SHELL, "message.inbox", mark_read=False)
    assert [m["body"] for m in page["messages"]] == ["hi", "again"]
    acked = bench.call(SHELL, "message.ack", ids=[page["messages"][0]["id"]])
    assert acked == {"acked": 1, "ids": [page["messages"][0]["id"]]}
    assert bench.call(SHELL, "message.inbox")["messages"][0]["body"] == "again"


def test_a_connection_that_registers_stops_following_the_person(bench: Bench) -> None:
    conn = bench.new_conn()
    bench.call(conn, "message.subscribe")
    bench.call(conn, "peer.register", name="late", cwd="/r")
    agent = bench.register("backend")
    bench.take()
    bench.call(agent.conn, "message.send", to="person", body="not for late")
    assert bench.delivered(conn) == []


def test_a_peer_cannot_follow_the_person(bench: Bench) -> None:
    agent = bench.register("backend")
    with pytest.raises(errors.InvalidRequest):
        bench.call(agent.conn, "message.subscribe")


def test_the_person_is_no_peer_session(bench: Bench) -> None:
    bench.register("backend")
    listed = bench.call(SHELL, "peer.list", include_self=True)["peers"]
    assert [p["name"] for p in listed] == ["backend"]
    assert bench.store.get_peer("person") is None
    # A broadcast reaches connected peers only, not the person.
    sent = bench.call(bench.register("other").conn, "message.send", to="all", body="x")
    assert [r["name"] for r in sent["recipients"]] == ["backend"]


def test_what_the_shell_writes_is_by_the_person(bench: Bench) -> None:
    bench.call(SHELL, "state.set", key="release", value="1.4.0")
    assert bench.call(SHELL, "state.get", key="release")["updated_by"] == PERSON


def test_the_persons_name_comes_from_slm_mesh_person_or_the_login_name() -> None:
    assert person.person_name({"SLM_MESH_PERSON": "dave"}) == "dave"
    login = person.login_name()
    assert person.usable(login) or login == "person"
    for unusable in ("", "all", "cli", "two words", "x" * 65, "a/b"):
        assert person.person_name({"SLM_MESH_PERSON": unusable}) == login
    assert person.person_name({}) == login


def test_a_login_name_the_mesh_cannot_route_is_made_safe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOGNAME", "Dave Smith@corp")
    assert person.login_name() == "Dave-Smith-corp"
    monkeypatch.setenv("LOGNAME", "all")
    assert person.login_name() == "person"


def test_each_machine_has_its_person_where_several_share_the_store() -> None:
    assert person.identity("dave", "boxb", shared=False, login="root") == ("person", "dave")
    assert person.identity("dave", "boxb", shared=True, login="root") == (
        "person:root@boxb",
        "dave@boxb",
    )
    assert person.is_person_id("person") and person.is_person_id("person:root@boxb")
    assert not person.is_person_id("a1b2c3d4") and not person.is_person_id(None)
    assert person.bare("dave@boxb") == "dave" and person.bare("dave") == "dave"


def test_a_direct_messages_preview_is_kept_off_other_machines() -> None:
    def sent(to: str, **extra: object) -> dict[str, Any]:
        data = {"from": "a", "to": to, "preview": "first line", **extra}
        return {"seq": 1, "type": "message_sent", "ts": 0.0, "data": data}

    between = sent("b", hosts=["boxa", "boxb"])
    assert shown_on(between, "boxa") is between
    assert "preview" not in shown_on(between, "boxc")["data"]
    assert between["data"]["preview"] == "first line"  # the event itself is not changed
    broadcast = sent("all", hosts=["boxa", "boxb"])
    assert shown_on(broadcast, "boxc") is broadcast
    one_machine = sent("b")  # SQLite: no hosts, every reader is this machine's
    assert shown_on(one_machine, "") is one_machine
