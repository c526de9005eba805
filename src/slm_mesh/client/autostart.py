"""Start a broker when none answers, so that many callers at once start exactly one.

Rules:
1. A broker that answers ``mesh.ping`` is used as it is.
2. Otherwise the caller takes an exclusive ``flock`` on ``<data dir>/autostart.lock``, asks
   again (whoever held the lock may just have started one), and only then spawns. Ten
   callers racing therefore spawn one broker; the broker's own ``broker.lock`` (a second
   broker exits 0) is the second guard, for callers that bypass this module.
3. The broker is detached: its own session, stdin ``/dev/null``, output appended to the
   log, working directory the data dir. It outlives the caller and exits by itself after
   ``idle_exit_s`` without sessions.
4. While waiting for it to answer: an exit with a non-zero status fails at once
   (:class:`BrokerStartFailed`, with the end of the log); an exit with 0 means another
   broker holds ``broker.lock``, so keep waiting for that one.
5. Every wait (the lock, the answer) is bounded by one ``timeout_s`` deadline.

The sync variant imports only the stdlib and the blocking client (fast CLI start-up); the
async one imports anyio and the async client when it is first called.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import threading
import time

from slm_mesh.client.address import BrokerUnreachable
from slm_mesh.client.blocking import BlockingClient
from slm_mesh.client.wire import ConnectionLost
from slm_mesh.config import Settings
from slm_mesh.protocol.errors import MeshError

__all__ = ["BrokerStartFailed", "broker_command", "ensure_broker", "ensure_broker_sync"]

log = logging.getLogger(__name__)

POLL_S = 0.05
PROBE_TIMEOUT_S = 2.0
START_TIMEOUT_S = 10.0
LOG_TAIL_BYTES = 4_096
LOCK_FILE = "autostart.lock"


class BrokerStartFailed(BrokerUnreachable):
    """The broker this process started exited with an error; the message ends with the
    last lines of its log."""


def broker_command(idle_exit_s: float | None) -> list[str]:
    """The argv of an auto-started broker (``idle_exit_s`` None: it runs until stopped)."""
    argv = [sys.executable, "-m", "slm_mesh", "broker"]
    return argv if idle_exit_s is None else [*argv, "--idle-exit", str(idle_exit_s)]


def ensure_broker_sync(
    settings: Settings,
    idle_exit_s: float | None = None,
    timeout_s: float = START_TIMEOUT_S,
    *,
    persistent: bool = False,
) -> None:
    """Return once a broker answers ``mesh.ping``, starting one if none does.

    Args:
        settings: where the broker is; the started broker is told the same paths.
        idle_exit_s: the started broker exits after this many seconds without sessions;
            ``settings.idle_exit_s`` (``SLM_MESH_IDLE_EXIT_S``, default 60) when None.
        timeout_s: the longest wait, for another starter's lock and for the answer.
        persistent: start a broker without an idle exit (``slm-mesh start``): it runs
            until it is stopped, and ``idle_exit_s`` is ignored.

    Raises:
        BrokerStartFailed: the started broker exited with an error.
        BrokerUnreachable: no broker answered within ``timeout_s``.
    """
    if _answers_sync(settings, PROBE_TIMEOUT_S):
        return
    deadline = time.monotonic() + timeout_s
    lock_fd = _open_lock(settings)
    try:
        while not _try_lock(lock_fd):
            if time.monotonic() >= deadline:
                raise _lock_timeout(settings, timeout_s)
            time.sleep(POLL_S)
        if _answers_sync(settings, _probe_timeout(deadline - time.monotonic())):
            return
        proc = _spawn(settings, idle_exit_s, persistent=persistent)
        try:
            while not _answers_sync(settings, _probe_timeout(deadline - time.monotonic())):
                _check_exit(proc, settings)
                if time.monotonic() >= deadline:
                    raise _start_timeout(settings, timeout_s)
                time.sleep(POLL_S)
        finally:
            _reap_when_done(proc)
    finally:
        os.close(lock_fd)  # releases the flock


async def ensure_broker(
    settings: Settings,
    idle_exit_s: float | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> None:
    """Async :func:`ensure_broker_sync`: the same rules, waiting with ``anyio.sleep``.

    Raises:
        BrokerStartFailed: the started broker exited with an error.
        BrokerUnreachable: no broker answered within ``timeout_s``.
    """
    # Imported here so that `import slm_mesh.client.autostart` stays stdlib-only for the CLI.
    import anyio
    import anyio.to_thread

    if await _answers(settings):
        return
    lock_fd = _open_lock(settings)
    proc: subprocess.Popen[bytes] | None = None
    try:
        with anyio.move_on_after(timeout_s):
            # flock has no async wait, and a blocking flock in a thread could not be
            # abandoned safely (it would take the lock after we gave up): poll LOCK_NB.
            while not _try_lock(lock_fd):  # noqa: ASYNC110
                await anyio.sleep(POLL_S)
            if await _answers(settings):
                return
            # fork+exec in a worker thread: it is quick, but not an await point.
            proc = await anyio.to_thread.run_sync(_spawn, settings, idle_exit_s)
            while not await _answers(settings):
                _check_exit(proc, settings)
                await anyio.sleep(POLL_S)
            return
        if proc is None:
            raise _lock_timeout(settings, timeout_s)
        raise _start_timeout(settings, timeout_s)
    finally:
        if proc is not None:
            _reap_when_done(proc)
        os.close(lock_fd)


def _answers_sync(settings: Settings, timeout: float) -> bool:
    try:
        with BlockingClient.connect(
            settings, timeout=timeout, client_name="slm-mesh autostart"
        ) as c:
            return bool(c.call("mesh.ping") == "pong")
    except (BrokerUnreachable, ConnectionLost, MeshError, OSError):
        return False


async def _answers(settings: Settings) -> bool:
    import anyio

    from slm_mesh.client.aio import MeshClient

    with anyio.move_on_after(PROBE_TIMEOUT_S):
        try:
            async with MeshClient.open(settings, client_name="slm-mesh autostart") as c:
                return bool(await c.call("mesh.ping") == "pong")
        except (BrokerUnreachable, ConnectionLost, MeshError, OSError):
            return False
    return False


def _probe_timeout(remaining: float) -> float:
    return max(min(PROBE_TIMEOUT_S, remaining), POLL_S)


def _open_lock(settings: Settings) -> int:
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.open(settings.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _spawn(
    settings: Settings, idle_exit_s: float | None, *, persistent: bool = False
) -> subprocess.Popen[bytes]:
    if persistent:
        argv = broker_command(None)
    else:
        argv = broker_command(settings.idle_exit_s if idle_exit_s is None else idle_exit_s)
    # The caller's settings may not come from its environment (tests, --data-dir): pass
    # them on so the broker listens where this process will look for it.
    env = {
        **os.environ,
        "SLM_MESH_DATA_DIR": str(settings.data_dir),
        "SLM_MESH_SOCKET": str(settings.socket_path),
        "SLM_MESH_PORT": str(settings.tcp_port),
    }
    log_fd = os.open(settings.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        log.info("starting a broker: %s", " ".join(argv))
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            env=env,
            cwd=settings.data_dir,  # do not keep the caller's directory busy for hours
            start_new_session=True,
        )
    finally:
        os.close(log_fd)


def _check_exit(proc: subprocess.Popen[bytes], settings: Settings) -> None:
    status = proc.poll()
    if status is not None and status != 0:
        raise BrokerStartFailed(
            f"the broker exited with status {status}; end of {settings.log_path}:\n"
            + _log_tail(settings)
        )


def _reap_when_done(proc: subprocess.Popen[bytes]) -> None:
    """Wait for the broker in a daemon thread, so that when it exits while this process
    lives it leaves no zombie (and the Popen no "still running" warning)."""
    if proc.poll() is None:
        threading.Thread(target=proc.wait, name="slm-mesh-broker-reaper", daemon=True).start()


def _log_tail(settings: Settings) -> str:
    try:
        with settings.log_path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL_BYTES))
            return f.read().decode("utf-8", "replace").strip()
    except OSError as exc:
        return f"(log unreadable: {exc})"


def _lock_timeout(settings: Settings, timeout_s: float) -> BrokerUnreachable:
    return BrokerUnreachable(
        f"another process held {settings.data_dir / LOCK_FILE} for {timeout_s:g} s while "
        "starting a broker, and no broker answers"
    )


def _start_timeout(settings: Settings, timeout_s: float) -> BrokerUnreachable:
    return BrokerUnreachable(
        f"a broker was started but did not answer within {timeout_s:g} s; "
        f"end of {settings.log_path}:\n{_log_tail(settings)}"
    )
