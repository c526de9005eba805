"""The pure parts of the CLI's output: relative times, sizes, tables, colour rules."""

from __future__ import annotations

import io
from typing import Any

import pytest

from slm_mesh.cli import render
from slm_mesh.cli.cmd_events import describe
from slm_mesh.cli.cmd_lock import describe_holder
from slm_mesh.cli.workspace import lock_path

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("ts", "text"),
    [
        (NOW, "just now"),
        (NOW - 42, "42 s ago"),
        (NOW - 8 * 60, "8 min ago"),
        (NOW - 3 * 3600, "3 h ago"),
        (NOW - 3 * 86400, "3 days ago"),
        (NOW + 8 * 60, "in 8 min"),
        (None, "-"),
    ],
)
def test_times_are_relative_to_now(ts: float | None, text: str) -> None:
    assert render.ago(ts, NOW) == text


def test_expiry_reads_as_a_sentence() -> None:
    assert render.expires(NOW + 480, NOW) == "expires in 8 min"
    assert render.expires(NOW - 5, NOW) == "expired 5 s ago"
    assert render.expires(None, NOW) == "never"


def test_sizes_use_binary_units() -> None:
    assert render.size(812) == "812 B"
    assert render.size(1_258_291) == "1.2 MiB"
    assert render.size(104_448) == "102.0 KiB"


def test_tables_align_columns_and_cut_only_the_last() -> None:
    text = render.format_table(
        ["NAME", "STATUS", "SUMMARY"],
        [["backend", "active", "x" * 100], ["ui", "away", "short"]],
        columns=40,
    )
    lines = text.splitlines()
    assert lines[0] == "NAME     STATUS  SUMMARY"
    assert lines[1].startswith("backend  active  xxx") and lines[1].endswith("…")
    assert render.width_of(lines[1]) == 40
    assert lines[2] == "ui       away    short"


def test_wide_characters_count_double_in_tables() -> None:
    text = render.format_table(["A", "B"], [["日本", "x"], ["ab", "y"]])
    first, second = text.splitlines()[1:]
    assert render.width_of(first[: first.index("x")]) == 6
    assert render.width_of(second[: second.index("y")]) == 6


def test_cells_are_kept_on_one_line() -> None:
    text = render.format_table(["A", "B"], [["two\nlines", "tab\there"]])
    assert text.splitlines()[1] == "two lines  tab here"


def test_colour_needs_a_terminal_and_no_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert render.use_colour(Tty())
    assert not render.use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "")  # empty means unset (no-color.org)
    assert render.use_colour(Tty())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not render.use_colour(Tty())
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not render.use_colour(Tty())


def test_a_lock_holder_is_described_with_its_expiry() -> None:
    lock = {
        "holder": "backend",
        "agent": "claude-code",
        "mode": "exclusive",
        "expires_at": NOW + 480,
        "reason": "auth refactor",
        "peer_id": "ab12",
    }
    assert describe_holder(lock, NOW) == (
        "backend (claude-code), exclusive, expires in 8 min: auth refactor"
    )


def test_events_read_as_sentences() -> None:
    event = {"type": "peer_left", "data": {"name": "ui", "reason": "grace_expired"}}
    assert describe(event) == "ui left (grace_expired)"
    sent = {
        "type": "message_sent",
        "data": {"from": "cli", "from_name": "cli", "to": "all", "recipients": ["a", "b"]},
    }
    assert describe(sent) == "cli → all (2 peers), text"
    told = {
        "type": "message_sent",
        "data": {"from_name": "dave", "to": "ab12", "to_name": "backend", "preview": "stop"},
    }
    assert describe(told) == "dave → backend, text: stop"
    forced = {
        "type": "lock_released",
        "data": {"path": "/r/a", "holder": "backend", "reason": "forced", "released_by": "dave"},
    }
    assert describe(forced) == "dave released backend's lock on /r/a (forced)"
    where: dict[str, Any] = {"name": "codex", "status": "active", "summary": "", "cwd": "/s/sub"}
    moved = {"type": "peer_updated", "data": where}
    assert describe(moved) == "codex now in /s/sub"
    where.update(git_root="/s", git_branch="dev")
    assert describe(moved) == "codex now in /s/sub on branch dev"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("src/a.py", "/repo/src/a.py"),
        ("src/../lib//b.py", "/repo/lib/b.py"),
        ("/abs/c.py", "/abs/c.py"),
        ("src/**", "/repo/src/**"),
    ],
)
def test_lock_paths_are_made_absolute_like_the_broker_does(path: str, expected: str) -> None:
    assert lock_path(path, "/repo") == expected
