"""``slm-mesh top``: the live screen (textual).

Layout, top to bottom: a two-line header (the broker, then counts and figures), the peers,
the locks beside the messages, the events, and a footer of keys. The panes share the
height equally and their columns fit their width (:mod:`slm_mesh.top.columns`), so 80×24
and 200×50 both lay out. Data comes from :class:`slm_mesh.top.feed.Feed`, which runs as a
worker on the app's event loop; the screen redraws what changed at most every
:data:`REDRAW_S`, and every second for the relative times.

Leaving always restores the terminal: ``q``, Ctrl+C (a key while the app has the terminal)
and SIGINT, SIGTERM and SIGHUP all end the app through its own exit, and textual restores
the terminal after an exception too. A broker top can't read (an older slm-mesh) ends it
through its exit too, with status 1, and what to do is said once the terminal is back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult, ScreenStackError
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.timer import Timer
from textual.widgets import Footer, Input, Static

from slm_mesh.client.aio import ConnectionLost
from slm_mesh.config import Settings
from slm_mesh.protocol.errors import MeshError
from slm_mesh.top import cells
from slm_mesh.top.dialogs import (
    DIALOG_CSS,
    KEYS_HELP,
    ConfirmRelease,
    MessageDialog,
    TextPanel,
)
from slm_mesh.top.feed import Feed, IncompatibleBroker, NotConnected
from slm_mesh.top.model import PANES, MeshView
from slm_mesh.top.panes import Pane, Row

REDRAW_S = 0.05  # after a quiet while, a change is drawn this soon (a burst at once)
REDRAW_EVERY_S = 0.25  # under a stream of events, the screen is redrawn this often
TICK_S = 1.0  # relative times ("3 min", "expires in 8 min") move this often
FLASH_S = 5.0  # what an action did stays in the header this long
MAX_ROWS = 50  # rows a pane lists (the newest messages and events): each costs a redraw

TITLES = {"peers": "Peers", "locks": "Locks", "messages": "Messages", "events": "Events"}
STATUS_STYLE = {"active": "green", "busy": "yellow", "idle": "dim", "away": "dim red"}
EVENT_STYLE = {
    "peer_joined": "green",
    "peer_left": "dim",
    "message_sent": "cyan",
    "lock_acquired": "yellow",
    "lock_expired": "red",
}

CSS = """
#header {
    height: 2; padding: 0 1; background: $panel; text-wrap: nowrap; text-overflow: ellipsis;
}
#header.stopped { background: $error; color: $text; }
#middle { height: 1fr; }
Pane {
    height: 1fr; width: 1fr;
    border-top: solid $primary-darken-2; border-title-align: left;
    scrollbar-size-vertical: 1; overflow-x: hidden;
}
Pane:focus { border-top: heavy $accent; border-title-style: bold; }
.no-colour Pane > .datatable--cursor { text-style: reverse; }
.no-colour Pane > .datatable--header { text-style: bold underline; }
#filter { dock: bottom; height: 1; border: none; padding: 0 1; display: none; }
#filter.shown { display: block; }
"""


class TopApp(App[int]):
    """The whole screen. ``settings`` says which broker to watch."""

    TITLE = "slm-mesh top"
    ENABLE_COMMAND_PALETTE = False
    CSS = CSS + DIALOG_CSS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "quit"),
        Binding("ctrl+c", "quit", "quit", show=False, priority=True),
        Binding("question_mark", "help", "help", key_display="?"),
        Binding("slash", "filter", "filter", key_display="/"),
        Binding("m", "message(False)", "message"),
        Binding("M", "message(True)", "to all", show=False),
        Binding("r", "release", "release lock"),
        Binding("i", "details", "peer info"),
        Binding("escape", "clear_filter", "clear filter", show=False),
        *(Binding(str(n), f"focus_pane('{pane}')", show=False) for n, pane in enumerate(PANES, 1)),
    ]

    def __init__(self, settings: Settings) -> None:
        # NO_COLOR (https://no-color.org): textual would only turn colours grey; with the
        # terminal's own colours it drops them all, and the cursor is shown in reverse.
        self.no_colour = bool(os.environ.get("NO_COLOR"))
        super().__init__(ansi_color=True if self.no_colour else None)
        self.settings = settings
        self.view = MeshView()
        self.feed = Feed(settings, self.view, self.changed)
        self.needle = ""
        self._redraw_pending = False
        self._last_redraw = 0.0
        self._flash: tuple[str, bool] | None = None
        self._flash_timer: Timer | None = None
        self.fatal: IncompatibleBroker | None = None  # why the app ended by itself

    # -- building ----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield Pane("peers", TITLES["peers"])
        with Horizontal(id="middle"):
            yield Pane("locks", TITLES["locks"])
            yield Pane("messages", TITLES["messages"], follow_head=True)
        yield Pane("events", TITLES["events"], follow_head=True)
        yield Input(id="filter", placeholder="filter every pane; Enter keeps it, Esc clears it")
        yield Footer()

    def on_mount(self) -> None:
        if self.no_colour:
            self.screen.add_class("no-colour")
        if not self.is_headless:  # a test's Pilot: the signals are the test runner's
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
                loop.add_signal_handler(signum, self.exit)
        self.pane("peers").focus()
        self.set_interval(TICK_S, self.tick)
        self.run_worker(self.follow(), name="feed", exit_on_error=True)
        self.redraw()

    async def follow(self) -> None:
        """The feed, until the app ends, or it finds a broker it can't read (then the app
        ends with status 1 and :func:`run` says why)."""
        try:
            await self.feed.run()
        except IncompatibleBroker as exc:
            self.fatal = exc
            self.exit(1)

    def pane(self, name: str) -> Pane:
        return self.query_one(f"#{name}", Pane)

    # -- drawing -----------------------------------------------------------------------

    def changed(self) -> None:
        """The model changed: redraw soon, at most every :data:`REDRAW_EVERY_S` (a redraw
        of a pane costs ~1 ms a row, and a busy mesh sends hundreds of events a second)."""
        if not self._redraw_pending:
            self._redraw_pending = True
            now = time.monotonic()
            delay = max(REDRAW_S, self._last_redraw + REDRAW_EVERY_S - now)
            self.set_timer(delay, self.redraw)

    def _can_draw(self) -> bool:
        try:
            return self.is_running and bool(self.screen.query("#header"))
        except ScreenStackError:
            return False

    def tick(self) -> None:
        self.view.dirty.update(("header", "peers", "locks"))
        self.redraw()

    def redraw(self) -> None:
        self._redraw_pending = False
        self._last_redraw = time.monotonic()
        if not self._can_draw():
            return  # a timer that fired while the app is closing: nothing left to draw on
        dirty = self.view.take_dirty()
        now = time.time()
        if "header" in dirty:
            self.draw_header()
        for name in PANES:
            if name in dirty:
                rows = self.rows(name, now)
                if self.needle:
                    rows = [row for row in rows if row.matches(self.needle)]
                rows = rows[:MAX_ROWS]
                pane = self.pane(name)
                pane.show(rows)
                shown = f" {len(rows)} of {self.total(name)}" if self.needle else ""
                pane.border_title = f"{TITLES[name]}{shown}"

    def total(self, name: str) -> int:
        sizes = {
            "peers": len(self.view.peers),
            "locks": len(self.view.locks),
            "messages": len(self.view.messages),
            "events": len(self.view.events),
        }
        return sizes[name]

    def rows(self, name: str, now: float) -> list[Row]:
        view = self.view
        names = {peer_id: str(peer.get("name")) for peer_id, peer in view.peers.items()}
        if name == "peers":
            peers = sorted(view.peers.values(), key=lambda p: str(p.get("name")))
            # Every peer has its broker's host: worth a column's room only in a mesh of
            # several machines (a shared store).
            several = len({p.get("host") for p in peers if p.get("host")}) > 1
            return [
                Row(
                    p["peer_id"],
                    cells.peer_row(p, now, several),
                    ("bold", "", "", STATUS_STYLE.get(str(p.get("status")), ""), "bold"),
                )
                for p in peers
            ]
        if name == "locks":
            locks = sorted(view.locks.values(), key=lambda lk: (lk["path"], lk["peer_id"]))
            return [
                Row(
                    f"{lk['path']}\0{lk['peer_id']}",
                    cells.lock_row(lk, names, now),
                    ("", "yellow" if lk.get("mode") == "exclusive" else "", "bold"),
                )
                for lk in locks
            ]
        if name == "messages":
            return [
                Row(
                    str(msg["seq"]),
                    cells.message_row(msg, names),
                    ("dim", "magenta" if msg.get("to") == "all" else ""),
                )
                for msg in view.messages
            ]
        return [
            Row(str(ev["seq"]), cells.event_row(ev), ("dim", EVENT_STYLE.get(ev["type"], "")))
            for ev in view.events
        ]

    def flash(self, text: str, *, error: bool = False) -> None:
        """Say ``text`` in the header, in place of the figures, for :data:`FLASH_S`."""
        self._flash = (text, error)
        if self._flash_timer is not None:
            self._flash_timer.stop()
        self._flash_timer = self.set_timer(FLASH_S, self.unflash)
        self.view.dirty.add("header")
        self.redraw()

    def unflash(self) -> None:
        self._flash = None
        self._flash_timer = None
        self.view.dirty.add("header")
        self.redraw()

    def draw_header(self) -> None:
        view = self.view
        socket = cells.socket_text(self.settings.socket_path)
        uptime = None
        if view.status is not None:
            uptime = float(view.status["uptime_s"]) + (time.monotonic() - view.status_at)
        first = Text.assemble(
            ("slm-mesh top  ", "bold"),
            cells.broker_line(view.status, uptime, view.connected, view.problem, socket),
        )
        second = Text(
            cells.figures_line(
                list(view.peers.values()),
                len(view.locks),
                view.status if view.connected else None,
                view.calls_per_s(),
                view.messages_per_min(time.time()),
            )
        )
        if self._flash is not None:
            said, error = self._flash
            second = Text(said, style="bold reverse" if error else "bold")
        header = self.query_one("#header", Static)
        header.set_class(not view.connected, "stopped")
        header.update(Text("\n").join((first, second)))  # cut by the CSS, never wrapped

    # -- keys --------------------------------------------------------------------------

    def action_focus_pane(self, name: str) -> None:
        self.pane(name).focus()

    def action_help(self) -> None:
        self.push_screen(TextPanel("Keys", KEYS_HELP))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.focus()

    @on(Input.Changed, "#filter")
    def filter_changed(self, event: Input.Changed) -> None:
        self.needle = event.value.strip().casefold()
        self.view.dirty.update(PANES)
        self.redraw()

    @on(Input.Submitted, "#filter")
    def filter_kept(self) -> None:
        box = self.query_one("#filter", Input)
        if not box.value.strip():
            box.remove_class("shown")
        self.pane("peers").focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("shown")
        if self.focused is box:
            self.pane("peers").focus()

    def selected_peer(self) -> dict[str, Any] | None:
        key = self.pane("peers").selected_key()
        return None if key is None else self.view.peers.get(key)

    def selected_lock(self) -> dict[str, Any] | None:
        key = self.pane("locks").selected_key()
        if key is None:
            return None
        path, _, peer_id = key.partition("\0")
        return self.view.locks.get((path, peer_id))

    def action_message(self, everyone: bool) -> None:
        peer = None if everyone else self.selected_peer()
        to = "all" if peer is None else str(peer["name"])

        def answered(answer: tuple[str, str] | None) -> None:
            if answer is not None:
                self.send_message(*answer)

        self.push_screen(MessageDialog(to), answered)

    @work(exclusive=False, group="actions")
    async def send_message(self, to: str, body: str) -> None:
        try:
            result = await self.feed.send(to, body)
        except (NotConnected, ConnectionLost, MeshError) as exc:
            self.flash(f"not sent: {exc}", error=True)
            return
        names = ", ".join(r["name"] for r in result.get("recipients", [])) or "nobody"
        self.flash(f"sent to {names}")

    def action_release(self) -> None:
        lock = self.selected_lock()
        if lock is None:
            self.flash("no lock selected (the Locks pane is empty)", error=True)
            return
        holder = lock.get("holder") or self.view.name_of(lock.get("peer_id"))
        question = f"Release {cells.lock_path(lock['path'])} held by {holder} ({lock['mode']})?"

        def answered(yes: bool | None) -> None:
            if yes:
                self.release_lock(lock["path"], str(lock["peer_id"]), str(holder))

        self.push_screen(ConfirmRelease(question), answered)

    @work(exclusive=False, group="actions")
    async def release_lock(self, path: str, peer_id: str, holder: str) -> None:
        try:
            result = await self.feed.release(path, peer_id)
        except (NotConnected, ConnectionLost, MeshError) as exc:
            self.flash(f"not released: {exc}", error=True)
            return
        if result.get("released"):
            self.flash(f"released {cells.lock_path(path)}; {holder} was told")
        else:
            self.flash(f"{holder} no longer held {cells.lock_path(path)}", error=True)

    def action_details(self) -> None:
        peer = self.selected_peer()
        if peer is None:
            self.flash("no peer selected", error=True)
            return
        body = cells.peer_details(peer, list(self.view.locks.values()), time.time())
        self.push_screen(TextPanel(f"Peer {peer.get('name')}", body))


def run(settings: Settings) -> int:
    """Run the screen until the person quits; the exit status.

    Raises:
        IncompatibleBroker: the broker is one top can't read (raised once the terminal is
            back, for the caller to say).
    """
    app = TopApp(settings)
    app.run()
    if app.fatal is not None:
        raise app.fatal
    return app.return_code or 0
