"""Paths, environment variables and limits, each with its unit in its name.

Every daemon-owned number lives here so it can be read, documented and overridden in one
place (``SLM_MESH_*`` environment variables). Nothing here imports beyond the stdlib: the
CLI and the broker import this module on their start-up path.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from slm_mesh import __version__, locations
from slm_mesh.person import login_name, person_name

SECONDS = 1.0
MINUTES = 60 * SECONDS
HOURS = 60 * MINUTES
KiB = 1024
MiB = 1024 * KiB

VERSION = __version__
PROTOCOL_VERSION = 1

DEFAULT_TCP_PORT = 7899
TCP_PORT_SPAN = 11  # 7899 … 7909
TCP_HOST = "127.0.0.1"

# Size limits
MAX_LINE_BYTES = 1 * MiB
MAX_BODY_BYTES = 64 * KiB
MAX_SUMMARY_CHARS = 2_500
MAX_KEY_BYTES = 256
MAX_VALUE_BYTES = 64 * KiB
# Characters of message bodies in one inbox answer. JSON-escaped, a character takes at most
# 6 bytes, so the answer stays under 1 MiB however many messages wait.
MAX_RESPONSE_BODY_BYTES = 128 * KiB
# What a client accepts from the broker (trusted, but answers can be larger than calls).
CLIENT_MAX_LINE_BYTES = 64 * MiB

# Connection limits
MAX_CONNECTIONS_PER_UID = 512
MAX_OUTGOING_QUEUE = 1_000
# Encoded bytes waiting to be written to one connection. Answers may fill half of it (then
# the broker stops reading that client); a push that finds no room disconnects the client.
MAX_OUTGOING_BYTES = 16 * MiB
MAX_INFLIGHT_CALLS = 64
# TCP connections that have not sent a valid mesh.hello yet: a quota of their own and a
# deadline, since every user of the machine can reach a loopback port and must not be able
# to use up the owner's connection cap by connecting and saying nothing.
MAX_UNAUTHENTICATED_CONNECTIONS = 16
HELLO_TIMEOUT_S = 5 * SECONDS
RATE_LIMIT_PER_S = 1_000.0
RATE_LIMIT_BURST = 2_000.0

# Timing defaults
DEFAULT_LOCK_TTL_S = 10 * MINUTES
DEFAULT_GRACE_S = 30 * SECONDS
DEFAULT_IDLE_EXIT_S = 60 * SECONDS
SHUTDOWN_DRAIN_S = 2 * SECONDS
READ_MESSAGE_RETENTION_S = 24 * HOURS
EVENT_RETENTION_S = 48 * HOURS
MAINTENANCE_INTERVAL_S = 1 * MINUTES
PUSHED_FLUSH_S = 0.05 * SECONDS
CHECKPOINT_INTERVAL_S = 1 * SECONDS
CHECKPOINT_WAL_BYTES = 4 * MiB
# How long the broker remembers who edited a file (file.edited), for the edit guard's
# "edited lately by another session" warning.
EDIT_MEMORY_S = 10 * MINUTES
# A session tied to a process is checked this often where the kernel cannot tell at once
# that the process exited (no pidfd: macOS, old Linux).
PROCESS_POLL_S = 2 * SECONDS

# Several machines on one PostgreSQL store (issue 12)
DEFAULT_MESH_NAME = "default"
# A broker's lease in the shared store: renewed every third of it. A broker that could not
# renew it for this long stops answering; the others take its sessions for away.
DEFAULT_LEASE_S = 10 * SECONDS
# How often each broker of a shared store sweeps for what a dead broker left behind (a
# lapsed lease, a grace run out, a lock past its TTL). Lowered by the tests.
DEFAULT_SWEEP_S = 1 * SECONDS


# Exit statuses of a broker that can't start (sysexits.h). Restarting it would fail the same
# way until someone acts, so the systemd unit lists them in RestartPreventExitStatus=.
EXIT_CANT_START_STORAGE = 74  # EX_IOERR: the disk is full, read-only, or failing
EXIT_CANT_START_CONFIG = 78  # EX_CONFIG: a bad data dir, a database it can't use, a bad address
EXIT_CANT_START = (EXIT_CANT_START_STORAGE, EXIT_CANT_START_CONFIG)


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def default_data_dir() -> Path:
    return Path(locations.data_dir())


def default_socket_path(data_dir: Path) -> Path:
    return Path(locations.socket_path(str(data_dir)))


@dataclass(frozen=True)
class Limits:
    """Per-connection and per-item limits. Each may be overridden by
    ``SLM_MESH_<NAME>`` (upper case), e.g. ``SLM_MESH_MAX_LINE_BYTES=2097152``."""

    max_line_bytes: int = MAX_LINE_BYTES
    client_max_line_bytes: int = CLIENT_MAX_LINE_BYTES
    max_body_bytes: int = MAX_BODY_BYTES
    max_summary_chars: int = MAX_SUMMARY_CHARS
    max_key_bytes: int = MAX_KEY_BYTES
    max_value_bytes: int = MAX_VALUE_BYTES
    max_connections_per_uid: int = MAX_CONNECTIONS_PER_UID
    max_outgoing_queue: int = MAX_OUTGOING_QUEUE
    max_outgoing_bytes: int = MAX_OUTGOING_BYTES
    max_inflight_calls: int = MAX_INFLIGHT_CALLS
    max_unauthenticated_connections: int = MAX_UNAUTHENTICATED_CONNECTIONS
    rate_limit_per_s: float = RATE_LIMIT_PER_S
    rate_limit_burst: float = RATE_LIMIT_BURST

    @classmethod
    def from_env(cls) -> Limits:
        values: dict[str, Any] = {}
        for f in fields(cls):
            default = getattr(cls, f.name)
            value = _env_float(f"SLM_MESH_{f.name.upper()}", default)
            values[f.name] = int(value) if isinstance(default, int) else value
        return cls(**values)


def default_host() -> str:
    """This machine's name in the mesh: ``SLM_MESH_HOST``, else its host name."""
    return os.environ.get("SLM_MESH_HOST") or socket.gethostname()


@dataclass(frozen=True)
class Settings:
    """Where the broker keeps its files and how long it waits, resolved once."""

    data_dir: Path
    socket_path: Path
    tcp_port: int = DEFAULT_TCP_PORT
    lock_ttl_s: float = DEFAULT_LOCK_TTL_S
    grace_s: float = DEFAULT_GRACE_S
    idle_exit_s: float = DEFAULT_IDLE_EXIT_S
    limits: Limits = field(default_factory=lambda: Limits())
    person: str = field(default_factory=login_name)
    """The person at the shell (``slm_mesh.person``): ``SLM_MESH_PERSON`` or the login name."""
    # The shared store of several machines (a postgresql:// URL), or None for the
    # embedded SQLite file; the mesh's name in it (a schema each).
    store_url: str | None = None
    mesh_name: str = DEFAULT_MESH_NAME
    host: str = field(default_factory=default_host)
    lease_s: float = DEFAULT_LEASE_S
    sweep_s: float = DEFAULT_SWEEP_S

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = default_data_dir()
        return cls(
            data_dir=data_dir,
            socket_path=default_socket_path(data_dir),
            tcp_port=int(_env_float("SLM_MESH_PORT", DEFAULT_TCP_PORT)),
            lock_ttl_s=_env_float("SLM_MESH_LOCK_TTL_MIN", DEFAULT_LOCK_TTL_S / MINUTES) * MINUTES,
            grace_s=_env_float("SLM_MESH_GRACE_S", DEFAULT_GRACE_S),
            idle_exit_s=_env_float("SLM_MESH_IDLE_EXIT_S", DEFAULT_IDLE_EXIT_S),
            limits=Limits.from_env(),
            person=person_name(),
            store_url=os.environ.get("SLM_MESH_STORE") or None,
            mesh_name=os.environ.get("SLM_MESH_MESH") or DEFAULT_MESH_NAME,
            host=default_host(),
            lease_s=_env_float("SLM_MESH_LEASE_S", DEFAULT_LEASE_S),
            sweep_s=_env_float("SLM_MESH_SWEEP_S", DEFAULT_SWEEP_S),
        )

    @property
    def db_path(self) -> Path:
        return self.data_dir / "mesh.db"

    @property
    def token_path(self) -> Path:
        return self.data_dir / "broker.token"

    @property
    def pid_path(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def lock_path(self) -> Path:
        return self.data_dir / "broker.lock"

    @property
    def port_path(self) -> Path:
        return self.data_dir / "port"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"
