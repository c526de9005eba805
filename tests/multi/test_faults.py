"""Faults of a mesh of several brokers: a broker killed, PostgreSQL restarted, a schema from
a newer slm-mesh."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from slm_mesh.config import EXIT_CANT_START_CONFIG
from slm_mesh.store import SchemaError
from slm_mesh.store.postgresql import PostgresStore
from slm_mesh.store.postgresql.connect import lock_key, schema_name
from tests import pg
from tests.multi.conftest import GRACE_S, LEASE_S, Mesh, Node
from tests.wire import Gone, LineClient, broker_env

REPO = "github.com/acme/app"


def register(node: Node, name: str, root: str) -> LineClient:
    client = node.client()
    client.call("peer.register", name=name, cwd=root, git_root=root, repo=REPO)
    return client


def peer_status(client: LineClient, name: str) -> str | None:
    peers = client.call("peer.list", include_away=True)["peers"]
    return next((p["status"] for p in peers if p["name"] == name), None)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` (a call to a broker) until it holds; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def test_a_killed_brokers_sessions_go_away_then_gone_and_their_locks_end(
    nodes: Callable[[int], list[Node]],
) -> None:
    doomed, survivor = nodes(2)
    a = register(doomed, "a", "/clones/a")
    a.call("lock.acquire", path="src/auth.ts")
    b = register(survivor, "b", "/clones/b")
    b.send("lock.acquire", path="src/auth.ts", wait=60)
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.proc.wait()
    killed = time.monotonic()
    watcher = survivor.client()
    wait_until(lambda: peer_status(watcher, "a") == "away", LEASE_S * 4, "a away")
    granted = b.answer()  # the survivor ended a's session, and its lock, after the grace
    took = time.monotonic() - killed
    assert granted["result"]["granted"] is True, granted
    assert took >= GRACE_S
    assert peer_status(watcher, "a") is None
    events = watcher.call("event.read", types=["peer_left"])["events"]
    assert [(e["data"]["name"], e["data"]["reason"]) for e in events] == [("a", "grace_expired")]
    for client in (a, b, watcher):
        client.close()


def test_brokers_survive_a_postgresql_restart_failing_fast_and_losing_nothing(
    mesh: Mesh, own_cluster: pg.Cluster
) -> None:
    sending = mesh.start("host-0", url=own_cluster.url)
    receiving = mesh.start("host-1", url=own_cluster.url)
    rx = register(receiving, "rx", "/clones/rx")
    tx = register(sending, "tx", "/clones/tx")
    follower = sending.client()
    answered: list[int] = []
    refused: list[dict[str, Any]] = []

    def send(i: int) -> float:
        """One send; how long its answer took."""
        started = time.monotonic()
        reply = tx.request("message.send", to="rx", body=f"m{i}")
        if "result" in reply:
            answered.extend(reply["result"]["ids"])
        else:
            refused.append(reply["error"])
        return time.monotonic() - started

    for i in range(20):
        send(i)
    own_cluster.stop("fast")
    slowest = max(send(100 + i) for i in range(20))
    before = len(answered)
    own_cluster.start()
    wait_until(lambda: send(200) >= 0 and len(answered) > before, 30, "sends answered again")
    assert len(answered) == 21
    assert refused, "no call failed while the server was down"
    assert {e["code"] for e in refused} == {-32011}
    assert all(e["data"]["retry_after"] > 0 for e in refused)
    assert slowest < 5  # failed fast: never waited for the server to come back
    wait_until(lambda: "result" in rx.request("peer.whoami"), 30, "the receiver back")
    inbox = rx.call("message.inbox", limit=500, mark_read=False)["messages"]
    assert set(answered) <= {m["id"] for m in inbox}
    told = [m["params"]["available"] for m in _notes(follower) if m["method"] == "mesh.store"]
    assert told[:1] == [False] and told[-1:] == [True], told
    for client in (rx, tx, follower):
        client.close()


def _notes(client: LineClient) -> list[dict[str, Any]]:
    """The notifications a connection has been sent so far."""
    client.sock.settimeout(0.5)
    found: list[dict[str, Any]] = []
    while True:
        try:
            msg = client.read()
        except (OSError, Gone):
            return found
        if msg is None:
            return found
        found.append(msg)


def test_a_schema_from_a_newer_slm_mesh_is_refused_with_advice(
    pg_cluster: pg.Cluster, mesh: Mesh
) -> None:
    PostgresStore.open_url(pg_cluster.url, mesh=mesh.name).close()
    with psycopg.connect(pg_cluster.url, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {schema_name(mesh.name)}.meta SET value = '999' WHERE key = 'schema_version'"
        )
    with pytest.raises(SchemaError, match="newer than this slm-mesh") as exc:
        PostgresStore.open_url(pg_cluster.url, mesh=mesh.name)
    assert "upgrade slm-mesh" in str(exc.value)
    settings = mesh.settings("host-0")
    done = subprocess.run(
        [sys.executable, "-m", "slm_mesh", "broker"],
        env=broker_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == EXIT_CANT_START_CONFIG  # a restart would not cure it
    assert "newer than this slm-mesh" in done.stderr
    assert "upgrade slm-mesh" in done.stderr


def test_a_call_answered_unavailable_at_its_deadline_still_has_its_effects(
    pg_cluster: pg.Cluster, mesh: Mesh
) -> None:
    node = mesh.start("host-0")
    rx = register(node, "rx", "/clones/rx")
    tx = register(node, "tx", "/clones/tx")
    rx.call("lock.acquire", path="src/auth.ts")
    key = lock_key(schema_name(mesh.name))
    with psycopg.connect(pg_cluster.url, autocommit=True) as blocker:
        # Every write waits for the mesh's lock: the send can't finish within its deadline.
        blocker.execute("SELECT pg_advisory_lock(%s)", (key,))
        refused = tx.request("message.send", to="rx", body="late")
        blocker.execute("SELECT pg_advisory_unlock(%s)", (key,))
        # The lock is free again: the send commits after all, and rx is pushed its message.
        rx.sock.settimeout(15)
        while (msg := rx.read()) is not None and msg.get("method") != "message":
            pass
        assert msg is not None and msg["params"]["body"] == "late", msg
        assert refused["error"]["code"] == -32011
        assert refused["error"]["data"]["maybe_done"] is True  # and it was done

        # A request queued after its caller was told -32011 does not stay in the queue.
        wait_until(lambda: "result" in tx.request("peer.whoami"), 30, "the store back")
        blocker.execute("SELECT pg_advisory_lock(%s)", (key,))
        refused = tx.request("lock.acquire", path="src/auth.ts", wait=30)
        blocker.execute("SELECT pg_advisory_unlock(%s)", (key,))
    assert refused["error"]["code"] == -32011

    def waiters() -> list[int] | None:
        answer = rx.request("lock.list")
        return [lk["waiters"] for lk in answer["result"]["locks"]] if "result" in answer else None

    wait_until(lambda: waiters() == [0], 30, "no waiter")
    for client in (rx, tx):
        client.close()


def test_a_schema_made_newer_while_a_broker_runs_is_refused_with_advice_on_reconnect(
    pg_cluster: pg.Cluster, mesh: Mesh
) -> None:
    node = mesh.start("host-0")
    client = register(node, "a", "/clones/a")
    with psycopg.connect(pg_cluster.url, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {schema_name(mesh.name)}.meta SET value = '999' WHERE key = 'schema_version'"
        )
        # The broker's link breaks (as in a server restart): it reconnects and reads the meta.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'slm-mesh' AND pid <> pg_backend_pid()"
        )

    def refused_with_advice() -> bool:
        error = client.request("state.set", namespace="n", key="k", value=1).get("error")
        return error is not None and "upgrade slm-mesh" in error["message"]

    wait_until(refused_with_advice, 15, "calls refused with the advice")
    assert client.request("state.set", namespace="n", key="k", value=1)["error"]["code"] == -32011
    assert node.proc.poll() is None  # still there for its agents, saying what to do
    client.close()


def test_what_another_broker_did_while_this_one_could_not_use_the_store_is_done_once_back(
    pg_cluster: pg.Cluster, nodes: Callable[[int], list[Node]]
) -> None:
    near, far = nodes(2)
    a = register(near, "a", "/clones/a")
    b = register(far, "b", "/clones/b")
    near_id = (near.settings.data_dir / "broker.id").read_text().strip()
    schema = schema_name(near.settings.mesh_name)
    with psycopg.connect(pg_cluster.url) as blocker:
        # Near's lease can't be renewed (its row is locked): near can't use the store,
        # though it still hears the others.
        blocker.execute(f"SELECT 1 FROM {schema}.brokers WHERE id = %s FOR UPDATE", (near_id,))
        a.sock.settimeout(LEASE_S * 3)
        while (note := a.read()) is not None and note.get("method") != "mesh.store":
            pass
        assert note is not None and note["params"]["available"] is False
        # Too long for its notification to carry it: near would read it from the store.
        body = "x" * 7_500
        b.call("message.send", to="a", body=body)
        blocker.rollback()
    a.sock.settimeout(15)
    while (msg := a.read()) is not None and msg.get("method") != "message":
        pass
    assert msg is not None and msg["params"]["body"] == body
    for client in (a, b):
        client.close()
