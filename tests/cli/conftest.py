"""Driving ``slm-mesh`` as a user would: a subprocess against a real broker process, in a
temp data dir, with every process it starts stopped by pid."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from slm_mesh.config import Settings
from tests.wire import broker_env, broker_process

CLI_TIMEOUT_S = 60.0


@dataclass
class Cli:
    """Runs ``python -m slm_mesh`` with the test's data dir, in ``cwd``."""

    settings: Settings
    cwd: Path
    extra_env: dict[str, str]

    def env(self, **extra: str) -> dict[str, str]:
        env = broker_env(self.settings)
        env.pop("NO_COLOR", None)
        env.update(self.extra_env)
        env.update(extra)
        return env

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "slm_mesh", *args]

    def run(
        self, *args: str, input: str | None = None, **extra_env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            env=self.env(**extra_env),
            cwd=self.cwd,
            input=input,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def ok(self, *args: str, **extra_env: str) -> str:
        """Run and require exit status 0; return stdout."""
        done = self.run(*args, **extra_env)
        assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
        return done.stdout

    def json(self, *args: str) -> Any:
        """Run with ``--json``, require exit 0, return the parsed document."""
        return json.loads(self.ok(*args, "--json"))

    def popen(self, *args: str, **extra_env: str) -> subprocess.Popen[str]:
        """Start the CLI in the background; read it with :func:`read_line_until` and end it
        with :func:`finish` (or let :func:`running` stop it)."""
        proc = subprocess.Popen(
            self.argv(*args),
            env=self.env(**extra_env),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        _readers[proc] = (LineReader(proc.stdout), LineReader(proc.stderr))
        return proc


@pytest.fixture
def cli(settings: Settings, tmp_short: Path) -> Cli:
    work = tmp_short / "work"
    work.mkdir()
    return Cli(settings, work, {})


@pytest.fixture
def broker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    with broker_process(settings) as proc:
        yield proc


@contextlib.contextmanager
def running(proc: subprocess.Popen[str]) -> Iterator[subprocess.Popen[str]]:
    """Stop ``proc`` by its pid at the end, whatever happened."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        finish(proc)


def finish(proc: subprocess.Popen[str], timeout: float = CLI_TIMEOUT_S) -> tuple[str, str]:
    """Wait for ``proc`` to exit; return what it wrote that was not read yet."""
    proc.wait(timeout=timeout)
    out, err = _readers[proc]
    return out.rest(timeout), err.rest(timeout)


class LineReader:
    """Lines of a process's stream, read by a thread so waiting for one can time out."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.ended = False
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        with stream:
            for line in stream:
                self.lines.put(line)
        self.lines.put(None)  # end of stream

    def until(self, wanted: str, timeout: float = 20.0) -> list[str]:
        """Lines up to and including the first containing ``wanted``."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                break
            if line is None:
                self.ended = True
                break
            seen.append(line)
            if wanted in line:
                return seen
        raise AssertionError(f"{wanted!r} not seen in time; got {seen!r}")

    def rest(self, timeout: float) -> str:
        """Everything left, up to the end of the stream."""
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while not self.ended:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            except queue.Empty:
                raise AssertionError(f"the stream did not end in time; got {out!r}") from None
            if line is None:
                self.ended = True
                break
            out.append(line)
        return "".join(out)


_readers: weakref.WeakKeyDictionary[subprocess.Popen[str], tuple[LineReader, LineReader]] = (
    weakref.WeakKeyDictionary()
)


def read_line_until(
    proc: subprocess.Popen[str], wanted: str, timeout: float = 20.0, *, stderr: bool = False
) -> list[str]:
    """Lines of ``proc``'s stdout (or stderr) up to and including the first containing
    ``wanted`` (later calls go on where the last one stopped)."""
    return _readers[proc][1 if stderr else 0].until(wanted, timeout)


def wait_until(predicate: Any, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true (every indefinite wait is bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop_detached(pid: int, timeout: float = 10.0) -> None:
    """Stop a broker this test made the CLI start in the background (not our child):
    SIGTERM, then wait until it is gone or a zombie nobody has reaped yet."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def has_fields(doc: dict[str, Any], names: Sequence[str]) -> None:
    """``doc`` has every documented field (fields may be added, never removed)."""
    missing = set(names) - set(doc)
    assert not missing, f"missing {sorted(missing)} in {sorted(doc)}"
