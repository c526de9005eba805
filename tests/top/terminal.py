"""A real terminal for tests: a tmux server of the test's own (its socket in the test's temp
dir, no config file), running an interactive bash in which the test types commands, and
whose screen it reads with ``capture-pane``. Stopped at the end by its pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.wire import alive

WAIT_S = 15.0
POLL_S = 0.02
PROMPT = "shell> "


class Terminal:
    """One tmux session of ``width`` × ``height`` running bash with ``env``."""

    def __init__(self, tmux: str, socket: Path, env: dict[str, str], cwd: Path) -> None:
        self.tmux = tmux
        self.socket = socket
        self.env = env
        self.cwd = cwd
        self.server_pid: int | None = None

    def _run(self, *args: str) -> str:
        done = subprocess.run(
            [self.tmux, "-f", "/dev/null", "-S", str(self.socket), *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    def start(self, width: int, height: int) -> None:
        self._run(
            "new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height),
            f"PS1='{PROMPT}' exec bash --norc --noprofile -i",
        )  # fmt: skip
        self.server_pid = int(self._run("display-message", "-p", "#{pid}").strip())
        self.wait_for(PROMPT.strip())

    def type(self, text: str) -> None:
        """Type ``text`` literally (no key names)."""
        self._run("send-keys", "-t", "t", "-l", text)

    def keys(self, *names: str) -> None:
        """Press keys by tmux's names: ``Enter``, ``Escape``, ``C-c``, ``q``…"""
        self._run("send-keys", "-t", "t", *names)

    def run(self, command: str) -> None:
        self.type(command)
        self.keys("Enter")

    def resize(self, width: int, height: int) -> None:
        self._run("resize-window", "-t", "t", "-x", str(width), "-y", str(height))

    def screen(self, *, escapes: bool = False) -> str:
        """The visible screen, a line per row (with ``escapes``: its SGR codes too)."""
        return self._run("capture-pane", "-p", "-t", "t", *(["-e"] if escapes else []))

    def lines(self) -> list[str]:
        return self.screen().split("\n")[:-1]

    def flags(self) -> dict[str, str]:
        """What the terminal is set to: alternate screen, mouse reporting, cursor shown."""
        fmt = "#{alternate_on} #{mouse_any_flag} #{cursor_flag} #{pane_width}x#{pane_height}"
        alternate, mouse, cursor, size = self._run("display-message", "-p", "-t", "t", fmt).split()
        return {"alternate": alternate, "mouse": mouse, "cursor": cursor, "size": size}

    def wait_for(self, text: str, timeout: float = WAIT_S) -> str:
        """The screen, once ``text`` is on it."""
        return self.wait_until(lambda screen: text in screen, f"{text!r}", timeout)

    def wait_until(
        self, condition: Callable[[str], bool], what: str, timeout: float = WAIT_S
    ) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if condition(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen}")
            time.sleep(POLL_S)  # a screen has no event to wait on: poll it, bounded

    def shell_pid(self) -> int:
        return int(self._run("display-message", "-p", "-t", "t", "#{pane_pid}").strip())

    def child_of_shell(self) -> int:
        """The pid of the command the shell runs in the foreground."""
        pid = self.shell_pid()
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        assert len(children) == 1, children
        return int(children[0])

    def stop(self) -> None:
        """Kill the server and wait until it and everything that ran in it are gone."""
        if self.server_pid is None:
            return
        pids = [self.server_pid, *_descendants(self.server_pid)]
        with contextlib.suppress(subprocess.SubprocessError):
            self._run("kill-server")
        deadline = time.monotonic() + 10
        for pid in pids:
            while alive(pid):
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    break
                time.sleep(POLL_S)


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in map(int, children):
        out += [child, *_descendants(child)]
    return out


@contextlib.contextmanager
def terminal(
    tmux: str, root: Path, env: dict[str, str], width: int = 80, height: int = 24
) -> Iterator[Terminal]:
    """A started :class:`Terminal` whose tmux socket is in ``root``; stopped at the end."""
    work = root / "term"
    work.mkdir(exist_ok=True)
    term = Terminal(tmux, root / "tmux.sock", {**env, "PS1": PROMPT}, work)
    try:
        term.start(width, height)
        yield term
    finally:
        term.stop()
