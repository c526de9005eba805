"""The broker's life from the shell: bare ``slm-mesh``, ``start``, ``stop``, ``status``,
``clean`` and ``version``.

Rules:
1. Only bare ``slm-mesh`` and ``start`` start a broker (through ``client.autostart``, so
   many at once still start one), and a broker a person starts from the shell runs until
   ``slm-mesh stop`` (``start --idle-exit N`` asks otherwise). Idle exit is for brokers
   that agents start: their MCP server or hook starts one that exits 60 s after its last
   session. ``status`` says which kind runs (``lifetime``).
2. ``stop`` asks the broker to stop (``mesh.shutdown``) and waits until its instance lock
   is free, i.e. the process has let go of the data dir. It never signals a process.
3. ``clean`` removes only what a dead broker left: it takes the instance lock itself (so
   no broker holds it, and none can start while it works), removes a socket file only when
   connecting to it is refused, and kills nothing. Session files of ``lock acquire``
   holders whose process is gone go too, broker or not.
4. ``stop`` also asks the warm process (:mod:`slm_mesh.cli.warm_process`) to stop: it
   takes no new session and exits once the agent sessions it serves have ended (an agent's
   MCP server is never killed). With no broker running, ``stop`` still stops a warm
   process left behind. ``status`` shows it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from slm_mesh.cli import render, shell_sessions, warm_process
from slm_mesh.cli.connect import connect, load_settings, permission_problem
from slm_mesh.cli.outcome import FAILED, OK, CliError, unreachable
from slm_mesh.cli.render import BOLD, GREEN, RED, Output
from slm_mesh.client.address import BrokerUnreachable
from slm_mesh.client.blocking import BlockingClient
from slm_mesh.client.wire import ConnectionLost
from slm_mesh.config import PROTOCOL_VERSION, VERSION, Settings
from slm_mesh.private_files import socket_answers, try_flock

STOP_TIMEOUT_S = 10.0
STOP_POLL_S = 0.02


# -- version -------------------------------------------------------------------------


def version(out: Output) -> int:
    """Print the CLI's version and wire protocol version (no broker needed)."""
    if out.as_json:
        out.json({"version": VERSION, "protocol": PROTOCOL_VERSION})
    else:
        out.line(f"slm-mesh {VERSION} (wire protocol {PROTOCOL_VERSION})")
    return OK


# -- status ----------------------------------------------------------------------------


def status(out: Output) -> int:
    """Print the running broker's status; exit 3 when none answers."""
    settings = load_settings()
    with connect(settings) as client:
        show_status(out, client, started=None, settings=settings)
    return OK


def bare(out: Output) -> int:
    """Make sure a broker runs (starting one that runs until ``stop``), then print status."""
    settings = load_settings()
    started = _ensure(settings, persistent=True)
    with connect(settings) as client:
        show_status(out, client, started=started, settings=settings)
    return OK


def start(out: Output, idle_exit: float | None) -> int:
    """Start a detached broker unless one answers; print what runs."""
    settings = load_settings()
    if idle_exit is not None and idle_exit <= 0:
        raise CliError("--idle-exit must be more than 0 seconds", 2)
    started = _ensure(settings, persistent=idle_exit is None, idle_exit_s=idle_exit)
    with connect(settings) as client:
        info = client.call("mesh.status")
        address = str(client.address)
    if out.as_json:
        out.json(
            {
                "started": started,
                "pid": info["pid"],
                "address": address,
                "idle_exit_s": info["idle_exit_s"],
            }
        )
        return OK
    verb = "started" if started else "already running:"
    out.line(f"{verb} broker pid {info['pid']} on {address}")
    if not started:
        return OK
    if info["idle_exit_s"] is None:
        out.line("it runs until `slm-mesh stop`; its log is " + str(settings.log_path))
    else:
        out.line(f"it exits {render.span(info['idle_exit_s'])} after its last connection closes")
    return OK


def _ensure(settings: Settings, *, persistent: bool, idle_exit_s: float | None = None) -> bool:
    """Start a broker unless one answers; True if this call started it."""
    from slm_mesh.client.autostart import ensure_broker_sync

    try:
        with BlockingClient.connect(settings, timeout=2.0, client_name="slm-mesh-cli probe"):
            return False
    except (BrokerUnreachable, ConnectionLost, OSError):
        pass
    problem = permission_problem(settings)
    if problem:
        raise unreachable(problem)
    try:
        ensure_broker_sync(settings, idle_exit_s=idle_exit_s, persistent=persistent)
    except PermissionError as exc:
        raise unreachable(permission_problem(settings) or f"can't start a broker: {exc}") from None
    return True


def show_status(
    out: Output, client: BlockingClient, *, started: bool | None, settings: Settings
) -> None:
    info: dict[str, Any] = client.call("mesh.status")
    address = str(client.address)
    warm = warm_process.running(settings)
    if out.as_json:
        doc: dict[str, Any] = {"address": address}
        if started is not None:
            doc["started"] = started
        doc.update(info)
        doc["warm"] = warm
        out.json(doc)
        return
    # (A shared store out of reach leaves out what only it can count: "?".)
    counts: dict[str, Any] = defaultdict(lambda: "?", info["counts"])
    head = f"{out.paint('running', GREEN, BOLD)}, pid {info['pid']}, version {info['version']}"
    head += f", up {render.span(info['uptime_s'])}"
    if started:
        head += " (just started)"
    out.line(f"slm-mesh broker {head}")
    lifetime_text = _lifetime(info)
    listeners = ", ".join(_listener(item) for item in info["listeners"]) or "-"
    out.fields(
        [
            ("address", address),
            ("listening", listeners),
            (
                "data dir",
                f"{render.home_relative(info['data_dir'])} (db {render.size(info['db_bytes'])})",
            ),
            ("store", _store(out, info.get("store"))),
            ("you", _person(info)),
            ("peers", f"{counts['peers']} connected, {counts['away']} away"),
            ("messages", f"{counts['messages']} stored, {counts['unread']} unread"),
            ("locks", str(counts["locks"])),
            ("events", f"{counts['events']} (last #{counts['last_seq']})"),
            (
                "clients",
                f"{_count(counts['connections'], 'connection')}, "
                f"{counts['subscribers']} following events",
            ),
            ("lifetime", lifetime_text),
            ("warm process", _warm(warm)),
        ]
    )


def _warm(warm: dict[str, Any] | None) -> str:
    """The warm process that agents' MCP servers are forked from, if one runs."""
    if warm is None:
        return "none running (the next agent session starts one)"
    text = f"pid {warm['pid']}"
    if warm.get("rss_bytes"):
        text += f", {render.size(warm['rss_bytes'])} resident"
    if isinstance(warm.get("idle_exit_s"), int | float):
        text += f", exits {render.span(warm['idle_exit_s'])} after its last session"
    return text


def _lifetime(info: dict[str, Any]) -> str:
    """Which kind of broker runs, and so how long it lives (rule 1)."""
    lifetime = info.get("lifetime")
    idle = info.get("idle_exit_s")
    if lifetime == "service":
        return "a user service (socket activation): the service manager starts and stops it"
    if lifetime == "idle-exit" and idle is not None:
        return (
            f"idle exit, as agents start one: exits {render.span(idle)} after its last "
            "connection closes (`slm-mesh start` then keeps one running)"
        )
    return "runs until `slm-mesh stop`"


def _store(out: Output, store: dict[str, Any] | None) -> str:
    """Where the mesh is kept: the SQLite file, or the shared PostgreSQL store (its URL
    without a password, the mesh, this machine's name, the lease) and whether it answers."""
    if store is None:
        return "-"
    if store.get("kind") == "sqlite":
        return f"SQLite {render.home_relative(store.get('path'))}"
    text = (
        f"PostgreSQL {store.get('url')}, mesh {store.get('mesh')}, "
        f"this machine {store.get('host')}, lease {render.span(store.get('lease_s') or 0)}: "
    )
    if store.get("available"):
        return text + out.paint("reachable", GREEN)
    return text + out.paint(
        f"UNREACHABLE ({store.get('reason')}): calls fail until it is back; "
        f"retry in {render.span(store.get('retry_after') or 1)}",
        RED,
        BOLD,
    )


def _person(info: dict[str, Any]) -> str:
    """The person at the shell: name, id and unread messages (``slm-mesh inbox``)."""
    person = info.get("person") or {}
    text = f"{person.get('name')} (peer id {person.get('peer_id')})"
    unread = int(person.get("unread") or 0)
    if unread:
        text += f", {_count(unread, 'unread message')}: `slm-mesh inbox`"
    return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _listener(item: dict[str, Any]) -> str:
    if item.get("kind") == "unix":
        return f"unix:{item.get('path')}"
    return f"tcp:{item.get('host')}:{item.get('port')}"


# -- stop ------------------------------------------------------------------------------


def stop(out: Output, timeout: float) -> int:
    """Ask the broker to stop and wait until it has (rule 2); ask the warm process to stop
    too (rule 4)."""
    settings = load_settings()
    try:
        client = connect(settings)
    except CliError:
        warm = warm_process.stop(settings)
        if warm is None:
            raise
        _say_warm_stopped(out, warm, {"stopped": False, "pid": None})
        return OK
    with client:
        pid = client.call("mesh.status")["pid"]
        client.call("mesh.shutdown")
    deadline = time.monotonic() + timeout
    while instance_lock_held(settings):
        if time.monotonic() >= deadline:
            raise CliError(
                f"the broker (pid {pid}) was asked to stop but still runs after {timeout:g} s; "
                f"see {settings.log_path}",
                FAILED,
            )
        time.sleep(STOP_POLL_S)
    if not out.as_json:
        out.line(f"stopped broker pid {pid}")
    warm = warm_process.stop(settings)
    _say_warm_stopped(out, warm, {"stopped": True, "pid": pid})
    _note_socket_activation(out)
    return OK


def _say_warm_stopped(out: Output, warm: dict[str, Any] | None, doc: dict[str, Any]) -> None:
    if out.as_json:
        out.json({**doc, "warm_pid": warm["pid"] if warm else None})
        return
    if warm is None:
        return
    if warm["stopped"]:
        out.line(f"stopped the warm process pid {warm['pid']}")
    else:
        sessions = warm["sessions"]
        out.line(
            f"the warm process pid {warm['pid']} takes no new session and exits once its "
            f"{sessions} agent session{'s' if sessions != 1 else ''} end"
        )


def _note_socket_activation(out: Output) -> None:
    """A systemd socket unit starts the broker again on the next connection: say so."""
    from slm_mesh.cli import cmd_service, units

    if cmd_service.default_platform() != "systemd":
        return
    if (cmd_service.target_dir("systemd", None) / units.SOCKET_UNIT).exists():
        out.note(
            f"{units.SOCKET_UNIT} is installed: systemd starts the broker again on the next "
            f"connection (`systemctl --user stop {units.SOCKET_UNIT}` keeps it stopped)"
        )


def instance_lock_held(settings: Settings) -> bool:
    """Whether a process holds the broker's instance lock (probing without keeping it)."""
    try:
        fd = try_flock(settings.lock_path, create=False)
    except FileNotFoundError:
        return False
    if fd is None:
        return True
    os.close(fd)  # drops the lock we just took
    return False


# -- clean -----------------------------------------------------------------------------


def clean(out: Output, dry_run: bool) -> int:
    """Remove the files a dead broker left behind (rule 3), and the session files of
    ``lock acquire`` holders whose process is gone."""
    settings = load_settings()
    removed: list[str] = []
    kept: list[dict[str, str]] = []
    for path in shell_sessions.stale_holders(settings):
        _remove(path, dry_run, removed)
    held, lock_fd = _take_instance_lock(settings)
    pid = _read_pid(settings.pid_path) if held else None
    if not held:
        try:
            _clean_broker_files(settings, dry_run, removed, kept)
        finally:
            if lock_fd is not None:
                os.close(lock_fd)
    if out.as_json:
        out.json({"broker_running": held, "pid": pid, "removed": removed, "kept": kept})
        return OK
    verb = "would remove" if dry_run else "removed"
    for name in removed:
        out.line(f"{verb} {name}")
    for item in kept:
        out.line(f"kept {item['path']}: {item['reason']}")
    if held:
        out.line(f"a broker is running (pid {pid or '?'}): its files are left alone")
    elif not removed and not kept:
        out.line("nothing to clean")
    return OK


def _clean_broker_files(
    settings: Settings, dry_run: bool, removed: list[str], kept: list[dict[str, str]]
) -> None:
    sock = settings.socket_path
    if sock.exists() or sock.is_symlink():
        if socket_answers(sock):
            kept.append(
                {
                    "path": str(sock),
                    "reason": "something answers on it (a broker of another data dir, "
                    "or a systemd socket unit)",
                }
            )
        else:
            _remove(sock, dry_run, removed)
    for path in (settings.pid_path, settings.port_path, settings.token_path):
        if path.exists():
            _remove(path, dry_run, removed)


def _take_instance_lock(settings: Settings) -> tuple[bool, int | None]:
    """``(True, None)`` when a broker holds the instance lock; else ``(False, fd)`` with the
    lock now held through ``fd`` (None when there is no lock file at all)."""
    try:
        fd = try_flock(settings.lock_path, create=False)
    except FileNotFoundError:
        return False, None
    except PermissionError as exc:
        raise unreachable(permission_problem(settings) or str(exc)) from None
    return (True, None) if fd is None else (False, fd)


def _remove(path: Path, dry_run: bool, removed: list[str]) -> None:
    if not dry_run:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    removed.append(str(path))


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
