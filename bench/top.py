"""Benchmark of ``slm-mesh top`` as a person sees it: prints one JSON object.

    python bench/top.py [--rounds 10]
    python bench/top.py --starts 20    # only start to header, 20 times (p50, min, max)

A real broker and ``slm-mesh top`` in a real terminal (tmux, 80×24, its own server in a
temp dir); sessions join, change their summary, take and release a lock and send a
message, ``--rounds`` times each. Figures (milliseconds):

- ``appear_ms``: from the call's answer to the change on the screen (``capture-pane``
  polled every ~5 ms, which the figures include), p50 and max per kind of change.
  Target: every change on screen within 1,000 ms.
- ``start_ms``: from typing the command to the broker's pid in the header.
- ``cpu``: top's CPU (user+system, /proc) as a share of one core, idle for 5 s, and
  while sessions write 200 state keys a second (each an event it receives and lists).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slm_mesh.client.blocking import BlockingClient
from slm_mesh.config import Settings

TARGET_MS = 1_000.0
TICKS = os.sysconf("SC_CLK_TCK")


class Screen:
    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.base = ["tmux", "-f", "/dev/null", "-S", str(root / "tmux.sock")]
        self.env = env

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            [*self.base, *args], env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout

    def text(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "b")

    def wait(self, seen: Callable[[str], bool], timeout: float = 20.0) -> float:
        """Seconds until ``seen(screen)``; fails after ``timeout``."""
        start = time.monotonic()
        while not seen(self.text()):
            if time.monotonic() - start > timeout:
                raise SystemExit(f"not on screen in {timeout} s:\n{self.text()}")
            time.sleep(0.005)
        return time.monotonic() - start


def showing(text: str) -> Callable[[str], bool]:
    return lambda screen: text in screen


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def top_pid(screen: Screen) -> int:
    shell = int(screen.tmux("display-message", "-p", "-t", "b", "#{pane_pid}").strip())
    return int(Path(f"/proc/{shell}/task/{shell}/children").read_text().split()[0])


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"p50": round(statistics.median(ms), 1), "max": round(max(ms), 1)}


def setting_up(root: Path) -> tuple[Settings, dict[str, str]]:
    data = root / "d"
    settings = Settings(data_dir=data, socket_path=data / "broker.sock", tcp_port=0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLM_MESH_")}
    env.pop("XDG_RUNTIME_DIR", None)
    env.update(SLM_MESH_DATA_DIR=str(data), SLM_MESH_PORT="0", HOME=str(root), PS1="bench> ")
    return settings, env


def start_broker(settings: Settings, env: dict[str, str]) -> subprocess.Popen[bytes]:
    broker = subprocess.Popen(
        [sys.executable, "-m", "slm_mesh", "broker"], env=env, stdout=subprocess.DEVNULL
    )
    while not settings.socket_path.exists():
        time.sleep(0.01)
    return broker


def start_terminal(screen: Screen) -> None:
    screen.tmux(
        "new-session", "-d", "-s", "b", "-x", "80", "-y", "24",
        "PS1='bench> ' exec bash --norc --noprofile -i",
    )  # fmt: skip
    screen.wait(lambda s: "bench>" in s)


def start_top(screen: Screen, broker: subprocess.Popen[bytes], then: str = "") -> float:
    """Seconds from typing the command (and ``then``, a shell command to run after it) to
    the broker's pid in the header."""
    screen.tmux("send-keys", "-t", "b", "-l", f"{sys.executable} -m slm_mesh top{then}")
    screen.tmux("send-keys", "-t", "b", "Enter")
    return screen.wait(lambda s: f"broker {broker.pid}" in s)


def measure_starts(starts: int, root: Path) -> dict[str, Any]:
    """Start to header, ``starts`` times (quitting in between)."""
    settings, env = setting_up(root)
    broker = start_broker(settings, env)
    screen = Screen(root, env)
    try:
        start_terminal(screen)
        times = []
        for n in range(starts):
            mark = f"done{n}x"
            times.append(start_top(screen, broker, f"; echo {mark[:4]}''{mark[4:]}"))
            screen.tmux("send-keys", "-t", "b", "q")
            screen.wait(showing(f"\n{mark}"))  # top has quit: the shell goes on
            screen.tmux("send-keys", "-t", "b", "C-l")  # a clear screen for the next one
            screen.wait(lambda text: "done" not in text)
        ms = sorted(t * 1000 for t in times)
        return {
            "starts": starts,
            "start_ms": {
                "p50": round(statistics.median(ms), 1),
                "min": round(ms[0], 1),
                "max": round(ms[-1], 1),
            },
        }
    finally:
        subprocess.run([*screen.base, "kill-server"], env=env, capture_output=True, check=False)
        broker.terminate()
        broker.wait(timeout=10)


def measure(rounds: int, root: Path) -> dict[str, Any]:
    settings, env = setting_up(root)
    broker = start_broker(settings, env)
    screen = Screen(root, env)
    try:
        start_terminal(screen)
        start = start_top(screen, broker)
        appear: dict[str, list[float]] = {
            k: [] for k in ("join", "summary", "lock", "unlock", "message")
        }
        for n in range(rounds):
            client = BlockingClient.connect(settings)
            name = f"agent{n:02d}"
            steps: list[tuple[str, str, dict[str, Any], str]] = [
                ("join", "peer.register", {"name": name, "cwd": str(root)}, name),
                ("summary", "peer.update", {"summary": f"summary-{n:02d}"}, f"summary-{n:02d}"),
                ("lock", "lock.acquire", {"path": f"f{n:02d}.py"}, f"/f{n:02d}.py "),
                ("unlock", "lock.release", {"path": f"f{n:02d}.py"}, f"released ~/f{n:02d}.py"),
                ("message", "message.send", {"to": name, "body": f"note-{n:02d}"}, f"note-{n:02d}"),
            ]
            for kind, method, params, shown in steps:
                client.call(method, params)
                appear[kind].append(screen.wait(showing(shown)))
            client.call("peer.unregister")
            client.close()
        pid = top_pid(screen)
        before, t0 = cpu_s(pid), time.monotonic()
        time.sleep(5)
        idle = (cpu_s(pid) - before) / (time.monotonic() - t0)
        writer = BlockingClient.connect(settings)
        before, t0 = cpu_s(pid), time.monotonic()
        for i in range(1_000):
            writer.call("state.set", {"key": f"k{i % 50}", "value": i})
            time.sleep(max(0.0, t0 + (i + 1) / 200 - time.monotonic()))
        busy = (cpu_s(pid) - before) / (time.monotonic() - t0)
        writer.close()
        screen.tmux("send-keys", "-t", "b", "q")
        return {
            "rounds": rounds,
            "appear_ms": {kind: summary(times) for kind, times in appear.items()},
            "all_within_target": all(max(t) * 1000 <= TARGET_MS for t in appear.values()),
            "start_ms": round(start * 1000, 1),
            "cpu": {"idle": round(idle, 3), "200_events_per_s": round(busy, 3)},
        }
    finally:
        subprocess.run([*screen.base, "kill-server"], env=env, capture_output=True, check=False)
        broker.terminate()
        broker.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--starts", type=int, default=0, help="only measure the start, N times")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="top-", dir="/tmp") as d:
        if args.starts:
            print(json.dumps(measure_starts(args.starts, Path(d)), indent=2))
        else:
            print(json.dumps(measure(args.rounds, Path(d)), indent=2))


if __name__ == "__main__":
    main()
