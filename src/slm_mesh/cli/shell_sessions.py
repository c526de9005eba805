"""Peer sessions the shell keeps between commands, as resume tokens in the data dir.

The CLI is anonymous (the person at the shell) for most calls, but a lock belongs to a peer
session, and a session lives only while its connection does (plus the grace period). Saving the
``resume_token`` lets a later command act for that session.

Rules:
1. A ``lock acquire`` holder saves ``lock-<peer_id>.json`` (``peer_id``, ``name``,
   ``resume_token``, ``pid``, ``path``, ``cwd``) while it holds its lock, and removes it
   when it lets go. ``lock release`` resumes that session to release the lock on its behalf;
   the holder sees the ``lock_released`` event and exits.
2. Files are 0600 in a 0700 folder: a resume token is a credential. A holder file whose
   process is gone is stale; ``clean`` removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from slm_mesh.config import Settings
from slm_mesh.pids import alive

FOLDER = "cli-sessions"


def folder(settings: Settings) -> Path:
    return settings.data_dir / FOLDER


def holder_path(settings: Settings, peer_id: str) -> Path:
    return folder(settings) / f"lock-{peer_id}.json"


def save(path: Path, record: dict[str, Any]) -> None:
    """Write ``record`` atomically, 0600 in a 0700 folder (rule 2)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(record).encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any] | None:
    """The record in ``path``, or None if it is missing or unreadable."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def holders(settings: Settings) -> list[tuple[Path, dict[str, Any]]]:
    """Every saved ``lock acquire`` holder session."""
    found = []
    for path in sorted(folder(settings).glob("lock-*.json")):
        record = load(path)
        if record is not None and isinstance(record.get("resume_token"), str):
            found.append((path, record))
    return found


def stale_holders(settings: Settings) -> list[Path]:
    """Holder files whose process is gone, or that can't be read (rule 2)."""
    stale = []
    for path in sorted(folder(settings).glob("lock-*.json")):
        record = load(path)
        pid = record.get("pid") if record else None
        if not isinstance(pid, int) or not alive(pid):
            stale.append(path)
    return stale
