"""The launcher ↔ warm-process wire: JSON lines on a Unix socket, the first one carrying the
session's stdin, stdout and stderr as SCM_RIGHTS.

Messages, launcher → warm process:
- ``{"op": "spawn", "version", "cwd", "env", "argv", "parent_pid"}`` with three fds
- ``{"op": "signal", "signum"}``: forward a signal the launcher received

Warm process → launcher:
- ``{"pid": N}``: the session's server runs as pid N
- ``{"exit": code}``: it ended with this exit code (negative: killed by that signal)
- ``{"error": "..."}``: it could not be started (the launcher runs the server itself)

The launcher imports this on every agent start, so it imports only C modules: not
:mod:`socket`, :mod:`json` or :mod:`typing`, whose imports (``enum``, ``re``…) would cost
more than the rest of the launcher. JSON goes through ``_json``, the accelerator
:mod:`json` itself uses (:mod:`slm_mesh.leanjson`).
"""

from __future__ import annotations

import os
import sys

from slm_mesh.leanjson import decode, encode

TYPE_CHECKING = False  # not typing's: importing typing alone costs ~10 ms here

if TYPE_CHECKING:
    from typing import Any, Protocol

    class FdSocket(Protocol):  # socket.socket and _socket.socket alike
        def sendmsg(self, buffers: list[bytes], ancdata: list[Any], /) -> int: ...
        def recvmsg(
            self, bufsize: int, ancbufsize: int, /
        ) -> tuple[bytes, list[Any], int, Any]: ...
        def recv(self, bufsize: int, /) -> bytes: ...
        def sendall(self, data: bytes, /) -> None: ...


__all__ = [
    "INFO_FILE",
    "LOCK_FILE",
    "LineReader",
    "decode",
    "encode",
    "receive_with_fds",
    "send",
    "send_with_fds",
]

# In the data dir: held (flock) by the warm process while it serves, one per data dir;
# and its {pid, idle_exit_s} meanwhile, for `slm-mesh status` (slm_mesh.cli.warm_process).
LOCK_FILE = "zygote.lock"
INFO_FILE = "zygote.json"

MAX_MESSAGE_BYTES = 1024 * 1024
FD_COUNT = 3
_INT_SIZE = 4  # a C int, as SCM_RIGHTS carries fds


def socket_path(broker_socket: str | os.PathLike[str]) -> str:
    """The warm process listens beside the broker's socket (same private folder)."""
    return os.path.join(os.path.dirname(broker_socket), "zygote.sock")


def code_version() -> str:
    """What a warm process must match to serve this launcher: our version, the
    interpreter, and where the package lives (an upgrade or another venv differs)."""
    import slm_mesh

    return f"{slm_mesh.__version__}|{os.path.realpath(sys.executable)}|{slm_mesh.__file__}"


def send_with_fds(sock: FdSocket, message: dict[str, Any], fds: list[int]) -> None:
    from _socket import SCM_RIGHTS, SOL_SOCKET

    packed = b"".join(fd.to_bytes(_INT_SIZE, sys.byteorder, signed=True) for fd in fds)
    sock.sendmsg([encode(message)], [(SOL_SOCKET, SCM_RIGHTS, packed)])


def send(sock: FdSocket, message: dict[str, Any]) -> None:
    sock.sendall(encode(message))


def receive_with_fds(sock: FdSocket) -> tuple[dict[str, Any] | None, list[int]]:
    """The first message and the fds that came with it. Reads until a newline."""
    from _socket import CMSG_LEN, SCM_RIGHTS, SOL_SOCKET

    fds: list[int] = []
    data = b""
    while b"\n" not in data:
        msg, ancdata, _flags, _addr = sock.recvmsg(65536, CMSG_LEN(FD_COUNT * _INT_SIZE))
        for level, kind, payload in ancdata:
            if level == SOL_SOCKET and kind == SCM_RIGHTS:
                usable = len(payload) - (len(payload) % _INT_SIZE)
                fds += [
                    int.from_bytes(payload[i : i + _INT_SIZE], sys.byteorder, signed=True)
                    for i in range(0, usable, _INT_SIZE)
                ]
        if not msg:
            break
        data += msg
        if len(data) > MAX_MESSAGE_BYTES:
            break
    line, _, _rest = data.partition(b"\n")
    return decode(line), fds


class LineReader:
    """Reads JSON lines from a blocking or non-blocking socket."""

    def __init__(self, sock: FdSocket) -> None:
        self.sock = sock
        self.buf = b""

    def receive(self) -> bool:
        """Read what is there into ``buf``; False once the other side has closed."""
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return True
        except OSError:
            return False
        self.buf += chunk
        return bool(chunk)

    def read_available(self) -> tuple[list[dict[str, Any]], bool]:
        """Messages that are complete now, and whether the other side closed."""
        still_open = self.receive()
        out = []
        while b"\n" in self.buf:
            line, _, self.buf = self.buf.partition(b"\n")
            value = decode(line)
            if value is not None:
                out.append(value)
        return out, not still_open
