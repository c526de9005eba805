"""The clients against the real broker, on both stores (tests/stores.py): in-process for
the async client, a real broker process (killed and restarted) for reconnect and resume."""

import signal
import subprocess
from pathlib import Path

import pytest
import trio

from slm_mesh.client import BlockingClient, ConnectionLost, MeshClient
from slm_mesh.config import Settings
from slm_mesh.protocol.errors import LockConflict, PeerNotFound
from tests import stores
from tests.wire import broker_process, in_process_broker, person_of

pytest_generate_tests = stores.parametrize


@pytest.fixture
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(store: str, data_dir: Path, request: pytest.FixtureRequest) -> Settings:
    base = Settings(data_dir=data_dir, socket_path=data_dir / "broker.sock")
    return stores.on(base, store, request)


async def test_async_client_calls_gets_pushes_and_typed_errors(settings: Settings) -> None:
    async with (
        in_process_broker(settings),
        MeshClient.open(settings) as a,
        MeshClient.open(settings) as b,
    ):
        await a.register(name="a", cwd="/repo")
        await b.register(name="b", cwd="/repo")
        await a.call("lock.acquire", {"path": "x.py"})
        with pytest.raises(LockConflict) as info:
            await b.call("lock.acquire", {"path": "/repo/x.py"})
        assert info.value.data["holders"][0]["holder"] == "a"
        with pytest.raises(PeerNotFound):
            await a.call("message.send", {"to": "nobody", "body": "x"})
        await a.call("message.send", {"to": "b", "body": "hello b"})
        with trio.fail_after(5):
            method, params = await b.notifications.receive()
        assert (method, params["body"]) == ("message", "hello b")


async def test_blocking_client_against_the_broker(settings: Settings) -> None:
    async with in_process_broker(settings):

        def script() -> object:
            with BlockingClient.connect(settings) as c:
                c.call("state.set", {"key": "db_version", "value": "2.1"})
                return c.call("state.get", {"key": "db_version"})

        got = await trio.to_thread.run_sync(script)
        assert isinstance(got, dict)
        assert (got["value"], got["version"], got["updated_by"]) == (
            "2.1",
            1,
            person_of(settings)[1],
        )


async def kill_broker(broker: subprocess.Popen[bytes], client: MeshClient) -> None:
    """SIGKILL the broker, then wait until the client has seen its connection go."""
    broker.send_signal(signal.SIGKILL)
    await trio.to_thread.run_sync(broker.wait)
    with trio.fail_after(5), pytest.raises(ConnectionLost):
        await client.call("mesh.ping")


async def test_reconnect_after_a_broker_restart_resumes_the_same_peer_and_locks(
    settings: Settings,
) -> None:
    with broker_process(settings) as first:
        async with MeshClient.open(settings) as c:
            reg = await c.register(name="backend", cwd="/repo")
            await c.call("lock.acquire", {"path": "src/auth.ts"})
            await kill_broker(first, c)
            with broker_process(settings):
                with trio.fail_after(15):
                    await c.reconnect(retry_for=10)
                me = await c.call("peer.whoami")
                assert me["peer_id"] == reg["peer_id"]
                locks = (await c.call("lock.list"))["locks"]
                assert [(lk["path"], lk["holder"]) for lk in locks] == [
                    ("/repo/src/auth.ts", "backend")
                ]


async def test_a_reconnect_resumes_with_the_registration_as_amended(settings: Settings) -> None:
    with broker_process(settings) as first:
        async with MeshClient.open(settings) as c:
            await c.register(name="backend", cwd="/repo", git_root="/repo", git_branch="main")
            c.amend_registration(git_branch="feature-x")  # the checkout switched branch
            await kill_broker(first, c)
            with broker_process(settings):
                with trio.fail_after(15):
                    await c.reconnect(retry_for=10)
                me = await c.call("peer.whoami")
                assert (me["git_branch"], c.registered_with("git_branch")) == ("feature-x",) * 2


async def test_peer_update_of_the_branch_on_this_store(settings: Settings) -> None:
    """``peer.update {git_branch}`` (mesh/sessions.py rule 6) written once, told once."""
    async with in_process_broker(settings), MeshClient.open(settings) as c:
        await c.register(name="backend", cwd="/repo", git_root="/repo", git_branch="main")
        for _ in range(2):  # the second: unchanged, nothing written, no event
            me = await c.call("peer.update", {"git_branch": "feature-x"})
            assert me["git_branch"] == "feature-x"
        assert (await c.call("peer.whoami"))["git_branch"] == "feature-x"
        read = await c.call("event.read", {"types": ["peer_updated"]})
        assert [(e["data"]["git_root"], e["data"]["git_branch"]) for e in read["events"]] == [
            ("/repo", "feature-x")
        ]


async def test_an_amend_made_while_a_resume_is_under_way_goes_with_the_next(
    settings: Settings,
) -> None:
    """The resume sent the registration as it was (``registered_with`` says so); the
    amend made meanwhile (here from the push of a message the resume hands over) is not
    lost: the next resume carries it."""
    amends: list[str] = []

    def on_push(method: str, params: object) -> None:
        if method == "message" and not amends:  # read while the resume waits its answer
            amends.append("feature-y")
            c.amend_registration(git_branch="feature-y")

    with broker_process(settings) as first:
        async with MeshClient.open(settings, on_push=on_push) as c:
            await c.register(name="backend", cwd="/repo", git_branch="main")
            await kill_broker(first, c)
            with broker_process(settings) as second:
                async with MeshClient.open(settings) as other:
                    await other.call("message.send", {"to": "backend", "body": "queued"})
                with trio.fail_after(15):
                    await c.reconnect(retry_for=10)
                assert amends == ["feature-y"]
                assert c.registered_with("git_branch") == "main"  # what that resume sent
                second.send_signal(signal.SIGKILL)
                await trio.to_thread.run_sync(second.wait)
            with trio.fail_after(5), pytest.raises(ConnectionLost):
                await c.call("mesh.ping")
            with broker_process(settings):
                with trio.fail_after(15):
                    await c.reconnect(retry_for=10)
                assert (await c.call("peer.whoami"))["git_branch"] == "feature-y"
                assert c.registered_with("git_branch") == "feature-y"


async def test_a_push_sent_before_an_answer_is_counted_by_the_time_the_caller_resumes(
    settings: Settings,
) -> None:
    async with (
        in_process_broker(settings),
        MeshClient.open(settings) as a,
        MeshClient.open(settings) as b,
    ):
        await a.register(name="a", cwd="/repo")
        await b.register(name="b", cwd="/repo")
        assert b.messages_pushed == 0
        for i in range(3):
            await a.call("message.send", {"to": "b", "body": f"m{i}"})
        # Committed and pushed before b asks: the pushes precede the answer on b's stream.
        answer = await b.call("message.inbox", {"mark_read": False})
        assert answer["unread_left"] == 3
        assert b.messages_pushed == 3
        await a.call("event.read", {})  # other pushes and answers count nothing
        await a.call("state.set", {"key": "k", "value": 1})
        assert b.messages_pushed == 3
