"""The dialogs of ``slm-mesh top``: write a message, confirm a release, a peer's details,
the keys. Each is a modal screen that answers with a value (or None when cancelled)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

DIALOG_CSS = """
ModalScreen { align: center middle; }
ModalScreen > Vertical {
    width: 78; max-width: 100%; height: auto; max-height: 100%;
    border: round $accent; padding: 0 1; background: $surface;
}
ModalScreen Input { border: none; height: 1; padding: 0; margin: 0 0 1 0; }
ModalScreen .hint { color: $text-muted; }
"""

KEYS_HELP = """\
Tab Shift+Tab  next / previous pane   1-4  peers locks messages events
↑ ↓ PgUp PgDn  Home End: in a pane    /    filter (Esc clears it)
m              message selected peer  M    message everyone
r              release the selected lock (asks first; its holder is told)
i              the selected peer's details
?              this help              q    quit (Ctrl+C too)"""


class MessageDialog(ModalScreen[tuple[str, str] | None]):
    """Who to (a peer name or id, or ``all``) and what; Enter sends, Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "cancel")]

    def __init__(self, to: str) -> None:
        super().__init__()
        self.to = to

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Message (from you, the person at the shell)", style="bold"))
            yield Static("To (a peer's name, or all):", classes="hint")
            yield Input(self.to, id="to")
            yield Static("Message:", classes="hint")
            yield Input(id="body", placeholder="what to tell them")
            yield Static("Enter sends · Esc cancels", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#body", Input).focus()

    @on(Input.Submitted, "#to")
    def next_field(self) -> None:
        self.query_one("#body", Input).focus()

    @on(Input.Submitted, "#body")
    def send(self) -> None:
        to = self.query_one("#to", Input).value.strip()
        body = self.query_one("#body", Input).value
        if not to or not body.strip():
            self.app.bell()
            return
        self.dismiss((to, body))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmRelease(ModalScreen[bool]):
    """``y`` releases, ``n`` or Esc does not."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "release"),
        Binding("n,escape", "answer(False)", "keep"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.question, style="bold"))
            yield Static(
                "The holder is told by a message, and the event log records that you released it.",
                classes="hint",
            )
            yield Static(Text("y: release · n: keep it"))

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class TextPanel(ModalScreen[None]):
    """A block of text (a peer's details, the keys); any key closes it."""

    def __init__(self, title: str, body: str) -> None:
        super().__init__()
        self.title_text = title
        self.body = body

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.title_text, style="bold"))
            yield Static(Text(self.body))
            yield Static("any key closes", classes="hint")

    def on_key(self) -> None:
        self.dismiss(None)

    def on_click(self) -> None:
        self.dismiss(None)
