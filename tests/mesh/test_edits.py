"""file.edited and the edit guard's questions to lock.check."""

from __future__ import annotations

from slm_mesh.config import EDIT_MEMORY_S, Limits
from slm_mesh.mesh import Mesh
from tests.mesh.harness import GRACE_S, LOCK_TTL_S, Bench


def test_an_edit_is_an_event_and_renews_the_sessions_own_lock(bench: Bench) -> None:
    me = bench.register("me", cwd="/r")
    bench.call(me.conn, "lock.acquire", path="src/**", ttl=60)
    bench.advance(50)
    out = bench.call(me.conn, "file.edited", paths=["src/a.py", "/r/src/a.py", "README"])
    assert out == {"renewed": ["/r/src/**"], "locked": []}
    assert [e["data"]["path"] for e in bench.events("file_edited")] == [
        "/r/src/a.py",
        "/r/README",
    ]
    [lock] = bench.call(me.conn, "lock.list")["locks"]
    assert lock["expires_at"] == bench.now + LOCK_TTL_S


def test_an_edit_never_shortens_a_lock(bench: Bench) -> None:
    me = bench.register("me")
    bench.call(me.conn, "lock.acquire", path="/r/a", ttl=3600)
    assert bench.call(me.conn, "file.edited", paths=["/r/a"])["renewed"] == []
    [lock] = bench.call(me.conn, "lock.list")["locks"]
    assert lock["expires_at"] == bench.now + 3600


def test_auto_lock_takes_a_free_file_and_leaves_a_held_one(bench: Bench) -> None:
    me, other = bench.register("me"), bench.register("other")
    bench.call(other.conn, "lock.acquire", path="/r/theirs", ttl=3600)
    out = bench.call(me.conn, "file.edited", paths=["/r/mine", "/r/theirs"], lock_ttl=900)
    assert out == {"renewed": [], "locked": ["/r/mine"]}
    assert bench.lock_paths() == [
        ("/r/mine", "me", "exclusive"),
        ("/r/theirs", "other", "exclusive"),
    ]
    bench.advance(800)
    again = bench.call(me.conn, "file.edited", paths=["/r/mine"], lock_ttl=900)
    assert again == {"renewed": ["/r/mine"], "locked": []}
    bench.advance(800)
    assert ("/r/mine", "me", "exclusive") in bench.lock_paths()
    bench.call(me.conn, "peer.unregister")
    assert bench.lock_paths() == [("/r/theirs", "other", "exclusive")]


def test_check_as_shared_sees_only_exclusive_holders_and_whether_they_are_live(
    bench: Bench,
) -> None:
    me, reader, writer = bench.register("me"), bench.register("r"), bench.register("w")
    bench.call(reader.conn, "lock.acquire", path="/r/a", mode="shared")
    bench.call(writer.conn, "lock.acquire", path="/r/b/**")
    bench.disconnect(writer.conn)
    out = bench.call(me.conn, "lock.check", paths=["/r/a", "/r/b/c.py"], mode="shared")
    [conflict] = out["conflicts"]
    assert conflict["path"] == "/r/b/c.py"
    [holder] = conflict["holders"]
    assert (holder["holder"], holder["live"]) == ("w", False)
    as_exclusive = bench.call(me.conn, "lock.check", paths=["/r/a"])
    assert [c["holders"][0]["live"] for c in as_exclusive["conflicts"]] == [True]


def test_check_lists_recent_edits_of_other_sessions_not_locked(bench: Bench) -> None:
    me, other, gone = bench.register("me"), bench.register("other"), bench.register("gone")
    bench.call(other.conn, "file.edited", paths=["/r/a", "/r/held"])
    bench.call(other.conn, "lock.acquire", path="/r/held")
    bench.call(me.conn, "file.edited", paths=["/r/mine"])
    bench.call(gone.conn, "file.edited", paths=["/r/b"])
    bench.call(gone.conn, "peer.unregister")
    bench.advance(30)
    out = bench.call(
        me.conn, "lock.check", paths=["/r/a", "/r/b", "/r/held", "/r/mine"], edited_within=600
    )
    assert [(e["path"], e["name"], e["at"]) for e in out["edits"]] == [
        ("/r/a", "other", bench.now - 30)
    ]
    assert [c["path"] for c in out["conflicts"]] == ["/r/held"]
    assert "edits" not in bench.call(me.conn, "lock.check", paths=["/r/a"])
    assert bench.call(me.conn, "lock.check", paths=["/r/a"], edited_within=10)["edits"] == []


def test_edits_are_forgotten_after_the_memory(bench: Bench) -> None:
    other = bench.register("other")
    bench.call(other.conn, "file.edited", paths=["/r/a"])
    bench.now += EDIT_MEMORY_S + 1
    bench.mesh.upkeep(bench.now)
    assert bench.mesh.edits.latest == {}


REPO = "github.com/acme/app"


def test_an_edit_in_one_clone_is_an_edit_of_the_same_file_in_every_clone(bench: Bench) -> None:
    me = bench.register("me", cwd="/a", git_root="/a", repo=REPO)
    other = bench.register("other", cwd="/b", git_root="/b", repo=REPO)
    elsewhere = bench.register("elsewhere", cwd="/c")  # outside any repository
    bench.call(other.conn, "file.edited", paths=["src/x.py"])
    bench.call(elsewhere.conn, "file.edited", paths=["/c/src/x.py"])
    [event] = [e for e in bench.events("file_edited") if e["data"]["name"] == "other"]
    assert {k: event["data"][k] for k in ("path", "repo", "rel")} == {
        "path": "/b/src/x.py",
        "repo": REPO,
        "rel": "/src/x.py",
    }
    out = bench.call(me.conn, "lock.check", paths=["src/x.py"], edited_within=600)
    assert [(e["path"], e["name"]) for e in out["edits"]] == [("/a/src/x.py", "other")]


def test_another_brokers_edit_is_remembered_from_its_event(bench: Bench) -> None:
    me = bench.register("me", cwd="/a", git_root="/a", repo=REPO)
    far = bench.register("far")  # its row, as the other broker wrote it in the shared store
    data = {"peer_id": far.peer_id, "name": "far", "path": "/home/x/app/src/x.py"}
    data.update(host="laptop", repo=REPO, rel="/src/x.py")
    event = {"seq": 99, "type": "file_edited", "ts": bench.now, "data": data}
    bench.mesh.remote_event(event, bench.now)
    bench.advance(5)
    out = bench.call(me.conn, "lock.check", paths=["/a/src/x.py"], edited_within=600)
    assert [(e["name"], e["at"]) for e in out["edits"]] == [("far", bench.now - 5)]


def test_a_restarted_broker_still_knows_the_edits_of_the_last_minutes(bench: Bench) -> None:
    other = bench.register("other", cwd="/r")
    bench.call(other.conn, "file.edited", paths=["/r/recent", "/r/old"])
    bench.advance(EDIT_MEMORY_S - 60)
    bench.call(other.conn, "file.edited", paths=["/r/recent"])
    bench.advance(120)  # /r/old's edit is past the memory now
    again = Mesh(bench.store, Limits(), grace_s=GRACE_S, lock_ttl_s=LOCK_TTL_S)
    again.start(bench.now)
    assert {place[2] for place in again.edits.latest} == {"/r/recent"}
    [edit] = again.edits.recent(None, "/r/recent", EDIT_MEMORY_S, bench.now)
    assert (edit["name"], edit["at"]) == ("other", bench.now - 120)
