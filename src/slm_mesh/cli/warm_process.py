"""The warm process as the shell sees it: ``status`` shows it, ``stop`` stops it.

The warm process (:mod:`slm_mesh.zygote.warm`) keeps an MCP server's imports loaded and
forks one server per agent session; it holds ``zygote.lock`` while it serves and says its
pid and idle exit in ``zygote.json``. Stopping it asks it to retire: it takes no new
session and exits once the sessions it serves have ended (it never kills an agent's
server). Stdlib only: ``slm-mesh status`` imports this on its fast path.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from typing import Any

from slm_mesh.config import Settings
from slm_mesh.pids import alive
from slm_mesh.private_files import try_flock
from slm_mesh.zygote import wire

RETIRE_TIMEOUT_S = 5.0
POLL_S = 0.02


def running(settings: Settings) -> dict[str, Any] | None:
    """``{pid, rss_bytes, idle_exit_s}`` of the warm process of this data dir, or None
    when none runs (nobody holds its lock). ``rss_bytes`` is None where /proc is not."""
    if not _lock_held(settings):
        return None
    try:
        info = json.loads((settings.data_dir / wire.INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    pid = info.get("pid") if isinstance(info, dict) else None
    if not isinstance(pid, int):
        return None
    return {"pid": pid, "rss_bytes": _rss_bytes(pid), "idle_exit_s": info.get("idle_exit_s")}


def stop(settings: Settings, timeout: float = RETIRE_TIMEOUT_S) -> dict[str, Any] | None:
    """Ask the warm process to retire; ``{pid, sessions, stopped}`` (``stopped``: it has
    exited; else it does once its ``sessions`` end), or None when none runs."""
    found = running(settings)
    if found is None:
        return None
    path = wire.socket_path(settings.socket_path)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(path)
            wire.send(conn, {"op": "retire"})
            answer, _fds = wire.receive_with_fds(conn)
    except OSError:
        return None  # it exited meanwhile
    sessions = int((answer or {}).get("sessions") or 0)
    deadline = time.monotonic() + timeout
    while sessions == 0 and alive(found["pid"]) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    return {"pid": found["pid"], "sessions": sessions, "stopped": not alive(found["pid"])}


def _lock_held(settings: Settings) -> bool:
    try:
        fd = try_flock(settings.data_dir / wire.LOCK_FILE, create=False)
    except OSError:
        return False
    if fd is None:
        return True
    os.close(fd)
    return False


def _rss_bytes(pid: int) -> int | None:
    path = f"/proc/{pid}/status"
    with contextlib.suppress(OSError, ValueError, IndexError), open(path, "rb") as status:
        for line in status:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    return None
