"""Newline-delimited framing with a hard cap on line length.

Rules:
1. A line is the bytes up to (not including) ``\\n``; an optional ``\\r`` before it is dropped.
2. A line longer than ``max_line_bytes`` is never buffered whole: as soon as the buffer
   passes the cap without a newline, :class:`LineTooLong` is produced once and every byte up
   to the next ``\\n`` is discarded. The stream then carries on with the next line. Where
   the chunks of a stream are cut never changes which lines pass.
3. Empty lines (keep-alives, stray newlines from ``socat``) are skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A line went past the cap; its bytes were dropped."""

    limit: int


class LineBuffer:
    """Turns a stream of byte chunks into lines, bounded by ``max_line_bytes``."""

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already known to hold no newline
        self._discarding = False

    @property
    def buffered(self) -> int:
        """Bytes held, waiting for their newline (never more than the cap + one chunk)."""
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[bytes | LineTooLong]:
        """Add ``data``; yield each complete line (or :class:`LineTooLong`) it finishes."""
        self._buf += data
        while True:
            nl = self._buf.find(b"\n", self._scanned)
            if nl < 0:
                if self._discarding:
                    self._buf.clear()
                    self._scanned = 0
                elif self._past_cap():
                    self._buf.clear()
                    self._scanned = 0
                    self._discarding = True
                    yield LineTooLong(self.max_line_bytes)
                else:
                    self._scanned = len(self._buf)
                return
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            self._scanned = 0
            if self._discarding:
                self._discarding = False
                continue
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_line_bytes:
                yield LineTooLong(self.max_line_bytes)
                continue
            if line.strip():
                yield line

    def _past_cap(self) -> bool:
        """The unfinished line can no longer fit. A line of exactly the cap may still be
        followed by ``\\r\\n``, and the ``\\n`` may come in a later chunk (rule 1)."""
        n, cap = len(self._buf), self.max_line_bytes
        return n > cap + 1 or (n == cap + 1 and not self._buf.endswith(b"\r"))
