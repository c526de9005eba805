"""A pane of ``slm-mesh top``: a table whose columns fit its width and whose rows are
replaced wholesale at every redraw, keeping the selected row selected."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from slm_mesh.top.columns import GAP, PANE_COLUMNS, cut, fit, needed

SCROLLBAR = 1  # the vertical scrollbar's column, always kept free


@dataclass(frozen=True)
class Row:
    key: str
    cells: tuple[str, ...]
    styles: tuple[str, ...] = ()

    def matches(self, needle: str) -> bool:
        return any(needle in cell.casefold() for cell in self.cells)


class Pane(DataTable[Text]):
    """One of the four panes: ``peers``, ``locks``, ``messages`` or ``events``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # Rows, not columns: Home and End go to the first and the last row.
        Binding("home", "scroll_top", "first row", show=False),
        Binding("end", "scroll_bottom", "last row", show=False),
    ]

    def __init__(self, name: str, title: str, *, follow_head: bool = False) -> None:
        super().__init__(id=name, cursor_type="row", cell_padding=0, show_cursor=True)
        self.follow_head = follow_head
        self.border_title = title
        self.spec = PANE_COLUMNS[name]
        self.widths: list[int] = []
        self.room = 0  # columns for the cells, once laid out
        self.rows_shown: Sequence[Row] = ()

    def on_resize(self, event: events.Resize) -> None:
        self.room = max(event.size.width - SCROLLBAR, len(self.spec) * 2)
        self.show(self.rows_shown)

    def _fit(self, rows: Sequence[Row]) -> None:
        """Columns for the width and the rows: rebuilt only when their widths change."""
        widths = fit(self.spec, self.room, needed(self.spec, [row.cells for row in rows]))
        if widths == self.widths:
            return
        self.widths = widths
        self.clear(columns=True)
        for column, width in zip(self.spec, widths, strict=True):
            self.add_column(Text(column.heading(width)), width=width + GAP, key=column.label)

    def show(self, rows: Sequence[Row]) -> None:
        """Replace the rows, keeping the cursor on the same key where it still is."""
        self.rows_shown = rows
        if not self.room:
            return  # not laid out yet: the first resize shows them
        # A log (messages, events: newest first) follows its head while the cursor is on
        # it, like tail -f; a cursor moved down to an older row stays on that row.
        following = self.follow_head and self.cursor_row <= 0
        selected = None if following else self.selected_key()
        self._fit(rows)
        self.clear()
        for row in rows:
            cells = [
                Text(
                    cut(text, width, column),
                    style=row.styles[i] if i < len(row.styles) else "",
                    no_wrap=True,
                )
                for i, (text, width, column) in enumerate(
                    zip(row.cells, self.widths, self.spec, strict=True)
                )
            ]
            self.add_row(*cells, key=row.key)
        keys = [row.key for row in rows]
        if selected in keys:
            self.move_cursor(row=keys.index(selected), animate=False)

    def selected_key(self) -> str | None:
        """The key of the row under the cursor, or None for an empty pane."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value
        return None if key is None else str(key)
