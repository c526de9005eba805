"""The broker's files: single-instance lock, and the listening sockets (Unix, TCP on
loopback, or handed over by systemd/launchd). The private files and sockets themselves are
:mod:`slm_mesh.private_files`, shared with the warm process and the CLI.

Rules:
1. The data dir and the socket's folder are 0700 and the socket, token and pid files 0600,
   whatever the umask.
2. One broker per data dir: an exclusive ``flock`` on ``broker.lock``, held for the
   broker's whole life. The kernel drops it when the process dies, even by SIGKILL, so a
   crash never leaves a lock behind.
3. A socket file nobody answers on is stale and removed; one that answers belongs to a
   running broker and is never touched.
4. TCP binds to loopback only; any other address is refused at start-up.
"""

from __future__ import annotations

import ipaddress
import os
import socket

from slm_mesh.config import TCP_PORT_SPAN, Settings
from slm_mesh.private_files import (  # the files and sockets the warm process uses too
    _FIX_DIR,
    MAX_UNIX_PATH_BYTES,
    StartupError,
    bind_unix,
    ensure_private_dir,
    read_pid,
    remove_stale_socket,
    socket_answers,
    try_flock,
    unix_path_fits,
    write_private,
)

__all__ = [
    "MAX_UNIX_PATH_BYTES",
    "AlreadyRunning",
    "InstanceLock",
    "StartupError",
    "activation_sockets",
    "bind_tcp",
    "bind_unix",
    "check_loopback",
    "describe",
    "ensure_private_dir",
    "read_pid",
    "remove_stale_socket",
    "socket_answers",
    "try_flock",
    "unix_path_fits",
    "write_private",
]

SD_LISTEN_FDS_START = 3


class AlreadyRunning(Exception):
    def __init__(self, pid: int | None, where: str) -> None:
        self.pid = pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"a broker is already running ({who}, {where})")


class InstanceLock:
    """The exclusive flock that makes this the only broker of its data dir."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.fd: int | None = None

    def acquire(self) -> None:
        """Raises:
        AlreadyRunning: another broker holds the lock.
        StartupError: the lock file can't be opened (a read-only data dir).
        """
        try:
            fd = try_flock(self.settings.lock_path)
        except OSError as exc:
            raise StartupError(
                f"can't use {self.settings.data_dir}: {exc.strerror}; {_FIX_DIR}"
            ) from exc
        if fd is None:
            raise AlreadyRunning(read_pid(self.settings.pid_path), str(self.settings.socket_path))
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None


def check_loopback(host: str) -> None:
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise StartupError(f"refusing to listen on {host}: TCP is for loopback addresses only")


def bind_tcp(host: str, first_port: int, backlog: int) -> socket.socket:
    """Listen on the first free port of ``first_port`` … ``first_port + 10``."""
    check_loopback(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last_error: OSError | None = None
    for port in range(first_port, first_port + TCP_PORT_SPAN):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        sock.listen(backlog)
        return sock
    raise StartupError(
        f"no free TCP port on {host} in {first_port}-{first_port + TCP_PORT_SPAN - 1}: {last_error}"
    )


def activation_sockets() -> list[socket.socket]:
    """Listening sockets handed over by systemd (``LISTEN_FDS``/``LISTEN_PID``) or launchd
    in the same way. The variables are cleared so children don't inherit them."""
    pid = os.environ.get("LISTEN_PID")
    count = os.environ.get("LISTEN_FDS")
    if not count or pid != str(os.getpid()):
        return []
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(var, None)
    out = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
        if sock.type != socket.SOCK_STREAM:
            raise StartupError(f"activation fd {fd} is not a stream socket")
        out.append(sock)
    return out


def describe(sock: socket.socket) -> dict[str, object]:
    """A listener as ``mesh.status`` shows it."""
    if sock.family == socket.AF_UNIX:
        return {"kind": "unix", "path": sock.getsockname()}
    host, port = sock.getsockname()[:2]
    return {"kind": "tcp", "host": host, "port": port}
