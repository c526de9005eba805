"""Autostart: one broker for many racing callers, detached, with clear failures.

The broker here is ``fake_broker_process.py`` (``broker_command`` is patched), which keeps
the real broker's start-up rules; the tests stop every process it started by its pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from slm_mesh.client import BlockingClient, BrokerStartFailed, BrokerUnreachable, autostart
from slm_mesh.client.autostart import broker_command, ensure_broker, ensure_broker_sync
from slm_mesh.config import Settings

FAKE_BROKER = Path(__file__).with_name("fake_broker_process.py")
BOUND_S = 20


def spawned_pids(settings: Settings) -> list[int]:
    try:
        return [int(line) for line in (settings.data_dir / "spawned").read_text().split()]
    except FileNotFoundError:
        return []


@pytest.fixture(autouse=True)
def stop_spawned(data_dir: Path) -> Iterator[None]:
    """Stop, by pid, every stand-in broker a test made the code under test start."""
    yield
    for spawned in data_dir.rglob("spawned"):
        for pid in spawned.read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)


@pytest.fixture
def fake_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start the stand-in broker instead of the real one."""

    def command(idle_exit_s: float) -> list[str]:
        return [sys.executable, str(FAKE_BROKER), "--idle-exit", str(idle_exit_s)]

    monkeypatch.setattr(autostart, "broker_command", command)


def test_the_broker_command_runs_this_python_with_an_idle_exit() -> None:
    assert broker_command(60.0) == [
        sys.executable,
        "-m",
        "slm_mesh",
        "broker",
        "--idle-exit",
        "60.0",
    ]


def test_a_broker_is_started_detached_when_none_answers(
    settings: Settings, fake_command: None
) -> None:
    ensure_broker_sync(settings, idle_exit_s=30, timeout_s=BOUND_S)
    (pid,) = spawned_pids(settings)
    assert os.getsid(pid) == pid  # its own session: a ^C in our terminal does not reach it
    with BlockingClient.connect(settings) as client:
        assert client.call("mesh.ping") == "pong"
    assert "listening" in settings.log_path.read_text()


def test_the_data_dir_is_created_private(data_dir: Path, fake_command: None) -> None:
    settings = Settings(data_dir=data_dir / "mesh", socket_path=data_dir / "mesh" / "b.sock")
    ensure_broker_sync(settings, idle_exit_s=30, timeout_s=BOUND_S)
    assert stat.S_IMODE(settings.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(settings.log_path.stat().st_mode) == 0o600


def test_a_running_broker_is_used_as_it_is(settings: Settings, fake_command: None) -> None:
    ensure_broker_sync(settings, idle_exit_s=30, timeout_s=BOUND_S)
    ensure_broker_sync(settings, idle_exit_s=30, timeout_s=BOUND_S)
    assert len(spawned_pids(settings)) == 1


def test_ten_racing_callers_start_exactly_one_broker(
    settings: Settings, fake_command: None
) -> None:
    errors: list[BaseException] = []
    go = threading.Barrier(10)

    def caller() -> None:
        try:
            go.wait(timeout=BOUND_S)
            ensure_broker_sync(settings, idle_exit_s=30, timeout_s=BOUND_S)
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=BOUND_S + 5)
    assert errors == []
    assert len(spawned_pids(settings)) == 1


async def test_ten_racing_async_callers_start_exactly_one_broker(
    settings: Settings, fake_command: None
) -> None:
    with trio.fail_after(BOUND_S):
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(ensure_broker, settings, 30.0, float(BOUND_S))
    assert len(spawned_pids(settings)) == 1


def test_a_broker_that_fails_to_start_is_reported_with_its_log(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = "import sys; print('cannot open the store: disk full'); sys.exit(2)"
    monkeypatch.setattr(autostart, "broker_command", lambda _: [sys.executable, "-c", code])
    with pytest.raises(BrokerStartFailed, match="status 2") as failed:
        ensure_broker_sync(settings, timeout_s=BOUND_S)
    assert "disk full" in str(failed.value)


async def test_the_async_variant_reports_a_failed_start_too(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = "import sys; print('bad flag', file=sys.stderr); sys.exit(2)"
    monkeypatch.setattr(autostart, "broker_command", lambda _: [sys.executable, "-c", code])
    with trio.fail_after(BOUND_S), pytest.raises(BrokerStartFailed, match="bad flag"):
        await ensure_broker(settings, timeout_s=BOUND_S)


def test_a_broker_that_never_answers_times_out(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = (
        "import os, time, pathlib;"
        "pathlib.Path(os.environ['SLM_MESH_DATA_DIR'], 'spawned').write_text(str(os.getpid()));"
        "time.sleep(30)"
    )
    monkeypatch.setattr(autostart, "broker_command", lambda _: [sys.executable, "-c", code])
    with pytest.raises(BrokerUnreachable, match=r"did not answer within 0\.5 s") as failed:
        ensure_broker_sync(settings, timeout_s=0.5)
    assert not isinstance(failed.value, BrokerStartFailed)


def test_the_broker_gets_the_callers_settings_not_just_its_environment(
    data_dir: Path, fake_command: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLM_MESH_DATA_DIR", str(data_dir / "somewhere-else"))
    settings = Settings(data_dir=data_dir, socket_path=data_dir / "other.sock")
    ensure_broker_sync(settings, idle_exit_s=30, timeout_s=BOUND_S)
    assert settings.socket_path.exists()
    assert len(spawned_pids(settings)) == 1


def test_the_idle_exit_defaults_to_the_settings(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[float] = []

    def command(idle_exit_s: float) -> list[str]:
        asked.append(idle_exit_s)
        return [sys.executable, str(FAKE_BROKER), "--idle-exit", str(idle_exit_s)]

    monkeypatch.setattr(autostart, "broker_command", command)
    settings = Settings(data_dir=data_dir, socket_path=data_dir / "b.sock", idle_exit_s=42.0)
    ensure_broker_sync(settings, timeout_s=BOUND_S)
    assert asked == [42.0]
