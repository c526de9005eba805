"""The broker as a real process: crash safety, single instance, stale files, signals,
idle exit and socket activation."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from slm_mesh.config import EXIT_CANT_START, Settings
from slm_mesh.store import SQLiteStore
from tests.wire import LineClient, broker_env, broker_process, stop_process, wait_for_socket


def test_sigkill_loses_no_message_whose_send_was_answered(settings: Settings) -> None:
    with broker_process(settings) as proc:
        recipient = LineClient(settings.socket_path)
        token = recipient.call("peer.register", name="r", cwd="/repo")["resume_token"]
        recipient.close()
        sender = LineClient(settings.socket_path)
        for i in range(300):  # pipelined: many sends in flight when the kill lands
            sender.send("message.send", to="r", body=f"m{i}")
        answered: list[int] = []
        while len(answered) < 150:
            msg = sender.read()
            answered.extend(msg["result"]["ids"])
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        while (msg := _read_or_none(sender)) is not None:
            answered.extend(msg.get("result", {}).get("ids", []))
        sender.close()
    with broker_process(settings):
        back = LineClient(settings.socket_path)
        assert back.call("peer.register", cwd="/repo", resume=token)["resumed"] is True
        inbox = back.call("message.inbox", limit=500, mark_read=False)
        stored = [m["id"] for m in inbox["messages"]]
        assert set(answered) <= set(stored)
        assert len(stored) == len(set(stored))  # nothing stored twice
        back.close()
    if settings.store_url is None:
        store = SQLiteStore.open_file(settings.db_path)
        try:
            assert store.integrity_ok()
        finally:
            store.close()


def _read_or_none(client: LineClient) -> Any:
    try:
        return client.read()
    except OSError:
        return None


def test_a_second_broker_exits_zero_naming_the_running_one(settings: Settings) -> None:
    with broker_process(settings) as first:
        second = subprocess.run(
            [sys.executable, "-m", "slm_mesh", "broker"],
            env=broker_env(settings),
            capture_output=True,
            timeout=30,
        )
        assert second.returncode == 0
        assert f"pid {first.pid}".encode() in second.stderr
        assert first.poll() is None


def test_two_brokers_started_at_once_leave_exactly_one_running(settings: Settings) -> None:
    settings.data_dir.mkdir(mode=0o700)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "slm_mesh", "broker"],
            env=broker_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 20
        while sum(p.poll() is None for p in procs) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        running = [p for p in procs if p.poll() is None]
        assert len(running) == 1
        assert [p.returncode for p in procs if p not in running] == [0]
        wait_for_socket(settings.socket_path, running[0])
        c = LineClient(settings.socket_path)
        assert c.call("mesh.status")["pid"] == running[0].pid
        c.close()
    finally:
        for p in procs:
            stop_process(p)


def test_a_stale_socket_and_pid_file_from_a_killed_broker_are_recovered(
    settings: Settings,
) -> None:
    with broker_process(settings) as proc:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert settings.socket_path.exists()  # left behind by the kill
    with broker_process(settings) as again:
        c = LineClient(settings.socket_path)
        assert c.call("mesh.status")["pid"] == again.pid
        c.close()
        assert settings.pid_path.read_text().strip() == str(again.pid)


def test_sigterm_tells_clients_and_drains_within_two_seconds(settings: Settings) -> None:
    with broker_process(settings) as proc:
        c = LineClient(settings.socket_path)
        c.call("peer.register", name="a", cwd="/repo")
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        note = c.read()
        assert note["method"] == "mesh.shutdown"
        assert c.read() is None  # then the broker closes the connection
        proc.wait(timeout=10)
        assert time.monotonic() - start < 2.5
        assert proc.returncode == 0
        c.close()
    assert not settings.socket_path.exists()
    assert not settings.pid_path.exists()


def test_an_idle_broker_exits_after_its_last_connection(settings: Settings) -> None:
    with broker_process(settings, "--idle-exit", "0.5") as proc:
        c = LineClient(settings.socket_path)
        c.call("mesh.ping")
        time.sleep(1.0)
        assert proc.poll() is None  # a connection is open: no idle exit
        c.close()
        proc.wait(timeout=10)
        assert proc.returncode == 0


def test_socket_activation_takes_the_listener_from_listen_fds(settings: Settings) -> None:
    settings.data_dir.mkdir(mode=0o700)
    path = settings.data_dir / "activated.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(16)
    fd = listener.fileno()
    env = broker_env(settings, LISTEN_FDS="1")
    # LISTEN_PID must be the broker's own pid: set it in the child just before exec.
    script = (
        "import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_PID'] = "
        "str(os.getpid()); os.execv(sys.executable, [sys.executable, '-m', 'slm_mesh', "
        "'broker'])"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(fd)],
        env=env,
        pass_fds=(fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    listener.close()
    try:
        c = _connect_retrying(path, proc)
        assert c.call("mesh.ping") == "pong"
        listeners = c.call("mesh.status")["listeners"]
        assert listeners == [{"kind": "unix", "path": str(path)}]
        c.close()
        assert not settings.socket_path.exists()  # it bound nothing of its own
    finally:
        stop_process(proc)


def _connect_retrying(path: Path, proc: "subprocess.Popen[bytes]") -> LineClient:
    deadline = time.monotonic() + 10
    while True:
        try:
            c = LineClient(path)
            c.call("mesh.ping")
            return c
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.sqlite_only("the SQLite file itself")
@pytest.mark.parametrize("content", [b"this is not a database" * 100])
def test_a_corrupt_database_is_refused_with_advice(settings: Settings, content: bytes) -> None:
    settings.data_dir.mkdir(mode=0o700)
    settings.db_path.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "slm_mesh", "broker"],
        env=broker_env(settings),
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode in EXIT_CANT_START  # the systemd unit does not restart it
    assert b"move the file aside" in proc.stderr
    assert os.path.exists(settings.db_path)  # never deleted for the user
