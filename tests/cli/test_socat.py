"""The socat one-liners the docs show, run exactly as written against a real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from slm_mesh.cli import manpages, shell_examples
from slm_mesh.cli.shell_examples import SEND, STATUS, WATCH
from slm_mesh.client import BlockingClient
from slm_mesh.config import Settings
from tests.cli.conftest import LineReader

pytestmark = pytest.mark.needs("socat")

REPO = Path(__file__).resolve().parents[2]


def shell_env(settings: Settings) -> dict[str, str]:
    """The user's shell after the docs' first line: SOCK says where the broker listens."""
    return {**os.environ, "SOCK": str(settings.socket_path)}


def run_one_liner(command: str, settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command],
        env=shell_env(settings),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_status_one_liner_prints_the_brokers_answer(
    broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    done = run_one_liner(STATUS.command, settings)
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()  # socat exits once the broker has answered
    answer = json.loads(line)
    assert answer["id"] == 1
    assert answer["result"]["pid"] == broker.pid


def test_the_send_one_liner_delivers_a_message(
    broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    with BlockingClient.connect(settings) as reviewer:
        reviewer.call("peer.register", {"name": "reviewer", "cwd": "/repo"})
        done = run_one_liner(SEND.command, settings)
        assert done.returncode == 0, done.stderr
        method, message = next(reviewer.notifications(timeout=10))
    answer = json.loads(done.stdout)
    assert answer["result"]["recipients"][0]["name"] == "reviewer"
    assert method == "message"
    assert message["body"] == "build is green"
    assert (message["from"], message["from_name"]) == ("person", settings.person)


def test_the_watch_one_liner_streams_events(
    broker: subprocess.Popen[bytes], settings: Settings
) -> None:
    proc = subprocess.Popen(
        ["bash", "-c", WATCH.command],
        env=shell_env(settings),
        stdin=subprocess.PIPE,  # what cat reads: the user's terminal
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: bash, cat and socat
    )
    assert proc.stdin is not None and proc.stdout is not None
    lines = LineReader(proc.stdout)
    try:
        (subscribed,) = lines.until('"id":1')
        assert "last_seq" in json.loads(subscribed)["result"]
        with BlockingClient.connect(settings) as other:
            other.call("state.set", {"key": "watched", "value": True})
        (pushed,) = lines.until('"watched"')
        note = json.loads(pushed)
        assert note["method"] == "event"
        assert note["params"]["type"] == "state_changed"
        assert note["params"]["data"]["key"] == "watched"
        proc.stdin.close()  # Ctrl-D: cat ends, socat closes its side, the broker hangs up
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        lines.rest(20)
        assert proc.stderr is not None
        proc.stderr.close()


def test_the_protocol_man_page_shows_the_one_liners() -> None:
    # The RST the page is made from; test_manpages checks the roff is current with it.
    rst = manpages.page_rst("slm-mesh-protocol.7", REPO / "man")
    assert f"::\n\n    {shell_examples.SOCKET_LINE}\n" in rst
    for example in shell_examples.EXAMPLES:
        assert f"::\n\n    {example.command}\n" in rst


def test_the_readme_shows_the_one_liners_as_the_tests_run_them() -> None:
    readme = (REPO / "README.md").read_text()
    assert shell_examples.SOCKET_LINE in readme
    for example in shell_examples.EXAMPLES:
        assert example.command in readme, example.title
