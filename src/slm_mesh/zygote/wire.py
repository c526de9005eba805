"""The launcher ↔ warm-process wire: JSON lines on a Unix socket, the first one carrying the
session's stdin, stdout and stderr as SCM_RIGHTS.

Messages, launcher → warm process:
- ``{"op": "spawn", "version", "cwd", "env", "argv", "parent_pid"}`` with three fds
- ``{"op": "signal", "signum"}``: forward a signal the launcher received

Warm process → launcher:
- ``{"pid": N}``: the session's server runs as pid N
- ``{"exit": code}``: it ended with this exit code (negative: killed by that signal)
- ``{"error": "..."}``: it could not be started (the launcher runs the server itself)

Stdlib only: the launcher imports this on every agent start.
"""

from __future__ import annotations

import array
import json
import os
import socket
import sys
from typing import Any

MAX_MESSAGE_BYTES = 1024 * 1024
FD_COUNT = 3


def socket_path(broker_socket: str | os.PathLike[str]) -> str:
    """The warm process listens beside the broker's socket (same private folder)."""
    return os.path.join(os.path.dirname(broker_socket), "zygote.sock")


def code_version() -> str:
    """What a warm process must match to serve this launcher: our version, the
    interpreter, and where the package lives (an upgrade or another venv differs)."""
    import slm_mesh

    return f"{slm_mesh.__version__}|{os.path.realpath(sys.executable)}|{slm_mesh.__file__}"


def send_with_fds(sock: socket.socket, message: dict[str, Any], fds: list[int]) -> None:
    data = json.dumps(message).encode() + b"\n"
    sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def receive_with_fds(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The first message and the fds that came with it. Reads until a newline."""
    fds = array.array("i")
    data = b""
    while b"\n" not in data:
        msg, ancdata, _flags, _addr = sock.recvmsg(65536, socket.CMSG_LEN(FD_COUNT * fds.itemsize))
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                usable = len(payload) - (len(payload) % fds.itemsize)
                fds.frombytes(payload[:usable])
        if not msg:
            break
        data += msg
        if len(data) > MAX_MESSAGE_BYTES:
            break
    line, _, _rest = data.partition(b"\n")
    try:
        parsed = json.loads(line)
    except ValueError:
        parsed = None
    return (parsed if isinstance(parsed, dict) else None), list(fds)


class LineReader:
    """Reads JSON lines from a blocking or non-blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def read_available(self) -> tuple[list[dict[str, Any]], bool]:
        """Messages that are complete now, and whether the other side closed."""
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            chunk = None
        except OSError:
            chunk = b""
        closed = chunk == b""
        if chunk:
            self.buf += chunk
        out = []
        while b"\n" in self.buf:
            line, _, self.buf = self.buf.partition(b"\n")
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                out.append(value)
        return out, closed
