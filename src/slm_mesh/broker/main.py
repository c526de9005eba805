"""Starting and stopping the broker process: files, listeners, then the trio run."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import secrets
import socket
import sys
from pathlib import Path

import trio

from slm_mesh.config import (
    EXIT_CANT_START_CONFIG,
    EXIT_CANT_START_STORAGE,
    MAX_CONNECTIONS_PER_UID,
    TCP_HOST,
    Settings,
)
from slm_mesh.store import SchemaError, StorageError, Store, StoreUnreachable

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


def store_setting(settings: Settings, url: str) -> Settings | None:
    """``settings`` with the shared store ``url`` (``--store``); None, having said why, if
    it can't be used: not a PostgreSQL URL, or a password in it (argv is world-readable)."""
    from slm_mesh.store.urls import has_password, is_url

    if not is_url(url):
        print(f"slm-mesh: --store wants a postgresql:// URL, got {url!r}", file=sys.stderr)
        return None
    if has_password(url):
        print(
            "slm-mesh: --store must not carry a password (the command line is visible to "
            "every user of the machine): put it in ~/.pgpass (or PGPASSFILE) instead",
            file=sys.stderr,
        )
        return None
    return dataclasses.replace(settings, store_url=url)


def broker_id(settings: Settings) -> str:
    """This broker's name among those sharing a store: kept in the data dir, so a
    restarted broker takes back its own sessions."""
    path = settings.data_dir / "broker.id"
    try:
        found = path.read_text().strip()
    except FileNotFoundError:
        found = ""
    if not found:
        found = f"{settings.host}-{secrets.token_hex(4)}"
        write_private(path, found + "\n")
    return found


def open_store(settings: Settings) -> Store:
    """The store the settings name: the shared PostgreSQL one, or the SQLite file.

    Raises:
        SchemaError, StorageError, StoreUnreachable: as :meth:`Store.open`.
    """
    if settings.store_url:
        try:
            from slm_mesh.store.postgresql import PostgresStore
        except ImportError:
            raise StartupError(
                "SLM_MESH_STORE names a PostgreSQL database, but its driver is not "
                "installed: pip install 'slm-mesh[postgresql]'"
            ) from None

        store = PostgresStore.open_url(
            settings.store_url, mesh=settings.mesh_name, broker_id=broker_id(settings)
        )
        log.info("shared store: %s", store.where())
        return store
    return Store.open(settings.db_path)


def run_broker(
    settings: Settings,
    *,
    idle_exit_s: float | None = None,
    tcp: bool = False,
    tcp_host: str = TCP_HOST,
) -> int:
    """Run a broker in the foreground until it is stopped. Returns the exit status: 0 also
    when another broker already runs (it says which); when it can't start, 74 for storage
    trouble (disk full, read-only, I/O) and 78 for a bad data dir, database or address, which
    a restart would not cure (``config.EXIT_CANT_START``); 1 for anything else."""
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
        return _exit_status(exc, setting_up_data_dir=True)
    bound_unix: Path | None = None
    written: list[Path] = []
    store: Store | None = None
    try:
        store = open_store(settings)
        # The token and pid files exist before anyone can connect: a client that sees the
        # socket answer finds them (and `clean` after a SIGKILL finds what it left).
        token = credentials.new_token()
        write_private(settings.token_path, token)
        written.append(settings.token_path)
        write_private(settings.pid_path, f"{os.getpid()}\n")
        written.append(settings.pid_path)
        sockets = activation_sockets()
        activated = bool(sockets)
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
        tcp_ports = [s.getsockname()[1] for s in sockets if s.family != socket.AF_UNIX]
        if tcp_ports:
            write_private(settings.port_path, f"{tcp_ports[0]}\n")
            written.append(settings.port_path)
        else:
            with contextlib.suppress(FileNotFoundError):
                settings.port_path.unlink()
        broker = Broker(
            settings, store, sockets, idle_exit_s=idle_exit_s, token=token, activated=activated
        )
        log.info(
            "listening on %s (data dir %s)",
            ", ".join(str(s.getsockname()) for s in sockets),
            settings.data_dir,
        )
        trio.run(lambda: broker.run(handle_signals=True))
        log.info("stopped")
        return 0
    except (StartupError, SchemaError, StorageError, StoreUnreachable, OSError) as exc:
        print(f"slm-mesh: can't start the broker: {exc}", file=sys.stderr)
        return _exit_status(exc)
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


_STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


def _exit_status(exc: Exception, *, setting_up_data_dir: bool = False) -> int:
    """The exit status of a broker that can't start because of ``exc`` (see run_broker):
    storage trouble, or a data dir, database or address that a restart would not cure."""
    if isinstance(exc, StorageError) or (isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS):
        return EXIT_CANT_START_STORAGE
    if isinstance(exc, StartupError | SchemaError) or setting_up_data_dir:
        return EXIT_CANT_START_CONFIG
    return 1
