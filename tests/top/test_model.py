"""What ``slm-mesh top`` knows of the mesh: events applied at once, snapshots filling in
what events do not carry, replays that overlap snapshots changing nothing."""

from __future__ import annotations

from typing import Any

from slm_mesh.top.model import KEEP_MESSAGES, MeshView

T0 = 1_000_000.0


def event(seq: int, type_: str, ts: float = T0, **data: Any) -> dict[str, Any]:
    return {"seq": seq, "type": type_, "ts": ts, "data": data}


def joined(seq: int, peer_id: str, name: str, ts: float = T0) -> dict[str, Any]:
    return event(seq, "peer_joined", ts, peer_id=peer_id, name=name, agent="codex", cwd="/r")


def lock(path: str, peer_id: str, holder: str) -> dict[str, Any]:
    return {"path": path, "peer_id": peer_id, "holder": holder, "mode": "exclusive"}


def status(last_seq: int, calls: int = 0, messages: int = 0) -> dict[str, Any]:
    return {
        "pid": 1,
        "uptime_s": 5.0,
        "counts": {"last_seq": last_seq, "unread": 0},
        "activity": {"calls": calls, "messages": messages},
    }


def test_a_joining_peer_is_listed_at_once_and_asks_for_a_fresh_peer_list() -> None:
    view = MeshView()
    assert view.apply(joined(1, "p1", "alice")) is True
    assert view.peers["p1"]["name"] == "alice"
    assert view.peers["p1"]["status"] == "active"
    assert view.peers["p1"]["joined_at"] == T0
    assert {"peers", "events", "header"} <= view.take_dirty()


def test_a_summary_change_and_going_away_show_on_the_peer() -> None:
    view = MeshView()
    view.apply(joined(1, "p1", "alice"))
    view.apply(event(2, "peer_updated", T0 + 5, peer_id="p1", summary="auth", status="busy"))
    assert (view.peers["p1"]["summary"], view.peers["p1"]["status"]) == ("auth", "busy")
    view.apply(event(3, "peer_updated", T0 + 9, peer_id="p1", summary="auth", status="away"))
    assert view.peers["p1"]["status"] == "away"
    assert view.peers["p1"]["last_seen"] == T0 + 9  # away since then
    view.apply(event(4, "peer_left", peer_id="p1", name="alice", reason="grace_expired"))
    assert view.peers == {}


def test_a_session_that_moved_shows_where_it_is_now() -> None:
    view = MeshView()
    view.apply(joined(1, "p1", "alice"))
    moved = {"cwd": "/s/sub", "git_root": "/s", "git_branch": "dev", "repo": None}
    view.apply(event(2, "peer_updated", T0 + 5, peer_id="p1", status="active", **moved))
    assert {k: view.peers["p1"][k] for k in moved} == moved


def test_locks_come_and_go_with_their_events() -> None:
    view = MeshView()
    view.apply(event(1, "lock_acquired", **lock("/r/a", "p1", "alice")))
    view.apply(event(2, "lock_acquired", **lock("/r/b", "p1", "alice")))
    view.apply(event(3, "lock_released", **lock("/r/a", "p1", "alice"), reason="forced"))
    view.apply(event(4, "lock_expired", **lock("/r/c", "p9", "ghost")))  # not listed: no-op
    assert list(view.locks) == [("/r/b", "p1")]


def test_a_message_is_listed_newest_first_and_counted_unread_for_its_recipients() -> None:
    view = MeshView()
    view.set_peers([{"peer_id": "p1", "name": "alice", "unread": 2}])
    sent: dict[str, Any] = {
        "from_name": "cli",
        "to": "all",
        "recipients": ["p1", "p9"],
        "preview": "hi",
    }
    view.apply(event(1, "message_sent", **sent))
    view.apply(event(2, "message_sent", **{**sent, "preview": "again"}))
    assert [m["preview"] for m in view.messages] == ["again", "hi"]
    assert view.peers["p1"]["unread"] == 4
    assert view.messages[0]["sent_at"] == T0


def test_a_replayed_event_already_seen_is_ignored() -> None:
    view = MeshView()
    view.add_backlog([joined(1, "p1", "alice"), event(2, "message_sent", to="all")])
    assert view.last_seq == 2
    assert view.peers == {}  # the backlog is history: the snapshots say what is now
    assert view.apply(joined(2, "p2", "bob")) is False
    assert view.peers == {}
    assert len(view.events) == 2


def test_events_replayed_over_a_newer_snapshot_end_where_the_snapshot_is() -> None:
    # The snapshot already shows the end state; the replay walks through older states.
    view = MeshView()
    view.set_peers([{"peer_id": "p2", "name": "bob", "status": "active"}])
    view.set_locks([lock("/r/b", "p2", "bob")])
    replay = [
        joined(1, "p1", "alice"),
        event(2, "lock_acquired", **lock("/r/a", "p1", "alice")),
        event(3, "lock_acquired", **lock("/r/b", "p2", "bob")),
        event(4, "lock_released", **lock("/r/a", "p1", "alice")),
        event(5, "peer_left", peer_id="p1", name="alice"),
    ]
    for e in replay:
        view.apply(e)
    assert list(view.peers) == ["p2"]
    assert list(view.locks) == [("/r/b", "p2")]


def test_a_snapshot_keeps_the_unread_count_when_it_brings_none() -> None:
    view = MeshView()
    view.set_peers([{"peer_id": "p1", "name": "alice", "unread": 3}])
    view.set_peers([{"peer_id": "p1", "name": "alice"}])
    assert view.peers["p1"]["unread"] == 3
    view.set_peers([{"peer_id": "p1", "name": "alice", "unread": 0}])
    assert view.peers["p1"]["unread"] == 0


def test_a_log_that_went_backwards_is_another_brokers_and_the_lists_start_again() -> None:
    view = MeshView()
    view.add_backlog([joined(40, "p1", "alice"), event(41, "message_sent", to="all")])
    view.set_connected(status(last_seq=3))
    assert view.last_seq == 0
    assert not view.events and not view.messages


def test_going_away_and_back_is_said_in_the_header() -> None:
    view = MeshView()
    view.set_connected(status(last_seq=0))
    view.take_dirty()
    view.set_disconnected("broker stopped")
    assert (view.connected, view.problem) == (False, "broker stopped")
    assert "header" in view.take_dirty()
    view.set_connected(status(last_seq=0))
    assert (view.connected, view.problem) == (True, None)


def test_calls_per_second_come_from_successive_status_counters() -> None:
    view = MeshView()
    view.set_status(status(0, calls=100), at=10.0)
    assert view.calls_per_s() is None  # one sample is no rate
    view.set_status(status(0, calls=130), at=12.0)
    view.set_status(status(0, calls=170), at=14.0)
    assert view.calls_per_s() == 70 / 4
    view.set_status(status(0, calls=5), at=16.0)  # a new broker: counting starts again
    assert view.calls_per_s() is None


def test_calls_per_second_leave_out_tops_own_calls() -> None:
    view = MeshView()
    view.set_status(status(0, calls=100), at=10.0, own_calls=4)
    view.set_status(status(0, calls=110), at=12.0, own_calls=7)  # 3 of the 10 were top's
    assert view.calls_per_s() == 7 / 2
    view.set_status(status(0, calls=114), at=14.0, own_calls=11)  # only top's: none
    view.set_status(status(0, calls=118), at=16.0, own_calls=15)
    assert view.rate(1, 2.0) == 0
    view.set_status(status(0, calls=3), at=18.0, own_calls=17)  # a new broker
    assert view.calls_per_s() is None


def test_messages_per_minute_count_the_messages_of_the_last_minute() -> None:
    view = MeshView()
    for seq, ago in enumerate((90, 50, 10, 1), 1):
        view.apply(event(seq, "message_sent", T0 - ago, to="all"))
    assert view.messages_per_min(T0) == 3


def test_with_more_messages_than_it_keeps_the_rate_comes_from_the_counters() -> None:
    view = MeshView()
    for seq in range(1, KEEP_MESSAGES + 2):
        view.apply(event(seq, "message_sent", T0 - 1, to="all"))
    assert view.messages_per_min(T0) is None  # no counters yet
    view.set_status(status(0, messages=1_000), at=0.0)
    view.set_status(status(0, messages=1_300), at=30.0)
    assert view.messages_per_min(T0) == 600


def test_the_shared_store_lost_and_back_shows_in_the_header_at_once() -> None:
    view = MeshView()
    view.store_changed({"available": False, "reason": "lease lapsed"})  # before any status
    assert view.status is None
    view.set_status({**status(0), "store": {"kind": "postgresql", "available": True}})
    view.take_dirty()
    view.store_changed({"available": False, "reason": "lease lapsed", "retry_after": 1.0})
    assert view.status is not None
    assert view.status["store"] == {
        "kind": "postgresql",
        "available": False,
        "reason": "lease lapsed",
    }
    assert "header" in view.take_dirty()
    view.store_changed({"available": True})
    assert view.status["store"]["available"] is True
