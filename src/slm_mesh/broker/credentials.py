"""Who is on the other end: the peer's uid on a Unix socket, the token on TCP."""

from __future__ import annotations

import hmac
import os
import secrets
import socket
import struct
import sys
from typing import Protocol


class _HasGetsockopt(Protocol):
    def getsockopt(self, level: int, optname: int, buflen: int) -> bytes: ...


def peer_uid(sock: _HasGetsockopt) -> int | None:
    """The uid of the process at the other end of a connected Unix socket, or None where
    the platform can't tell (then the connection is refused: we never guess)."""
    if sys.platform.startswith("linux") and hasattr(socket, "SO_PEERCRED"):
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", raw)
        return int(uid)
    if sys.platform == "darwin":
        # getpeereid(3) is LOCAL_PEERCRED under the hood: struct xucred
        # { u_int cr_version; uid_t cr_uid; short cr_ngroups; gid_t cr_groups[16]; }
        sol_local, local_peercred = 0, 0x001
        raw = sock.getsockopt(sol_local, local_peercred, struct.calcsize("IIh16I"))
        _version, uid = struct.unpack_from("II", raw)
        return int(uid)
    return None


def same_user(sock: _HasGetsockopt) -> bool:
    try:
        return peer_uid(sock) == os.geteuid()
    except OSError:
        return False


def new_token() -> str:
    return secrets.token_hex(32)


def token_matches(given: object, expected: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())
