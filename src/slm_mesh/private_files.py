"""The data dir's private files, locks and Unix sockets: what the broker, the warm process
and the CLI share (stdlib only, so none of them pulls in the others' code).

Rules:
1. Folders are 0700 and files and sockets 0600 from the moment they exist, whatever the
   umask; a data dir owned by another uid is refused.
2. A lock is an exclusive ``flock``: the kernel drops it when its process dies, even by
   SIGKILL, so a crash never leaves a lock behind.
3. A socket file nobody answers on is stale and removed; one that answers belongs to a
   running process and is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path

from slm_mesh import locations

# sun_path is 108 bytes on Linux, 104 on macOS, including the terminating NUL.
MAX_UNIX_PATH_BYTES = 103


_FIX_DIR = (
    "make the data dir writable and give its disk some free space, or set "
    "SLM_MESH_DATA_DIR to a folder that is"
)


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
