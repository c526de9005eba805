"""Starting and stopping the broker process: files, listeners, then the trio run."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
from pathlib import Path

import trio

from slm_mesh.config import MAX_CONNECTIONS_PER_UID, TCP_HOST, Settings
from slm_mesh.store import SchemaError, StorageError, Store

from . import credentials
from .files import (
    AlreadyRunning,
    InstanceLock,
    StartupError,
    activation_sockets,
    bind_tcp,
    bind_unix,
    ensure_private_dir,
    unix_path_fits,
    write_private,
)
from .server import Broker

log = logging.getLogger("slm_mesh.broker")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s slm-mesh[%(process)d] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run_broker(
    settings: Settings,
    *,
    idle_exit_s: float | None = None,
    tcp: bool = False,
    tcp_host: str = TCP_HOST,
) -> int:
    """Run a broker in the foreground until it is stopped. Returns the exit status: 0 also
    when another broker already runs (it says which)."""
    os.umask(0o077)  # the db, its WAL and the log are nobody else's business
    try:
        ensure_private_dir(settings.data_dir)
        lock = InstanceLock(settings)
        lock.acquire()
    except AlreadyRunning as exc:
        print(f"slm-mesh: {exc}", file=sys.stderr)
        return 0
    except (StartupError, OSError) as exc:
        print(f"slm-mesh: can't start the broker: {exc}", file=sys.stderr)
        return 1
    bound_unix: Path | None = None
    written: list[Path] = []
    store: Store | None = None
    try:
        store = Store.open(settings.db_path)
        sockets = activation_sockets()
        if not sockets:
            if unix_path_fits(settings.socket_path):
                sockets.append(bind_unix(settings.socket_path, MAX_CONNECTIONS_PER_UID))
                bound_unix = settings.socket_path
            else:
                log.warning(
                    "socket path %s is too long for AF_UNIX: using TCP", settings.socket_path
                )
                tcp = True
            if tcp:
                sockets.append(bind_tcp(tcp_host, settings.tcp_port, MAX_CONNECTIONS_PER_UID))
        token = credentials.new_token()
        write_private(settings.token_path, token)
        written.append(settings.token_path)
        tcp_ports = [s.getsockname()[1] for s in sockets if s.family != socket.AF_UNIX]
        if tcp_ports:
            write_private(settings.port_path, f"{tcp_ports[0]}\n")
            written.append(settings.port_path)
        else:
            with contextlib.suppress(FileNotFoundError):
                settings.port_path.unlink()
        write_private(settings.pid_path, f"{os.getpid()}\n")
        written.append(settings.pid_path)
        broker = Broker(settings, store, sockets, idle_exit_s=idle_exit_s, token=token)
        log.info(
            "listening on %s (data dir %s)",
            ", ".join(str(s.getsockname()) for s in sockets),
            settings.data_dir,
        )
        trio.run(lambda: broker.run(handle_signals=True))
        log.info("stopped")
        return 0
    except (StartupError, SchemaError, StorageError, OSError) as exc:
        print(f"slm-mesh: can't start the broker: {exc}", file=sys.stderr)
        return 1
    finally:
        if bound_unix is not None:
            with contextlib.suppress(FileNotFoundError):
                bound_unix.unlink()
        for path in written:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if store is not None:
            store.close()
        lock.release()
