"""The text of ``slm-mesh top``'s screen: columns that fit any width, cells that never
take more than one line, and the header's words and figures."""

from __future__ import annotations

from typing import Any

import pytest

from slm_mesh.cli.render import width_of
from slm_mesh.top import cells
from slm_mesh.top.columns import GAP, LOCKS, MESSAGES, PANE_COLUMNS, PEERS, cut, fit, needed

NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("name", "width"),
    [
        *((name, width) for name in ("peers", "events") for width in (79, 80, 199, 200)),
        *((name, width) for name in ("locks", "messages") for width in (39, 40, 99, 100)),
    ],
)
def test_the_columns_of_every_pane_fill_its_width_exactly(name: str, width: int) -> None:
    # 80×24 gives the peers and events 79 columns (one is the scrollbar's), the locks
    # and the messages half of that; 200×50 gives them 199 and 99.
    columns = PANE_COLUMNS[name]
    widths = fit(columns, width)
    assert sum(widths) + GAP * len(columns) == width
    assert all(w >= c.least for w, c in zip(widths, columns, strict=True))


def test_a_narrow_pane_shares_its_room_and_a_wide_one_gives_the_rest_to_the_flexible_column() -> (
    None
):
    narrow = dict(zip((c.label for c in PEERS), fit(PEERS, 79), strict=True))
    assert narrow["SUMMARY"] >= 20  # the summary stays readable at 80 columns
    wide = dict(zip((c.label for c in PEERS), fit(PEERS, 199), strict=True))
    assert all(wide[c.label] == c.comfortable for c in PEERS if not c.flex)
    assert wide["SUMMARY"] > 100
    locks = dict(zip((c.label for c in LOCKS), fit(LOCKS, 200), strict=True))
    assert locks["PATH"] > 100  # in the locks pane the path is what grows


def test_columns_take_only_what_their_cells_need() -> None:
    rows = [("bob", "codex", "r", "active", "", "1s", "x")]
    widths = fit(PEERS, 80, needed(PEERS, rows))
    assert widths[:2] == [PEERS[0].least, PEERS[1].least]  # "bob", "codex" need no more
    assert widths[-1] > fit(PEERS, 80)[-1]  # the summary gets what they did not take


def test_a_heading_too_long_for_its_column_is_shortened() -> None:
    unread = PEERS[4]
    assert unread.heading(6) == "UNREAD"
    assert unread.heading(3) == "UNR"
    assert MESSAGES[2].heading(5) == "TEXT"


def test_cells_are_cut_to_one_line_and_paths_keep_their_file_name() -> None:
    assert cut("refactoring the auth module", 12, PEERS[6]) == "refactoring…"
    assert cut("/home/u/repo/src/auth/session.ts", 13, LOCKS[0]) == "…h/session.ts"
    assert cut("line one\nline two", 40, PEERS[6]) == "line one line two"
    cut_wide = cut("名前名前名前", 5, PEERS[0])
    assert width_of(cut_wide) <= 5


def test_a_peer_row_says_where_it_works_and_for_how_long() -> None:
    peer = {
        "peer_id": "ab12",
        "name": "backend",
        "agent": "claude-code",
        "git_root": "/home/u/shop",
        "git_branch": "auth",
        "status": "active",
        "unread": 2,
        "joined_at": NOW - 300,
        "summary": "fixing\n  login",
    }
    assert cells.peer_row(peer, NOW) == (
        "backend",
        "claude-code",
        "shop (auth)",
        "active",
        "2",
        "5m",
        "fixing login",
    )
    away = {**peer, "status": "away", "last_seen": NOW - 12, "unread": 0}
    row = cells.peer_row(away, NOW)
    assert (row[4], row[5]) == ("", "away 12s")
    assert cells.where({"cwd": "/tmp/scratch", "host": "build-1"}) == "build-1:scratch"
    on_two_hosts = cells.peer_row({**peer, "host": "build-1"}, NOW, with_host=True)
    assert on_two_hosts[2] == "build-1:shop (auth)"
    assert cells.peer_row({**peer, "host": "build-1"}, NOW)[2] == "shop (auth)"


def test_a_lock_row_shows_its_holder_expiry_and_waiters() -> None:
    lock = {
        "path": "/r/src/a.ts",
        "peer_id": "ab12",
        "holder": "backend",
        "mode": "exclusive",
        "expires_at": NOW + 480,
        "waiters": 2,
    }
    assert cells.lock_row(lock, {}, NOW) == ("/r/src/a.ts", "excl", "backend", "8m", "2")
    shared = {**lock, "mode": "shared", "holder": None, "waiters": 0}
    assert cells.lock_row(shared, {"ab12": "bob"}, NOW)[1:3] == ("shared", "bob")


def test_a_message_row_names_both_ends_and_marks_broadcasts() -> None:
    one: dict[str, Any] = {"from_name": "cli", "to": "ab12", "to_name": "backend"}
    one.update(preview="stop", sent_at=NOW)
    assert cells.message_row(one, {})[1:] == ("cli → backend", "stop")
    everyone = {"from_name": "ui", "to": "all", "recipients": ["a", "b"], "type": "alert"}
    assert cells.message_row({**everyone, "sent_at": NOW}, {})[1:] == ("ui → all (2)", "[alert] ")


def test_the_header_counts_and_figures() -> None:
    peers = [{"status": "active"}, {"status": "away"}, {"status": "busy"}]
    status = {
        "counts": {"unread": 4},
        "activity": {"per_minute": {"calls": [0, 5, 10], "messages": [0, 0, 0]}},
    }
    line = cells.figures_line(peers, 1, status, 12.345, 0.5)
    assert line == ("3 peers (1 away) · 1 lock · 4 unread · 0.5 msg/min ▁▁▁ · 12 calls/s ▁▅█")
    assert cells.figures_line([], 0, None, None, None) == "0 peers · 0 locks"


def test_the_broker_line_says_when_the_broker_is_gone() -> None:
    up = cells.broker_line({"pid": 42}, 7_200.0, True, None, "/run/b.sock")
    assert up == "broker 42 · up 2h · /run/b.sock"
    person = {"pid": 42, "person": {"name": "dave", "unread": 2}}
    assert cells.broker_line(person, 5.0, True, None, "/b.sock").endswith(" · you: dave (2 unread)")
    down = cells.broker_line({"pid": 42}, None, False, "broker stopped", "/run/b.sock")
    assert down.startswith("broker stopped · waiting for it")
    cut_off = {"pid": 42, "store": {"kind": "postgresql", "available": False}}
    assert cells.broker_line(cut_off, 5.0, True, None, "/b.sock") == (
        "broker 42 · SHARED STORE OUT OF REACH: calls fail · /b.sock"
    )


def test_sparklines_scale_to_their_largest_value() -> None:
    assert cells.sparkline([0, 2, 4, 6, 8]) == "▁▃▅▆█"
    assert cells.sparkline([0, 0]) == "▁▁"
    assert cells.sparkline([]) == ""
