"""Changing an agent's configuration file safely: parse errors with line and column, a
diff for ``--dry-run``, an atomic write with a backup of what was there.

Rules:
1. A file that cannot be parsed is refused, naming the line and column, and nothing is
   written. A missing file is an empty one.
2. JSON is written back in the file's own style: its indentation (2 spaces, 4, a tab…),
   key order, non-ASCII characters as they are, and its final newline or lack of one. A
   file written that way by the agent itself (``JSON.stringify(x, null, 2)``) keeps every
   byte that is not ours.
3. A write goes to a temporary file in the same folder, is flushed to disk and renamed over
   the old one; the old one is first copied to ``<name>.slm-mesh.bak``. An unchanged file
   is not written at all. A file that is a symlink stays one: the file it points to is
   written (renamed over) instead.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BACKUP_SUFFIX = ".slm-mesh.bak"


class ConfigError(Exception):
    """A configuration file can't be read or changed; the message says which and why."""


@dataclass
class Change:
    """One file's content before and after (``before`` None: the file did not exist)."""

    path: Path
    before: str | None
    after: str | None  # None: remove the file
    # The file's mode; None: an existing file keeps its own, a new one gets 0o644.
    mode: int | None = None

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def diff(self) -> str:
        old = (self.before or "").splitlines(keepends=True)
        new = (self.after or "").splitlines(keepends=True)
        lines = difflib.unified_diff(
            old,
            new,
            fromfile=str(self.path) if self.before is not None else "/dev/null",
            tofile=str(self.path) if self.after is not None else "/dev/null",
        )
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"can't read {path}: {exc}") from None


def parse_json(path: Path, text: str | None) -> dict[str, Any]:
    """The JSON object in ``text`` (``{}`` for a missing or empty file; rule 1)."""
    if text is None or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: line {exc.lineno}, column {exc.colno}: {exc.msg}; fix the file (or "
            "move it aside) and run this again: nothing was changed"
        ) from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: the file holds JSON, but not an object; nothing was changed")
    return value


def json_style(text: str | None) -> tuple[int | str, bool]:
    """The indentation of the first indented line and whether the file ends in a newline."""
    if not text or not text.strip():
        return 2, True
    for line in text.splitlines()[1:]:
        stripped = line.lstrip(" \t")
        if stripped and len(stripped) < len(line):
            lead = line[: len(line) - len(stripped)]
            return ("\t" if lead.startswith("\t") else len(lead)), text.endswith("\n")
    return 2, text.endswith("\n")


def dump_json(value: dict[str, Any], like: str | None) -> str | None:
    """``value`` in the style of ``like`` (rule 2); None (remove the file) when it is empty
    and there was no file before."""
    if not value and like is None:
        return None
    indent, newline = json_style(like)
    return json.dumps(value, indent=indent, ensure_ascii=False) + ("\n" if newline else "")


def apply(change: Change) -> Path | None:
    """Write ``change`` (rule 3); the backup's path, if there was a file before."""
    if not change.changed:
        return None
    backup = None
    if change.before is not None and change.path.exists():
        backup = change.path.with_name(change.path.name + BACKUP_SUFFIX)
        shutil.copy2(change.path, backup)
    # A symlink (settings kept in a dotfiles repository) stays one: its file is written.
    path = change.path.resolve() if change.path.is_symlink() else change.path
    if change.after is None:
        path.unlink(missing_ok=True)
        return backup
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = change.mode
    if mode is None:
        mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(change.after)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return backup
