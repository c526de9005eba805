"""How wide each column of each pane is, for any width of the pane.

Every column has a least and a comfortable width; the last column of a pane takes what is
left. On a narrow pane (80×24 splits the locks and messages in two halves of 40) columns
get their least width and short headings; on a wide one they grow to comfortable and the
last column gets the rest. Cells longer than their column are cut with an ellipsis, never
wrapped, so a row is always one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from slm_mesh.cli.render import truncate, width_of


@dataclass(frozen=True)
class Column:
    label: str
    least: int
    comfortable: int
    short: str = ""  # heading when the column is narrower than the label
    cut_left: bool = False  # keep the end (a path's file name), not the start
    flex: bool = False  # takes what is left once every column is comfortable

    def heading(self, width: int) -> str:
        if width_of(self.label) <= width:
            return self.label
        return truncate(self.short or self.label, width)


PEERS = (
    Column("NAME", 6, 12),
    Column("AGENT", 5, 11),
    Column("WHERE", 8, 22),
    Column("STATUS", 6, 6),
    Column("UNREAD", 3, 6, short="UNR"),
    Column("SINCE", 6, 8),
    Column("SUMMARY", 12, 12, flex=True),
)
LOCKS = (
    Column("PATH", 10, 10, cut_left=True, flex=True),
    Column("MODE", 6, 6),
    Column("HOLDER", 6, 14),
    Column("EXPIRES", 4, 7, short="EXP"),
    Column("WAIT", 1, 4, short="W"),
)
MESSAGES = (
    Column("TIME", 8, 8),
    Column("FROM → TO", 10, 24),
    Column("FIRST LINE", 10, 10, short="TEXT", flex=True),
)
EVENTS = (
    Column("TIME", 8, 8),
    Column("TYPE", 8, 13),
    Column("WHAT", 10, 10, flex=True),
)
PANE_COLUMNS = {"peers": PEERS, "locks": LOCKS, "messages": MESSAGES, "events": EVENTS}
GAP = 1  # blank columns after each cell
FLEX_SHARE = 2  # while others grow towards comfortable, the flexible column grows this fast
ROOMY = 24  # a flexible column this much over its least lends it for whole headings


def fit(columns: tuple[Column, ...], total: int, needed: Sequence[int] | None = None) -> list[int]:
    """Widths (without the gaps) for ``columns`` in ``total`` terminal columns (a pane
    narrower than its columns' least widths is cut at the right: never narrower than 80
    columns for the full-width panes, 40 for the halves).

    A column wants what its widest cell or heading ``needed`` (when given), at least its
    least width and at most its comfortable one. Every column gets its least width; what
    is left is handed out a column at a time in turn (the flexible one getting
    :data:`FLEX_SHARE` for each one the others get) until the others have what they
    want; the flexible column takes the rest.
    """
    room = total - GAP * len(columns)
    widths = [c.least for c in columns]
    wants = [
        max(c.least, min(c.comfortable, needed[i] if needed is not None else c.comfortable))
        for i, c in enumerate(columns)
    ]
    spare = room - sum(widths)
    flex = next((i for i, c in enumerate(columns) if c.flex), len(columns) - 1)
    growing = [i for i in range(len(columns)) if i != flex and wants[i] > widths[i]]
    while spare > 0 and growing:
        for i in [*growing, *[flex] * FLEX_SHARE]:
            if spare <= 0:
                break
            widths[i] += 1
            spare -= 1
            if i != flex and widths[i] >= wants[i]:
                growing.remove(i)
    widths[flex] += max(spare, 0)
    # Where the flexible column has room to spare, spell the short headings out.
    for i, column in enumerate(columns):
        grow = width_of(column.label) - widths[i]
        if i != flex and grow > 0 and widths[flex] - grow >= columns[flex].least + ROOMY:
            widths[i] += grow
            widths[flex] -= grow
    return widths


def needed(columns: tuple[Column, ...], rows: Sequence[Sequence[str]]) -> list[int]:
    """The width each column would need to show every cell and its (short) heading."""
    out = [width_of(c.short or c.label) for c in columns]
    for cells in rows:
        for i, text in enumerate(cells):
            out[i] = max(out[i], width_of(text))
    return out


def cut(text: str, width: int, column: Column) -> str:
    """``text`` in ``width`` columns: cut with an ellipsis at the end (or, for paths, at
    the start). Line breaks and runs of blanks become one space: a row is one line."""
    text = " ".join(text.split())
    if width_of(text) > width:
        if column.cut_left:
            kept = ""
            for ch in reversed(text):
                if width_of(ch + kept) > width - 1:
                    break
                kept = ch + kept
            text = "…" + kept
        else:
            text = truncate(text, width)
    return text
