"""Lock paths: normalisation and whether two patterns can name the same file.

Rules:
1. A path is made absolute against the caller's cwd and normalised (``..``, ``.``, repeated
   slashes), so ``src/../src/a.ts`` and ``/repo/src/a.ts`` are one lock.
2. A pattern may use ``*`` (within one path segment), ``?``, ``[...]`` and ``**`` (any number
   of whole segments). Without those characters it is a plain path.
3. Two patterns overlap when some path matches both. This is decided exactly (an
   intersection of two regular languages, segment by segment), so ``src/*.ts`` and
   ``src/*.py`` don't overlap while ``src/**`` and ``src/a/*.ts`` do. A ``[...]`` class is
   taken as able to match any character (conservative: it can only add overlaps).
"""

from __future__ import annotations

import posixpath
from functools import lru_cache

_GLOB_CHARS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)


def normalise(path: str, cwd: str | None) -> str:
    """Absolute, normalised form of ``path`` (taken against ``cwd`` when relative).

    Raises:
        ValueError: ``path`` is relative and there is no ``cwd`` to take it against, or empty.
    """
    if not path:
        raise ValueError("path is empty")
    if not posixpath.isabs(path):
        if not cwd or not posixpath.isabs(cwd):
            raise ValueError("a relative path needs an absolute cwd")
        path = posixpath.join(cwd, path)
    out = posixpath.normpath(path)
    # normpath keeps a leading '//' (POSIX allows it a meaning); we don't.
    return "/" + out.lstrip("/")


def _tokens(segment: str) -> tuple[str, ...]:
    """Split a segment into single-character tokens: a literal char, '?', '*' or '[]'."""
    out: list[str] = []
    i = 0
    while i < len(segment):
        c = segment[i]
        if c == "[":
            end = segment.find("]", i + 2)
            if end > 0:
                out.append("[]")
                i = end + 1
                continue
        out.append(c)
        i += 1
    return tuple(out)


def _char_compatible(a: str, b: str) -> bool:
    return a == b or a in ("?", "[]") or b in ("?", "[]")


@lru_cache(maxsize=4096)
def _segments_intersect(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Can one string match both token sequences (``*`` = any run of characters)?"""
    if not a and not b:
        return True
    if a and a[0] == "*":
        # '*' matches nothing, or swallows the first character of a string matching b.
        if _segments_intersect(a[1:], b):
            return True
        # (When b starts with '*' too, dropping b's '*' covers every remaining case.)
        return bool(b) and _segments_intersect(a, b[1:])
    if b and b[0] == "*":
        return _segments_intersect(b, a)
    if not a or not b:
        return False
    return _char_compatible(a[0], b[0]) and _segments_intersect(a[1:], b[1:])


def _segment_match(a: str, b: str) -> bool:
    if a == b:
        return True
    return _segments_intersect(_tokens(a), _tokens(b))


@lru_cache(maxsize=4096)
def _paths_intersect(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Like :func:`_segments_intersect` one level up: segments instead of characters and
    ``**`` (any number of segments) instead of ``*``."""
    if not a and not b:
        return True
    if a and a[0] == "**":
        if _paths_intersect(a[1:], b):
            return True
        return bool(b) and _paths_intersect(a, b[1:])
    if b and b[0] == "**":
        return _paths_intersect(b, a)
    if not a or not b:
        return False
    return _segment_match(a[0], b[0]) and _paths_intersect(a[1:], b[1:])


def overlaps(a: str, b: str) -> bool:
    """True if some path matches both normalised patterns ``a`` and ``b``."""
    if a == b:
        return True
    if not is_glob(a) and not is_glob(b):
        return False
    return _paths_intersect(tuple(a.split("/")), tuple(b.split("/")))


def matches(pattern: str, path: str) -> bool:
    """True if the plain ``path`` matches ``pattern``."""
    return overlaps(pattern, path)
