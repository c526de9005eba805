"""``slm-mesh top`` in a real terminal (tmux), against a real broker process, with sessions
joining, locking and talking beside it, and a person pressing keys.

Every test starts its own tmux server (socket in its temp dir) and stops it by its pid.
How fast changes reach the screen is measured by ``bench/top.py``, not asserted here.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from slm_mesh.client.blocking import BlockingClient
from slm_mesh.config import Settings
from tests import outside
from tests.top.terminal import Terminal, terminal
from tests.wire import PERSON, broker_env, broker_process

pytestmark = pytest.mark.needs("tmux")

TOP = f"{sys.executable} -m slm_mesh top; echo EXITED $?"
# SGR parameters that set a colour: 30-37, 38;…, 40-47, 48;…, 90-97, 100-107.
COLOUR_SGR = re.compile(r"\x1b\[(?:[\d;]*;)?(?:3[0-8]|4[0-8]|9[0-7]|10[0-7])(?:;[\d;]*)?m")


@pytest.fixture
def broker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    with broker_process(settings) as proc:
        yield proc


@pytest.fixture
def term(settings: Settings, tmp_short: Path) -> Iterator[Terminal]:
    # HOME in the temp dir: nothing is written to the real one, and paths under it read ~/….
    env = broker_env(settings, HOME=str(tmp_short))
    env.pop("NO_COLOR", None)
    with terminal(outside.require("tmux"), tmp_short, env) as t:
        yield t


@contextlib.contextmanager
def session(settings: Settings, name: str, **params: Any) -> Iterator[BlockingClient]:
    client = BlockingClient.connect(settings)
    try:
        client.call("peer.register", {"name": name, "cwd": "/repo", **params})
        yield client
    finally:
        client.close()


def locks_pane(screen: str) -> str:
    """The rows of the Locks pane: under its title, left of the Messages, above Events."""
    lines = screen.split("\n")
    top = next(i for i, line in enumerate(lines) if "Locks" in line and "Messages" in line)
    end = next(i for i, line in enumerate(lines) if "Events" in line)
    split = lines[top].index("Messages")
    return "\n".join(line[:split] for line in lines[top + 1 : end])


def start_top(term: Terminal) -> None:
    term.run(TOP)
    term.wait_for(" · up ")


_marks = itertools.count(1)


def ended(text: str, times: int) -> Callable[[str], bool]:
    return lambda screen: screen.count(text) == times


def assert_left_usable(term: Terminal, status: int = 0) -> None:
    """Back at the prompt, out of the alternate screen, mouse reporting off, cursor
    shown, and what is typed is echoed and run."""
    term.wait_for(f"EXITED {status}")
    assert term.flags()["alternate"] == "0"
    assert term.flags()["mouse"] == "0"
    assert term.flags()["cursor"] == "1"
    mark = f"usable{next(_marks)}"
    term.run(f"echo {mark[:3]}''{mark[3:]}")  # the answer, not the echoed command line
    term.wait_until(lambda screen: f"\n{mark}\n" in screen, "the shell to answer")


def test_top_follows_the_mesh_in_80x24_and_after_a_resize_in_200x50(
    settings: Settings, broker: subprocess.Popen[bytes], term: Terminal
) -> None:
    start_top(term)
    with session(settings, "backend", agent="claude-code", git_branch="auth") as agent:
        term.wait_for("backend")
        agent.call("peer.update", {"summary": "refactoring the login flow"})
        term.wait_for("refactoring the")
        agent.call("lock.acquire", {"path": "src/session.ts"})
        term.wait_for("/repo/src/session.ts")
        agent.call("lock.release", {"path": "src/session.ts"})
        term.wait_for("lock_released")
        term.wait_until(lambda s: "session.ts" not in locks_pane(s), "the lock to go")
        agent.call("message.send", {"to": "backend", "body": "note to self"})
        screen = term.wait_for("note to self")
        lines = screen.split("\n")[:-1]
        assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
        assert any("Locks" in line and "Messages" in line for line in lines)  # side by side
        assert lines[-1].lstrip().startswith("q quit")

        term.resize(200, 50)
        screen = term.wait_for("refactoring the login flow")  # whole, in a wider column
        lines = screen.split("\n")[:-1]
        assert len(lines) == 50 and all(len(line) <= 200 for line in lines)
        assert any("Locks" in line and "Messages" in line for line in lines)
    term.wait_for("backend is away")
    term.keys("q")
    assert_left_usable(term)


def test_m_messages_a_peer_and_r_releases_its_lock_after_asking(
    settings: Settings, broker: subprocess.Popen[bytes], term: Terminal
) -> None:
    with session(settings, "backend") as agent:
        agent.call("lock.acquire", {"path": "src/session.ts"})
        start_top(term)
        term.wait_for("/repo/src/session.ts")
        term.keys("m")
        term.wait_for("Message (from you")
        term.type("please stop editing session.ts")
        term.keys("Enter")
        term.wait_for("sent to backend")
        method, message = next(agent.notifications(timeout=10))
        assert method == "message"
        assert (message["body"], message["from_name"]) == ("please stop editing session.ts", PERSON)

        term.keys("2", "r")
        term.wait_for("held by backend (exclusive)?")
        term.keys("n")
        term.wait_until(lambda s: "held by backend" not in s, "the question to go")
        assert agent.call("lock.list")["locks"] != []
        term.keys("r")
        term.wait_for("held by backend (exclusive)?")
        term.keys("y")
        term.wait_for("backend was told")
        assert agent.call("lock.list")["locks"] == []
        method, told = next(agent.notifications(timeout=10))
        assert told["type"] == "alert" and "released your exclusive lock" in told["body"]
    term.keys("q")
    assert_left_usable(term)


def test_ctrl_c_and_signals_leave_the_terminal_usable(
    broker: subprocess.Popen[bytes], term: Terminal
) -> None:
    for n, how in enumerate(("ctrl-c", "SIGTERM", "SIGHUP", "SIGINT"), 1):
        start_top(term)
        if how == "ctrl-c":
            term.keys("C-c")  # a key to the app, which has the terminal in raw mode
        else:
            os.kill(term.child_of_shell(), getattr(signal, how))
        term.wait_until(ended("EXITED 0", n), f"top to end on {how}")
        assert_left_usable(term)


def test_a_killed_broker_shows_as_stopped_and_top_comes_back_with_a_new_one(
    settings: Settings, term: Terminal
) -> None:
    with broker_process(settings) as first:
        start_top(term)
        term.wait_for(f"broker {first.pid}")
        first.kill()
        first.wait(timeout=10)
        term.wait_for("broker stopped")
    with broker_process(settings) as second:
        term.wait_for(f"broker {second.pid}")
        term.keys("q")
        assert_left_usable(term)


def test_with_no_broker_top_waits_for_one(settings: Settings, term: Terminal) -> None:
    term.run(TOP)
    term.wait_for("no broker running")
    with broker_process(settings) as proc:
        term.wait_for(f"broker {proc.pid}")
        term.keys("q")
        assert_left_usable(term)


@contextlib.contextmanager
def fake_broker(settings: Settings, **env: str) -> Iterator[None]:
    """A stand-in broker that answers every call with a hello (``mesh.status`` with
    ``FAKE_BROKER_STATUS`` when given): nothing top reads is in it."""
    fake = Path(__file__).parents[1] / "client" / "fake_broker_process.py"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    env = broker_env(settings, SLM_MESH_SOCKET=str(settings.socket_path), **env)
    proc = subprocess.Popen(
        [sys.executable, str(fake), "--idle-exit", "60"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "listening\n"
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_an_incompatible_broker_is_said_plainly_with_the_terminal_left_usable(
    settings: Settings, term: Terminal
) -> None:
    # top's first mesh.status has no counts: an older broker, not a bug in top.
    with fake_broker(settings):
        term.run(f"SLM_MESH_SOCKET={settings.socket_path} {TOP}")
        term.wait_for("EXITED 1")
        screen = term.screen().replace("\n", "")  # the line wraps at 80 columns
        assert "slm-mesh: error: incompatible broker (version fake;" in screen
        assert "upgrade or restart it" in screen
        assert "Traceback" not in screen
        assert_left_usable(term, status=1)


def test_an_error_inside_top_leaves_the_terminal_usable(settings: Settings, term: Terminal) -> None:
    # A status top can read, then answers it can't: the KeyError ends the app with a
    # traceback, from the alternate screen.
    status = {"pid": 1, "version": "fake", "uptime_s": 1.0, "counts": {"last_seq": 0}}
    with fake_broker(settings, FAKE_BROKER_STATUS=json.dumps(status)):
        term.run(f"SLM_MESH_SOCKET={settings.socket_path} {TOP}")
        term.wait_for("EXITED 1")
        assert "KeyError" in term.screen()
        assert_left_usable(term, status=1)


def test_no_color_gets_no_colours(
    settings: Settings, broker: subprocess.Popen[bytes], term: Terminal
) -> None:
    with session(settings, "backend"):
        term.run(f"NO_COLOR=1 {TOP}")
        term.wait_for("backend")
        assert COLOUR_SGR.search(term.screen(escapes=True)) is None
        term.keys("q")
        assert_left_usable(term)
        # The same screen in colour has colours: the check above can fail.
        term.run(TOP)
        term.wait_for("backend")
        assert COLOUR_SGR.search(term.screen(escapes=True)) is not None
        term.keys("q")
        term.wait_until(lambda s: s.count("EXITED 0") == 2, "the second exit")


def test_a_busy_mesh_fits_in_80x24(
    settings: Settings, broker: subprocess.Popen[bytes], term: Terminal, tmp_short: Path
) -> None:
    """The README's screen: three agents at work, and the person stepping in. With
    ``TOP_SCREEN_OUT=FILE`` set, the screen is written there."""
    shop, web = tmp_short / "shop", tmp_short / "shop" / "web"
    with (
        session(
            settings, "backend", agent="claude-code", cwd=str(shop), git_root=str(shop),
            git_branch="auth-jwt", summary="moving sessions to JWT, then the login flow",
        ) as backend,
        session(
            settings, "frontend", agent="codex", cwd=str(web), git_root=str(shop),
            git_branch="settings", summary="settings page: wiring the new API",
        ) as frontend,
        session(
            settings, "reviewer", agent="cursor", cwd=str(tmp_short / "docs"),
            summary="reviewing PR 214",
        ) as reviewer,
    ):  # fmt: skip
        backend.call("lock.acquire", {"path": "src/auth/session.ts", "reason": "JWT"})
        frontend.call("lock.acquire", {"path": "src/settings/**", "mode": "shared"})
        reviewer.call("lock.acquire", {"path": "api.md"})
        frontend.call("peer.update", {"status": "busy"})
        reviewer.call("message.send", {"to": "all", "body": "schema v2.1 lands at 3 pm: rebase"})
        backend.call("message.send", {"to": "frontend", "body": "login API returns a JWT now"})
        start_top(term)
        term.keys("2", "r")
        term.wait_for("held by reviewer")
        term.keys("y")
        term.wait_for("reviewer was told")
        term.keys("1", "m")
        term.wait_for("Message (from you")
        term.type("hold the session.ts refactor until 3 pm")
        term.keys("Enter")
        term.wait_for("sent to backend")
        term.keys("escape")
        screen = term.wait_until(lambda s: "sent to backend" not in s, "the note to go")
    lines = screen.split("\n")[:-1]
    assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
    for seen in ("backend", "frontend", "reviewer", "session.ts", "settings/**", "schema v2"):
        assert seen in screen
    assert f"{PERSON} released reviewer's lock" in screen
    out = os.environ.get("TOP_SCREEN_OUT")
    if out:
        Path(out).write_text(screen, encoding="utf-8")
