"""``slm-mesh mcp`` as a tiny launcher: hand this session's stdio to the warm process, then
wait for the server it forks and exit with its status.

Stdlib only, no cyclopts, no mcp: this runs on every agent start, so it imports C modules
(``_socket``, ``_signal``) rather than the Python wrappers, whose ``enum`` import would
double its start-up time (``tests/zygote/test_lean.py`` holds it to that). Whatever goes
wrong with the fast path (no warm process and none can be started, a version mismatch, a refused
request, ``SLM_MESH_NO_ZYGOTE=1``), the server runs in this process instead, so
correctness never depends on it.

When no warm process answers yet (the first session of the day), the launcher answers
``initialize`` and ``tools/list`` itself while one starts, with the server's own answers
(:mod:`slm_mesh.zygote.early`), and hands what it read and answered to the server.
"""

from __future__ import annotations

import _socket
import fcntl
import os
import sys
import time

from slm_mesh import locations
from slm_mesh.zygote import wire
from slm_mesh.zygote.early import EarlyAnswers

TYPE_CHECKING = False  # not typing's, nor signal's: each would import enum
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Callable
else:
    import _signal

START_TIMEOUT_S = 15.0
CONNECT_POLL_S = 0.02


def run_in_process(early: EarlyAnswers | None = None) -> int:
    from slm_mesh.mcp_server import main

    if early is None:
        return main()
    return main(early.input, early.answered)


def _connect(path: str) -> _socket.socket | None:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _spawn_warm(data_dir: str) -> int:
    """Start the warm process, detached, logging to ``zygote.log`` (it moves into the data
    dir itself); its pid. ``os.posix_spawn`` rather than :mod:`subprocess`, whose import
    alone would cost the first session ~10 ms."""
    log = os.open(
        os.path.join(data_dir, "zygote.log"),
        os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
        0o600,
    )
    try:
        return os.posix_spawn(
            sys.executable,
            [sys.executable, "-m", "slm_mesh.zygote"],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log, 1),
                (os.POSIX_SPAWN_DUP2, log, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log)


def connect_or_start(
    data_dir: str, broker_socket: str, pause: Callable[[float], None] = time.sleep
) -> _socket.socket | None:
    """A connection to the warm process, starting one if none answers (race-free: the
    first launcher to take ``zygote-start.lock`` starts it, the others wait and connect).
    While it waits, ``pause`` (the early answers, :mod:`slm_mesh.zygote.early`)."""
    path = wire.socket_path(broker_socket)
    sock = _connect(path)
    if sock is not None:
        return sock
    locations.ensure_private_dir(data_dir)
    deadline = time.monotonic() + START_TIMEOUT_S
    fd = os.open(os.path.join(data_dir, "zygote-start.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:  # flock with a deadline
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return None
                pause(CONNECT_POLL_S)
        sock = _connect(path)
        if sock is not None:
            return sock
        warm = _spawn_warm(data_dir)
        while time.monotonic() < deadline:
            sock = _connect(path)
            if sock is not None:
                return sock
            if _failed(warm):
                return None  # it can't start (zygote.log says why): don't wait it out
            pause(CONNECT_POLL_S)
        return None
    finally:
        os.close(fd)


def _failed(pid: int) -> bool:
    """Whether the warm process ``pid`` has exited with an error (it is reaped then). One
    that exits 0 found another one starting (``zygote.lock``): that one is waited for."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid and os.waitstatus_to_exitcode(status) != 0


def terminal_hint(argv0: str) -> str:
    """What ``slm-mesh mcp`` says when a person runs it on a terminal. The command it
    suggests is this one's absolute path when it was run as ``slm-mesh``: after the
    README's set-up (a venv) ``slm-mesh`` is not on an agent's PATH."""
    # On a terminal only: these imports (re...) cost an agent's start nothing.
    import json
    import shlex

    path = "slm-mesh"
    if os.path.basename(argv0) == "slm-mesh":
        path = os.path.abspath(argv0)
    command = shlex.quote(path)
    config = json.dumps({"mcpServers": {"slm-mesh": {"command": path, "args": ["mcp"]}}})
    return (
        "slm-mesh mcp: this is an MCP server speaking JSON-RPC on stdin/stdout, for an agent "
        f"to start: configure one with `{command} install claude` (the server and its hooks), "
        f"`claude mcp add --scope user slm-mesh -- {command} mcp` or {config}; from the "
        f"shell use `{command} --help`. Ctrl-D quits.\n"
    )


def launch() -> int:
    if os.isatty(0):  # a person ran it by hand: say what it is rather than wait silently
        os.write(2, terminal_hint(sys.argv[0]).encode())
    if os.environ.get("SLM_MESH_NO_ZYGOTE") not in (None, "", "0"):
        return run_in_process()
    data_dir = locations.data_dir()
    early = EarlyAnswers()
    try:
        sock = connect_or_start(data_dir, locations.socket_path(data_dir), early.pause)
    except (OSError, locations.NotPrivate):
        sock = None  # the in-process server meets the same problem and says so
    if sock is None:
        return run_in_process(early)
    from slm_mesh.zygote.relay import FORWARDED_SIGNALS

    # From the hand-over on, a signal must reach the server, not kill us half-way: hold
    # them until the relay has its handlers.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, FORWARDED_SIGNALS)
    try:
        try:
            wire.send_with_fds(
                sock,
                {
                    "op": "spawn",
                    "version": wire.code_version(),
                    "cwd": os.getcwd(),
                    "env": dict(os.environ),
                    "argv": sys.argv,
                    "parent_pid": os.getppid(),
                    **early.spawn_fields(),
                },
                [0, 1, 2],
            )
            reader = wire.LineReader(sock)
            first = _next_message(reader)
        except OSError:
            first = None
        pid = first.get("pid") if first is not None else None
        if isinstance(pid, int):
            return _become_relay(sock, pid, reader.buf)
    finally:
        sock.close()
    _signal.pthread_sigmask(_signal.SIG_UNBLOCK, FORWARDED_SIGNALS)
    return run_in_process(early)


def _next_message(reader: wire.LineReader) -> dict[str, object] | None:
    """The first message; whatever came with it stays in ``reader.buf``."""
    while True:
        line, found, rest = reader.buf.partition(b"\n")
        if found:
            reader.buf = rest
            return wire.decode(line)
        if not reader.receive():
            return None


def _become_relay(sock: _socket.socket, pid: int, early: bytes) -> int:
    from slm_mesh.zygote import relay

    return relay.relay(sock.fileno(), pid, early)
