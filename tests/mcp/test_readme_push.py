"""The README's example of an SDK client that receives pushes, run as written against a real
broker (issue 13, item 10)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from slm_mesh.client import BlockingClient
from slm_mesh.config import Settings
from tests.wire import broker_env, processes_in, stop_process

README = Path(__file__).resolve().parents[2] / "README.md"
BOUND_S = 60.0


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("**Push to a client built on the MCP Python SDK.**")
    return re.search(r"```python\n(.*?)```", text[start:], re.DOTALL).group(1)  # type: ignore[union-attr]


def test_the_readme_sdk_client_prints_the_messages_pushed_to_it(
    settings: Settings, tmp_short: Path
) -> None:
    script = tmp_short / "push_example.py"
    script.write_text(readme_example())
    env = broker_env(settings, SLM_MESH_NAME="watcher", SLM_MESH_NO_ZYGOTE="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # slm-mesh
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    try:
        deadline = time.monotonic() + BOUND_S
        watcher = None
        while watcher is None and time.monotonic() < deadline:
            try:
                with BlockingClient.connect(settings) as client:
                    peers = client.call("peer.list", {})["peers"]
            except Exception:  # the example's server has not started the broker yet
                peers = []
            watcher = next((p for p in peers if p["name"] == "watcher"), None)
            time.sleep(0.05)
        assert watcher is not None, "the example's session never joined"
        with BlockingClient.connect(settings) as client:
            client.call("message.send", {"to": "watcher", "body": "build is green"})
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line == f"{settings.person}: build is green\n"
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()
        stop_everything_in(settings.data_dir)


def stop_everything_in(data_dir: Path) -> None:
    """SIGTERM, by pid, the example's server and the broker it started; wait until gone."""
    deadline = time.monotonic() + 10
    while (pids := processes_in(data_dir)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM if time.monotonic() < deadline - 5 else signal.SIGKILL)
        time.sleep(0.05)
