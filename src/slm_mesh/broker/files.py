"""The broker's files: data dir, single-instance lock, pid, token and port files, and the
listening sockets (Unix, TCP on loopback, or handed over by systemd/launchd).

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

import contextlib
import errno
import fcntl
import ipaddress
import os
import socket
from pathlib import Path

from slm_mesh import locations
from slm_mesh.config import TCP_PORT_SPAN, Settings

SD_LISTEN_FDS_START = 3
# sun_path is 108 bytes on Linux, 104 on macOS, including the terminating NUL.
MAX_UNIX_PATH_BYTES = 103


_FIX_DIR = (
    "make the data dir writable and give its disk some free space, or set "
    "SLM_MESH_DATA_DIR to a folder that is"
)


class AlreadyRunning(Exception):
    def __init__(self, pid: int | None, where: str) -> None:
        self.pid = pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"a broker is already running ({who}, {where})")


class StartupError(Exception):
    """The broker can't start; the message says why and what to do."""


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) and make it 0700, refusing one owned by someone else."""
    try:
        locations.ensure_private_dir(path)
    except locations.NotPrivate as exc:
        raise StartupError(str(exc)) from exc


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a 0600 file, atomically (readers never see half a token).

    Raises:
        StartupError: the file can't be written (disk full, read-only); no temp file is
            left behind.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StartupError(f"can't write {path}: {exc.strerror}; {_FIX_DIR}") from exc


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def try_flock(path: Path, *, create: bool = True) -> int | None:
    """An fd holding an exclusive ``flock`` on ``path``, or None when another process
    holds it. The kernel drops the lock when the fd closes or the process dies.

    Raises:
        FileNotFoundError: ``path`` does not exist and ``create`` is False.
    """
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    fd = os.open(path, flags, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


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


def socket_answers(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(str(path))
    except OSError:
        return False
    else:
        return True
    finally:
        s.close()


def remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by a dead broker.

    Raises:
        StartupError: something answers on it (a broker of another data dir?).
    """
    if not path.exists() and not path.is_symlink():
        return
    if socket_answers(path):
        raise StartupError(
            f"{path} answers but belongs to no broker of this data dir; stop it or set "
            "SLM_MESH_SOCKET to another path"
        )
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def unix_path_fits(path: Path) -> bool:
    return len(os.fsencode(path)) <= MAX_UNIX_PATH_BYTES


def bind_unix(path: Path, backlog: int) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 from the moment it exists."""
    ensure_private_dir(path.parent)
    remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(backlog)
    return sock


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
