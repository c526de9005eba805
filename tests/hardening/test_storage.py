"""The broker's storage failing under it: a full disk, a read-only data dir, a damaged or
newer database. Each gives a clear error saying what to do, never a crash or a crash
loop, never advice to throw away a good database; and a disk that fills while the broker
runs leaves no trace of the writes that failed (no lock held by a caller who was told
the acquire failed), and everything works again once space is freed.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slm_mesh.config import EXIT_CANT_START, EXIT_CANT_START_STORAGE, Settings
from slm_mesh.protocol import errors
from slm_mesh.store import SCHEMA_VERSION, SQLiteStore, Store
from tests.hardening.disk import Disk
from tests.wire import LineClient, broker_env, stop_process, wait_for_socket


@pytest.fixture
def disk(settings: Settings) -> Iterator[Disk]:
    with Disk(settings.data_dir).mounted_or_not() as d:
        yield d


def start(settings: Settings, disk: Disk | None = None, *, full: bool = False) -> Any:
    preexec = disk.preexec(full=full) if disk is not None else None
    return subprocess.Popen(
        [sys.executable, "-m", "slm_mesh", "broker"],
        env=broker_env(settings),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # a pipe: RLIMIT_FSIZE does not stop it
        preexec_fn=preexec,
    )


@contextlib.contextmanager
def running(settings: Settings, disk: Disk | None = None) -> Iterator[Any]:
    proc = start(settings, disk)
    try:
        wait_for_socket(settings.socket_path, proc)
        if disk is not None:
            disk.pid = proc.pid
        yield proc
    finally:
        stop_process(proc)
        proc.stderr.close()


def refused(
    settings: Settings, disk: Disk | None = None, *, full: bool = False, status: int = 0
) -> str:
    """Start a broker that must refuse to run: its exit status says it can't start (one of
    ``EXIT_CANT_START``, which the systemd unit does not restart; ``status`` if given),
    its message returned."""
    proc = start(settings, disk, full=full)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        stop_process(proc)
    assert proc.returncode in EXIT_CANT_START, err
    if status:
        assert proc.returncode == status, err
    text: str = err.decode()
    assert "Traceback" not in text, text
    assert text.count("\n") == 1, text  # one line saying what is wrong and what to do
    return text


def call(c: LineClient, method: str, **params: Any) -> dict[str, Any]:
    return c.request(method, **params)


def test_a_full_disk_at_start_is_refused_saying_so_not_calling_the_database_corrupt(
    settings: Settings, disk: Disk
) -> None:
    if disk.mounted:
        disk.fill()
    message = refused(settings, disk, full=True, status=EXIT_CANT_START_STORAGE)
    assert "full" in message or "I/O" in message, message
    assert "aside" not in message  # never the advice to throw the database away


def test_a_disk_that_fills_while_running_fails_writes_cleanly_and_recovers_when_freed(
    settings: Settings, disk: Disk
) -> None:
    with running(settings, disk) as proc, contextlib.ExitStack() as stack:
        a, b = LineClient(settings.socket_path), LineClient(settings.socket_path)
        stack.callback(a.close)
        stack.callback(b.close)
        a_id = call(a, "peer.register", name="a", cwd="/r")["result"]["peer_id"]
        call(b, "peer.register", name="b", cwd="/r")
        assert "result" in call(a, "lock.acquire", path="/r/held.py", ttl=600)
        assert "result" in call(a, "state.set", key="k", value="before")
        disk.fill()
        failures = {
            "send": call(b, "message.send", to="a", body="x" * 60_000),
            "acquire": call(b, "lock.acquire", path="/r/new.py"),
            "renew": call(a, "lock.renew", path="/r/held.py", ttl=5),
            "release": call(a, "lock.release", path="/r/held.py"),
            "set": call(b, "state.set", key="k", value="during"),
        }
        for what, answer in failures.items():
            assert answer["error"]["code"] == errors.INTERNAL_ERROR, (what, answer)
            message = answer["error"]["message"]
            assert "full" in message or "I/O" in message, (what, message)
        # Nothing of the failed writes is left behind, in the answers of any call.
        locks = call(b, "lock.list")["result"]["locks"]
        assert [(lk["path"], lk["peer_id"]) for lk in locks] == [("/r/held.py", a_id)]
        [held] = locks
        assert held["expires_at"] - held["acquired_at"] == pytest.approx(600, abs=5)
        assert call(b, "state.get", key="k")["result"]["value"] == "before"
        conflict = call(b, "lock.acquire", path="/r/held.py")
        assert conflict["error"]["code"] == errors.LOCK_CONFLICT  # a's lock still counts
        assert call(b, "mesh.ping")["result"] == "pong"  # reads and pings still work
        assert "result" in call(b, "peer.list")
        disk.free()
        assert "result" in call(b, "message.send", to="a", body="after")
        assert "result" in call(b, "lock.acquire", path="/r/new.py")
        assert call(b, "state.set", key="k", value="after")["result"] == {"version": 2}
        assert call(a, "lock.release", path="/r/held.py")["result"] == {"released": 1}
        assert proc.poll() is None  # never crashed
    assert proc.returncode == 0
    store = SQLiteStore.open_file(settings.db_path)
    try:
        assert store.integrity_ok()
    finally:
        store.close()


def test_a_read_only_data_dir_is_refused_saying_what_to_do(settings: Settings, disk: Disk) -> None:
    if not disk.mounted and os.geteuid() == 0:
        pytest.skip("root ignores file modes, and mounting a read-only tmpfs was refused")
    with running(settings, disk):
        pass
    disk.make_read_only(settings.db_path)
    message = refused(settings, disk)
    assert "read-only" in message.lower() or "readonly" in message.lower(), message
    assert "writable" in message, message
    assert "aside" not in message


def test_a_database_from_a_newer_slm_mesh_is_refused_by_the_broker_and_left_alone(
    settings: Settings,
) -> None:
    settings.data_dir.mkdir(mode=0o700)
    Store.open(settings.db_path).close()
    db = sqlite3.connect(settings.db_path)
    with db:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,))
    db.close()
    before = settings.db_path.read_bytes()
    message = refused(settings)
    assert "upgrade slm-mesh" in message, message
    assert settings.db_path.read_bytes() == before


def test_a_database_damaged_inside_is_refused_at_start_with_advice(settings: Settings) -> None:
    settings.data_dir.mkdir(mode=0o700)
    store = Store.open(settings.db_path)
    for i in range(300):
        store.append_event("state_changed", 1.0, {"key": "k" * 200, "i": i})
    store.close()
    db = sqlite3.connect(settings.db_path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    size = settings.db_path.stat().st_size
    with open(settings.db_path, "r+b") as f:  # a page in the middle, garbled
        f.seek(size // 2 // 4096 * 4096)
        f.write(bytes(range(256)) * 16)
    before = settings.db_path.read_bytes()
    message = refused(settings)
    assert "move the file aside" in message, message
    assert settings.db_path.read_bytes() == before  # never changed or deleted for the user


def test_a_refused_start_is_not_retried_by_the_broker_itself(settings: Settings) -> None:
    """The broker exits once, with a status its systemd unit does not restart: a crash loop
    would be its own doing only if it restarted itself, and nothing it leaves behind blocks
    the start after the fix."""
    settings.data_dir.mkdir(mode=0o700)
    settings.db_path.write_bytes(b"not a database" * 100)
    refused(settings)
    assert not settings.socket_path.exists()
    assert not settings.pid_path.exists()
    assert not [p for p in settings.data_dir.iterdir() if p.name.startswith(".")]  # no temp files
    Path(settings.db_path).unlink()
    with running(settings):
        pass
