"""Identity and access, beyond tests/broker/test_access.py: what the broker creates is
private even under umask 0 (and a data dir left open, or owned by someone else, is
tightened or refused), TCP listens on loopback only, and one peer can never act as
another: release, renew or read what is not its own, or send under another name.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from slm_mesh.broker.files import StartupError, check_loopback
from slm_mesh.config import EXIT_CANT_START_CONFIG, Limits, Settings
from slm_mesh.protocol import errors
from tests.wire import broker_env, broker_process, in_process_broker

NOBODY = 65534


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def test_everything_the_broker_creates_is_private_under_umask_0(settings: Settings) -> None:
    # The socket elsewhere, in folders that don't exist yet: they are made 0700 too.
    socket_path = settings.data_dir.parent / "run" / "nested" / "broker.sock"
    elsewhere = replace(settings, socket_path=socket_path)
    with umask(0), broker_process(elsewhere, SLM_MESH_SOCKET=str(socket_path)):
        assert mode(settings.data_dir) == 0o700
        assert mode(socket_path.parent) == 0o700
        assert mode(socket_path) == 0o600
        made = [p for p in settings.data_dir.iterdir() if not p.is_socket()]
        assert {p.name for p in made} >= {"mesh.db", "broker.token", "broker.pid"}
        for path in made:  # the database, its WAL and shm, token, pid, lock
            assert mode(path) == 0o600, path


def test_a_data_dir_left_open_to_others_is_closed_again(settings: Settings) -> None:
    settings.data_dir.mkdir()
    settings.data_dir.chmod(0o777)
    with broker_process(settings):
        assert mode(settings.data_dir) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the folder away")
def test_a_data_dir_owned_by_another_user_is_refused(settings: Settings) -> None:
    settings.data_dir.mkdir(mode=0o700)
    os.chown(settings.data_dir, NOBODY, NOBODY)
    proc = subprocess.run(
        [sys.executable, "-m", "slm_mesh", "broker"],
        env=broker_env(settings),
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == EXIT_CANT_START_CONFIG  # not restarted by the systemd unit
    assert f"uid {NOBODY}".encode() in proc.stderr
    assert not settings.db_path.exists()  # nothing written into someone else's folder


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "localhost", "example.com", "", "::ffff:0.0.0.0"],
)
def test_tcp_refuses_to_bind_anything_but_a_loopback_address(host: str) -> None:
    with pytest.raises(StartupError, match="loopback"):
        check_loopback(host)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1"])
def test_tcp_binds_loopback_addresses(host: str) -> None:
    check_loopback(host)


def test_tcp_on_an_ipv6_wildcard_is_refused_at_startup(settings: Settings) -> None:
    settings.data_dir.mkdir(mode=0o700)
    proc = subprocess.run(
        [sys.executable, "-m", "slm_mesh", "broker", "--tcp", "--tcp-host", "::"],
        env=broker_env(settings),
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == EXIT_CANT_START_CONFIG  # not restarted by the systemd unit
    assert b"loopback" in proc.stderr
    assert not settings.socket_path.exists()  # it did not half-start


async def test_a_peer_cannot_release_or_renew_another_peers_lock(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        owner, other = await b.connect(), await b.connect()
        owner_id = (await owner.register("owner"))["peer_id"]
        await other.register("other")
        lock = (await owner.call("lock.acquire", path="/repo/x.py", ttl=60))["lock"]
        assert await other.call("lock.release", path="/repo/x.py") == {"released": 0}
        assert await other.call("lock.release", all=True) == {"released": 0}
        renew = await other.error("lock.renew", path="/repo/x.py", ttl=3600)
        assert renew["code"] == errors.INVALID_PARAMS
        [still] = (await other.call("lock.list"))["locks"]
        assert (still["peer_id"], still["expires_at"]) == (owner_id, lock["expires_at"])
        # Nor through a glob or another spelling of the path.
        for path in ("/repo/**", "/repo/./x.py", "x.py"):
            assert await other.call("lock.release", path=path) == {"released": 0}
        assert len((await other.call("lock.list"))["locks"]) == 1


async def test_a_peer_cannot_read_or_ack_another_peers_inbox(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        a, c, snoop = await b.connect(), await b.connect(), await b.connect()
        await a.register("a")
        c_id = (await c.register("c"))["peer_id"]
        await snoop.register("snoop")
        [mid] = (await a.call("message.send", to="c", body="for c only"))["ids"]
        for params in ({}, {"unread_only": False}, {"from": "a"}, {"limit": 500}):
            got = await snoop.call("message.inbox", mark_read=False, **params)
            assert got["messages"] == [] and got["unread_left"] == 0
        assert await snoop.call("message.ack", ids=[mid]) == {"acked": 0, "ids": []}
        inbox = await c.call("message.inbox", mark_read=False)
        [msg] = inbox["messages"]
        assert (msg["id"], msg["to"], msg["status"]) == (mid, c_id, "pushed")  # not read


@pytest.mark.parametrize("field", ["from", "from_name", "sender", "sender_id"])
async def test_a_sender_cannot_name_itself_someone_else(settings: Settings, field: str) -> None:
    async with in_process_broker(settings) as b:
        a, c = await b.connect(), await b.connect()
        await a.register("a")
        await c.register("c")
        err = await a.error("message.send", to="c", body="hi", **{field: "c"})
        assert err["code"] == errors.INVALID_PARAMS
        assert err["data"]["field"] == field


async def test_from_is_always_the_senders_own_connection(settings: Settings) -> None:
    async with in_process_broker(settings) as b:
        a, c, shell = await b.connect(), await b.connect(), await b.connect()
        a_id = (await a.register("a"))["peer_id"]
        await c.register("c")
        cli_lookalike = await b.connect()
        named = await cli_lookalike.register("cli")
        assert named["name"] != "cli"  # the shell user's name can't be taken
        await a.call("message.send", to="c", body="from a")
        await shell.call("message.send", to="c", body="from the shell")
        await cli_lookalike.call("message.send", to="c", body="from the lookalike")
        got = (await c.call("message.inbox", mark_read=False))["messages"]
        senders = [(m["from"], m["from_name"], m["body"]) for m in got]
        assert senders == [
            (a_id, "a", "from a"),
            ("person", settings.person, "from the shell"),
            (named["peer_id"], named["name"], "from the lookalike"),
        ]
        pushed = [n["params"]["from"] for n in c.notifications if n["method"] == "message"]
        assert pushed == [a_id, "person", named["peer_id"]]


async def test_no_answer_or_event_shows_a_peers_resume_token(settings: Settings) -> None:
    """The resume token is what makes a connection that peer: only its owner sees it."""
    async with in_process_broker(settings) as b:
        watcher = await b.connect()
        await watcher.call("event.subscribe")
        a, c = await b.connect(), await b.connect()
        token = (await a.register("a", agent="claude-code"))["resume_token"]
        await c.register("c")
        seen: list[Any] = [
            await c.call("peer.list", include_self=True),
            await c.call("mesh.status"),
            await c.call("event.read", limit=1000),
            await a.call("peer.whoami"),
            await c.call("lock.list"),
        ]
        await a.call("lock.acquire", path="/repo/x")
        await a.call("message.send", to="c", body="hi")
        seen.append(await c.call("lock.list"))
        seen.append(await c.call("message.inbox", mark_read=False))
        await a.aclose()
        b.opened.remove(a)
        seen.append(await c.call("peer.list", include_away=True))
        seen.append(await c.call("event.read", limit=1000))
        seen.append(await watcher.call("mesh.ping"))
        seen.extend(watcher.notifications)
        assert token not in json.dumps(seen)
        # and the token is what resuming takes: a wrong one gets a new peer, not "a"
        again = await b.connect()
        wrong = token[:-1] + ("y" if token.endswith("x") else "x")  # never the token itself
        other = await again.call("peer.register", cwd="/repo", resume=wrong)
        assert other["resumed"] is False and other["name"] != "a"


async def test_another_user_holding_tcp_connections_open_cannot_lock_the_owner_out(
    settings: Settings, autojump_clock: trio.testing.MockClock
) -> None:
    """On TCP anyone on the machine can connect before proving anything: connections that
    have not sent a valid mesh.hello get a small quota of their own and a deadline, so
    they can't use up the owner's per-uid connection cap."""
    capped = replace(settings, limits=Limits(max_connections_per_uid=40))
    async with in_process_broker(capped, tcp=True) as b:
        assert b.tcp_port is not None
        squatters = []
        for _ in range(40):
            c = await b.connect_tcp()
            await c.stream.send_all(b'{"jsonrpc":"2.0","id":1,')  # and nothing more
            squatters.append(c)
        owner = await b.connect()
        assert await owner.call("mesh.ping") == "pong"  # the owner still gets in
        answers = []
        with trio.fail_after(60):
            for c in squatters:
                answers.append(await c.read())
                assert await c.read_line() == b""  # then closed
        codes = {a["error"]["code"] for a in answers}
        assert codes <= {errors.QUOTA_EXCEEDED, errors.UNAUTHORIZED}
        assert errors.QUOTA_EXCEEDED in codes  # past the quota at once
        assert errors.UNAUTHORIZED in codes  # the others when their time to say hello ran out
        assert len(b.broker.conns) == 1  # the owner's
        token_holder = await b.connect_tcp()
        assert (await token_holder.call("mesh.hello", token=b.token))["protocol"] == 1
        await trio.sleep(3600)
        assert await token_holder.call("mesh.ping") == "pong"  # no deadline once authenticated
