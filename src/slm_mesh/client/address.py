"""Where the broker listens, read from the files it leaves in the data dir.

The order is the order a client tries them in: the Unix socket first (authenticated by uid,
no token needed), then TCP on loopback at the port the broker wrote to ``<data dir>/port``,
with the token from ``<data dir>/broker.token``. Only files are read here, nothing is
connected, so this is cheap enough to call again before every reconnect attempt (a restarted
broker has a new token and maybe a new port).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from slm_mesh.config import TCP_HOST, Settings

START_HINT = "start one with `slm-mesh start` (or run `slm-mesh broker` in the foreground)"


class BrokerUnreachable(Exception):
    """No broker answered at any address. The CLI turns this into exit code 3."""


@dataclass(frozen=True, slots=True)
class Address:
    """One place a broker may listen: a Unix socket ``path``, or TCP ``host:port`` with the
    ``token`` that its first call (``mesh.hello``) must carry."""

    kind: Literal["unix", "tcp"]
    path: Path | None = None
    host: str = TCP_HOST
    port: int = 0
    token: str | None = None

    @classmethod
    def unix(cls, path: Path) -> Address:
        """The Unix socket at ``path``."""
        return cls("unix", path=path)

    @classmethod
    def tcp(cls, port: int, token: str | None, host: str = TCP_HOST) -> Address:
        """TCP at ``host:port`` (loopback by default), authenticated with ``token``."""
        return cls("tcp", host=host, port=port, token=token)

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        return f"tcp:{self.host}:{self.port}"


def read_port(path: Path) -> int | None:
    """The port number in ``path``, or None if the file is missing or does not hold one."""
    try:
        port = int(path.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    return port if 0 < port < 65536 else None


def read_token(path: Path) -> str | None:
    """The hex token in ``path``, or None if it is missing or unreadable."""
    try:
        token = path.read_text(encoding="ascii").strip()
    except (OSError, ValueError):
        return None
    return token or None


def resolve(settings: Settings) -> list[Address]:
    """The addresses to try, in order; empty when the broker has left no trace.

    Args:
        settings: where the data dir and socket are.

    Returns:
        The Unix socket if its file exists, then TCP loopback if ``<data dir>/port`` holds a
        port (with the token from ``<data dir>/broker.token``, None if there is none).
    """
    found: list[Address] = []
    if settings.socket_path.exists():
        found.append(Address.unix(settings.socket_path))
    port = read_port(settings.port_path)
    if port is not None:
        found.append(Address.tcp(port, read_token(settings.token_path)))
    return found


def unreachable(
    settings: Settings, tried: Sequence[tuple[Address, BaseException]]
) -> BrokerUnreachable:
    """The error to raise when no address answered, saying what was tried and how to start a
    broker."""
    if tried:
        detail = "; ".join(f"{address}: {_reason(exc)}" for address, exc in tried)
    else:
        detail = f"no socket at {settings.socket_path} and no port file at {settings.port_path}"
    return BrokerUnreachable(f"no slm-mesh broker is running ({detail}); {START_HINT}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__
