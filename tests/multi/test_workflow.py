"""The seed workflow across brokers: sessions on three "machines" sharing one mesh."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.multi.conftest import Node
from tests.wire import LineClient

REPO = "github.com/acme/app"


def register(node: Node, name: str, root: str) -> LineClient:
    client = node.client()
    client.call("peer.register", name=name, cwd=root, git_root=root, repo=REPO)
    return client


def next_notification(client: LineClient, method: str) -> dict[str, Any]:
    while True:
        msg = client.read()
        assert msg is not None, "the broker closed the connection"
        if msg.get("method") == method:
            return dict(msg["params"])


def test_sessions_on_three_machines_see_message_lock_and_share_state(
    nodes: Callable[[int], list[Node]],
) -> None:
    laptop, devbox, ci = nodes(3)
    s1 = register(laptop, "s1", "/home/ann/app")
    s2 = register(devbox, "s2", "/work/app")
    s3 = register(ci, "s3", "/builds/app")
    watcher = devbox.client()
    watcher.call("event.subscribe", types=["state_changed"])

    # Session 1 says what it does and locks a file of the repository.
    s1.call("peer.update", summary="refactoring the auth module")
    s1.call("lock.acquire", path="src/auth.ts")

    # Session 2, on another machine, sees it and its summary, finds the file held in its
    # own clone, and takes another one.
    peers = {p["name"]: p for p in s2.call("peer.list")["peers"]}
    assert set(peers) == {"s1", "s3"}
    assert peers["s1"]["summary"] == "refactoring the auth module"
    assert peers["s1"]["host"] == "host-0"
    assert peers["s1"]["connected"] is True
    held = s2.request("lock.acquire", path="src/auth.ts")
    assert held["error"]["code"] == -32003
    assert held["error"]["data"]["holders"][0]["holder"] == "s1"
    [conflict] = s2.call("lock.check", paths=["src/auth.ts"])["conflicts"]
    assert conflict["holders"][0]["host"] == "host-0"
    assert s2.call("lock.acquire", path="src/db.ts")["granted"] is True
    assert [p["name"] for p in s2.call("peer.list", scope="repo")["peers"]] == ["s1", "s3"]
    assert s2.call("peer.list", scope="machine")["peers"] == []

    # Session 3 broadcasts and sets shared state; 1 and 2 get the push and read it.
    sent = s3.call("message.send", to="all", body="database schema changing to v2.1")
    assert {r["name"] for r in sent["recipients"]} == {"s1", "s2"}
    s3.call("state.set", key="db_version", value="2.1")
    for client in (s1, s2):
        pushed = next_notification(client, "message")
        assert (pushed["body"], pushed["from_name"]) == ("database schema changing to v2.1", "s3")
        assert client.call("state.get", key="db_version")["value"] == "2.1"
    changed = next_notification(watcher, "event")
    assert changed["data"]["key"] == "db_version"

    # A release on one machine lets the waiter on another in.
    s2.send("lock.acquire", path="src/auth.ts", wait=30)
    s1.call("lock.release", path="src/auth.ts")
    granted = s2.answer()
    assert granted["result"]["granted"] is True
    for client in (s1, s2, s3, watcher):
        client.close()
