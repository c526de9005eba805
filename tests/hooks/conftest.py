"""Running ``slm-mesh hook`` as the agents run it: ``python -I -S .../hooks/run.py EVENT``,
JSON on stdin, against a real broker process in the test's data dir.

An agent is a process standing in for Claude Code, Codex…: the hooks find their session by
its pid (``SLM_MESH_AGENT_PID``, the same variable a launcher sets), and a session tied to
it ends when it exits. Every process a test starts is stopped by its pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import slm_mesh.hooks
from slm_mesh.config import Settings
from tests.wire import broker_env, broker_process

RUN = Path(slm_mesh.hooks.__file__).with_name("run.py")
HOOK_BOUND_S = 30.0


def hook_argv(event: str, agent: str = "claude") -> list[str]:
    """The command line the installer writes for one hook."""
    return [sys.executable, "-I", "-S", str(RUN), event, "--agent", agent]


@dataclass
class Agent:
    """A stand-in agent process and the hooks it runs."""

    settings: Settings
    cwd: Path
    proc: subprocess.Popen[bytes]
    kind: str = "claude"
    session_id: str = "session-1"
    env_extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def env(self) -> dict[str, str]:
        env = broker_env(self.settings, SLM_MESH_AGENT_PID=str(self.pid))
        env.update(self.env_extra)
        return env

    def payload(self, event: str, **fields: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "session_id": self.session_id,
            "transcript_path": str(self.cwd / "transcript.jsonl"),
            "cwd": str(self.cwd),
            "hook_event_name": event,
        }
        base.update(fields)
        return base

    def run(
        self, event: str, payload: dict[str, Any] | bytes | None = None, **fields: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run one hook to its end, as the agent would."""
        data = payload if payload is not None else self.payload(event, **fields)
        stdin = data if isinstance(data, bytes) else json.dumps(data).encode()
        done = subprocess.run(
            hook_argv(event, self.kind),
            input=stdin,
            capture_output=True,
            env=self.env(),
            cwd=self.cwd,
            timeout=HOOK_BOUND_S,
            check=False,
        )
        return subprocess.CompletedProcess(
            done.args, done.returncode, done.stdout.decode(), done.stderr.decode()
        )

    def output(self, event: str, **fields: Any) -> dict[str, Any] | None:
        """Run a hook that must exit 0; its JSON answer, None when it printed nothing."""
        done = self.run(event, **fields)
        assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
        return json.loads(done.stdout) if done.stdout.strip() else None

    def start(self, event: str, **fields: Any) -> subprocess.Popen[bytes]:
        """Start a hook that runs on (the Stop hook's waiter); stop it with :func:`ended`."""
        read, write = os.pipe()  # the whole input is there at once, as the agents write it
        with os.fdopen(write, "wb") as pipe:
            pipe.write(json.dumps(self.payload(event, **fields)).encode())
        try:
            return subprocess.Popen(
                hook_argv(event, self.kind),
                stdin=read,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env(),
                cwd=self.cwd,
            )
        finally:
            os.close(read)


def context_of(answer: dict[str, Any] | None) -> str:
    """The additionalContext of a Claude-format answer ("" without one)."""
    if answer is None:
        return ""
    return str(answer["hookSpecificOutput"].get("additionalContext", ""))


@contextlib.contextmanager
def agent_process(settings: Settings, cwd: Path, kind: str = "claude") -> Iterator[Agent]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], stdin=subprocess.DEVNULL
    )
    try:
        yield Agent(settings, cwd, proc, kind)
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def work(tmp_short: Path) -> Path:
    """A git repository to work in (a .git folder and HEAD are all the hooks read)."""
    repo = tmp_short / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / ".git" / "HEAD").write_text("ref: refs/heads/feature\n")
    (repo / "src").mkdir()
    return repo


@pytest.fixture
def broker(settings: Settings) -> Iterator[subprocess.Popen[bytes]]:
    with broker_process(settings) as proc:
        yield proc


@pytest.fixture
def agent(settings: Settings, work: Path) -> Iterator[Agent]:
    with agent_process(settings, work) as a:
        yield a


@pytest.fixture
def other(settings: Settings, work: Path) -> Iterator[Agent]:
    """A second agent in the same repository."""
    with agent_process(settings, work) as a:
        a.session_id = "session-2"
        yield a
