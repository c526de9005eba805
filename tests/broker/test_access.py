"""Who may talk to the broker: only its own uid on the Unix socket, only the token on TCP."""

import json
import os
import socket
import stat
import time
from pathlib import Path

import pytest
import trio

from slm_mesh.config import EXIT_CANT_START_CONFIG, Settings
from slm_mesh.protocol import errors
from tests.wire import broker_process, in_process_broker

NOBODY = 65534


def connect_as(uid: int, path: Path) -> tuple[str, bytes]:
    """Fork a child that drops to ``uid``, connects to ``path`` and sends a ping.
    Returns what happened: ("refused", errno name) or ("answer", bytes read until EOF)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no pytest, no trio; report through the pipe and _exit
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            try:
                s.connect(str(path))
            except OSError as exc:
                os.write(write_end, b"refused " + str(exc.errno).encode())
            else:
                s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"mesh.ping"}\n')
                s.shutdown(socket.SHUT_WR)  # the broker answers what it got, then closes
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
                os.write(write_end, b"answer " + data)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    kind, _, rest = out.partition(b" ")
    return kind.decode(), rest


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another uid")
def test_another_uid_cannot_even_reach_the_socket(settings: Settings) -> None:
    with broker_process(settings):
        assert stat.S_IMODE(settings.socket_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o700
        kind, detail = connect_as(NOBODY, settings.socket_path)
        assert kind == "refused"
        assert int(detail) == 13  # EACCES


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another uid")
def test_another_uid_is_refused_by_peer_credentials_even_with_open_permissions(
    settings: Settings,
) -> None:
    with broker_process(settings):
        # Take the file permissions away as a defence, to prove the uid check on its own.
        settings.data_dir.parent.chmod(0o755)
        settings.data_dir.chmod(0o777)
        settings.socket_path.chmod(0o777)
        kind, detail = connect_as(NOBODY, settings.socket_path)
        assert kind == "answer"
        [line] = detail.splitlines()
        answer = json.loads(line)
        assert answer["id"] is None
        assert answer["error"]["code"] == errors.UNAUTHORIZED
        # The same uid still gets in.
        kind, detail = connect_as(os.geteuid(), settings.socket_path)
        assert kind == "answer"
        assert json.loads(detail.splitlines()[0])["result"] == "pong"


async def test_tcp_without_the_token_is_refused_and_closed(settings: Settings) -> None:
    async with in_process_broker(settings, tcp=True) as b:
        c = await b.connect_tcp()
        answer = await c.request("mesh.ping")
        assert answer["error"]["code"] == errors.UNAUTHORIZED
        with trio.fail_after(5):
            assert await c.read_line() == b""  # closed


async def test_tcp_with_a_wrong_token_is_refused_and_closed(settings: Settings) -> None:
    async with in_process_broker(settings, tcp=True) as b:
        c = await b.connect_tcp()
        answer = await c.request("mesh.hello", {"token": "0" * 64})
        assert answer["error"]["code"] == errors.UNAUTHORIZED
        with trio.fail_after(5):
            assert await c.read_line() == b""


async def test_tcp_with_the_token_works(settings: Settings) -> None:
    async with in_process_broker(settings, tcp=True) as b:
        c = await b.connect_tcp()
        hello = await c.call("mesh.hello", token=b.token, client="test")
        assert hello["protocol"] == 1
        assert await c.call("mesh.ping") == "pong"


def test_token_and_pid_files_are_private(settings: Settings) -> None:
    old = os.umask(0)  # even under a permissive umask
    try:
        with broker_process(settings, "--tcp"):
            files = (settings.token_path, settings.pid_path, settings.port_path)
            # The socket answers as soon as it is bound; the files follow a moment later.
            deadline = time.monotonic() + 10
            while not all(path.exists() for path in files) and time.monotonic() < deadline:
                time.sleep(0.01)
            for path in files:
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            assert len(settings.token_path.read_text()) == 64
            own = (
                settings.db_path if settings.store_url is None else settings.data_dir / "broker.id"
            )
            assert stat.S_IMODE(own.stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_tcp_on_a_non_loopback_address_is_refused_at_startup(settings: Settings) -> None:
    import subprocess
    import sys

    from tests.wire import broker_env

    settings.data_dir.mkdir(mode=0o700)
    proc = subprocess.run(
        [sys.executable, "-m", "slm_mesh", "broker", "--tcp", "--tcp-host", "0.0.0.0"],
        env=broker_env(settings),
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == EXIT_CANT_START_CONFIG  # not restarted by the systemd unit
    assert b"loopback" in proc.stderr
