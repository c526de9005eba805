"""What the CLI prints: aligned tables, relative times, colour, JSON.

Rules:
1. Colour only when the stream is a terminal, ``NO_COLOR`` is unset (or empty) and ``TERM``
   is not ``dumb`` (https://no-color.org). Piped output is plain text.
2. ``--json`` output is one JSON document on stdout (``indent=2``, keys in the order the
   command builds them); a streaming command (``events --follow``) prints one compact JSON
   value per line instead. Human output never goes through the JSON path and vice versa.
3. Diagnostics go to stderr prefixed ``slm-mesh:``, so stdout stays parseable.
4. Times from the broker are seconds since the epoch; they are shown relative to now
   ("3 min ago", "expires in 8 min").
"""

from __future__ import annotations

import json
import os
import sys
import time
import unicodedata
from collections.abc import Sequence
from typing import Any, TextIO

PROG = "slm-mesh"

# SGR codes
BOLD = "1"
DIM = "2"
RED = "31"
GREEN = "32"
YELLOW = "33"
CYAN = "36"


def use_colour(stream: TextIO) -> bool:
    """Whether to colour what goes to ``stream`` (rule 1)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def width_of(text: str) -> int:
    """Columns ``text`` takes on a terminal (wide East Asian characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def truncate(text: str, columns: int) -> str:
    """``text`` on one line, cut to ``columns`` with an ellipsis when longer."""
    text = " ".join(text.split())
    if width_of(text) <= columns:
        return text
    out = ""
    for c in text:
        if width_of(out + c) > columns - 1:
            break
        out += c
    return out + "…"


def span(seconds: float) -> str:
    """A duration for people: ``42 s``, ``8 min``, ``3 h``, ``2 days``."""
    seconds = abs(seconds)
    if seconds < 90:
        return f"{round(seconds)} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600)} h"
    return f"{round(seconds / 86400)} days"


def ago(ts: float | None, now: float | None = None) -> str:
    """``ts`` relative to now: ``just now``, ``3 min ago``, ``in 8 min``."""
    if ts is None:
        return "-"
    delta = (time.time() if now is None else now) - ts
    if abs(delta) < 1.5:
        return "just now"
    return f"{span(delta)} ago" if delta > 0 else f"in {span(delta)}"


def expires(ts: float | None, now: float | None = None) -> str:
    """``expires in 8 min`` / ``expired 3 s ago`` / ``never``."""
    if ts is None:
        return "never"
    delta = ts - (time.time() if now is None else now)
    return f"expires in {span(delta)}" if delta >= 0 else f"expired {span(delta)} ago"


def clock(ts: float) -> str:
    """A local wall-clock time, ``14:03:27``."""
    return time.strftime("%H:%M:%S", time.localtime(ts))


def size(n: int) -> str:
    """Bytes for people: ``812 B``, ``1.2 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def home_relative(path: str | None) -> str:
    """``path`` with the home directory written ``~``."""
    if not path:
        return "-"
    home = os.path.expanduser("~")
    if home != "/" and (path == home or path.startswith(home + os.sep)):
        return "~" + path[len(home) :]
    return path


def terminal_columns(stream: TextIO) -> int:
    """The width to fit tables in: the terminal's, or a generous 160 when piped."""
    try:
        if stream.isatty():
            return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        pass
    return 160


class Output:
    """Where one command writes, and how (``--json`` or human, colour or not)."""

    def __init__(
        self, as_json: bool, stdout: TextIO | None = None, stderr: TextIO | None = None
    ) -> None:
        self.as_json = as_json
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.colour = use_colour(self.stdout)
        self.err_colour = use_colour(self.stderr)

    # -- styling ---------------------------------------------------------------------

    def paint(self, text: str, *codes: str) -> str:
        """``text`` in SGR ``codes`` when stdout is coloured."""
        codes = tuple(c for c in codes if c)
        if not self.colour or not codes:
            return text
        return f"\x1b[{';'.join(codes)}m{text}\x1b[0m"

    # -- writing ---------------------------------------------------------------------

    def json(self, value: Any) -> None:
        """One JSON document (rule 2)."""
        self.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
        self.stdout.flush()

    def json_line(self, value: Any) -> None:
        """One compact JSON value on its own line, flushed (for streams)."""
        self.stdout.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n")
        self.stdout.flush()

    def line(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def note(self, text: str) -> None:
        """A diagnostic on stderr (rule 3)."""
        self.stderr.write(f"{PROG}: {text}\n")
        self.stderr.flush()

    def error(self, text: str) -> None:
        """An error on stderr, in red on a terminal."""
        prefix = f"{PROG}: error:"
        if self.err_colour:
            prefix = f"\x1b[{RED};{BOLD}m{prefix}\x1b[0m"
        self.stderr.write(f"{prefix} {text}\n")
        self.stderr.flush()

    def table(
        self,
        headers: Sequence[str],
        rows: Sequence[Sequence[str]],
        *,
        styles: Sequence[Sequence[str]] | None = None,
    ) -> None:
        """Aligned columns under bold headers; the last column is cut to the terminal."""
        self.stdout.write(
            format_table(
                headers,
                rows,
                styles=styles if self.colour else None,
                columns=terminal_columns(self.stdout),
                header_style=(BOLD,) if self.colour else (),
            )
        )
        self.stdout.flush()

    def fields(self, pairs: Sequence[tuple[str, str]]) -> None:
        """``key  value`` lines with the values aligned."""
        pad = max((width_of(k) for k, _ in pairs), default=0)
        for key, value in pairs:
            label = key + " " * (pad - width_of(key))
            self.line(f"  {self.paint(label, DIM)}  {value}")


def format_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    styles: Sequence[Sequence[str]] | None = None,
    columns: int = 160,
    header_style: Sequence[str] = (),
) -> str:
    """The text of an aligned table (two spaces between columns, no trailing blanks).

    Args:
        styles: per cell SGR code ("" for none), same shape as ``rows``; None: plain.
        columns: the width the last column is cut to fit in.
    """
    cells = [list(headers)] + [[" ".join(str(c).split()) for c in row] for row in rows]
    ncols = len(headers)
    widths = [max(width_of(r[i]) for r in cells) for i in range(ncols)]
    used = sum(widths[:-1]) + 2 * (ncols - 1)
    last_room = max(columns - used, 12)
    widths[-1] = min(widths[-1], last_room)
    lines = []
    for index, row in enumerate(cells):
        parts = []
        for i, cell in enumerate(row):
            text = truncate(cell, widths[i]) if i == ncols - 1 else cell
            pad = "" if i == ncols - 1 else " " * (widths[i] - width_of(text))
            code: Sequence[str] = ()
            if index == 0:
                code = header_style
            elif styles is not None and styles[index - 1][i]:
                code = (styles[index - 1][i],)
            if code:
                text = f"\x1b[{';'.join(code)}m{text}\x1b[0m"
            parts.append(text + pad)
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"
