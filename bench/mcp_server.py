"""Benchmark of ``slm-mesh mcp`` as real processes: prints one JSON object of figures.

    python bench/mcp_server.py [--calls 200] [--pushes 200] [--starts 5]

Figures (milliseconds unless the name says otherwise):

- ``start``: spawn → ``initialize`` result of ``slm-mesh mcp`` with the broker cold (none
  running: the server starts one) and warm (one running), and spawn → first ``tools/call``
  answered (registered at the broker); ``floor``, in turns with them, is the bare cost: a
  trivial low-level ``Server`` that imports ``mcp`` and answers ``initialize`` over the
  SDK's stdio transport. ``overhead_ms`` is warm minus floor (p50), the cost of our own
  code (budget: 100 ms); ``overhead_cpu_ms`` the same in CPU time, which load on the
  machine disturbs less. ``in_process`` is the server run by ``slm-mesh mcp`` itself
  (``SLM_MESH_NO_ZYGOTE=1``); ``launcher``, when the launcher has a warm-process fast path,
  is the default ``slm-mesh mcp``.
- ``tools_call``: ``tools/call`` round trip p50/p99 for ``mesh_status`` and ``mesh_send``.
- ``push``: broker ``message.send`` (by a plain broker client) → the recipient server's
  ``notifications/claude/channel`` line on its stdout, p50/p99.
- ``rss_kb``: the MCP server's resident memory after the runs.

Everything runs in a fresh data dir; every process started is stopped by its pid at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.wire import cpu_seconds

SERVER_ARGV = [sys.executable, "-m", "slm_mesh", "mcp"]
FLOOR_SCRIPT = """
import anyio
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

server = Server("floor")

async def main():
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())

anyio.run(main)
"""
PROTOCOL = "2025-11-25"
BOUND_S = 60.0
CHANNEL = "notifications/claude/channel"


def percentiles(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    return {
        "p50": round(ordered[len(ordered) // 2], 3),
        "p99": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "mean": round(statistics.fmean(ordered), 3),
        "n": len(ordered),
    }


class Server:
    """One MCP server process spoken to in raw NDJSON over its pipes."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.started = time.perf_counter()
        with log.open("ab") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env, bufsize=0
            )
        self.buf = b""
        self.next_id = 0
        self.notifications: list[tuple[float, dict[str, Any]]] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        while True:
            incoming = self.read_message()
            if incoming.get("id") == self.next_id:
                if "error" in incoming:
                    raise RuntimeError(f"{method}: {incoming['error']}")
                return dict(incoming["result"])

    def read_message(self, timeout: float = BOUND_S) -> dict[str, Any]:
        """The next response; notifications met on the way are kept with their arrival."""
        while True:
            line = self._line(timeout)
            message = json.loads(line)
            if "id" not in message:
                self.notifications.append((time.perf_counter(), message))
                continue
            return dict(message)

    def wait_notification(self, timeout: float = BOUND_S) -> tuple[float, dict[str, Any]]:
        while not self.notifications:
            message = json.loads(self._line(timeout))
            if "id" not in message:
                return time.perf_counter(), message
        return self.notifications.pop(0)

    def initialize(self, client: str = "bench") -> float:
        """Send ``initialize``; return seconds from spawn to its result."""
        self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": client, "version": "1"},
            },
        )
        elapsed = time.perf_counter() - self.started
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return elapsed

    def tool(self, name: str, **arguments: Any) -> dict[str, Any]:
        result = self.request("tools/call", {"name": name, "arguments": arguments})
        if result.get("isError"):
            raise RuntimeError(f"{name}: {result['content']}")
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    def _line(self, timeout: float) -> bytes:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            ready, _, _ = select.select([self.proc.stdout], [], [], deadline - time.monotonic())
            if not ready:
                raise TimeoutError("no answer from the MCP server")
            chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
            if not chunk:
                raise EOFError("the MCP server closed its stdout")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line


class Broker:
    """A plain broker client on the Unix socket (no mcp, no anyio: it must not skew timings)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        self.next_id = 0

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        self.next_id += 1
        line = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params or {}}
        self.sock.sendall(json.dumps(line).encode() + b"\n")
        while True:
            message = json.loads(self.file.readline())
            if message.get("id") == self.next_id:
                return message.get("result")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def processes_in(data_dir: Path) -> list[int]:
    """Processes whose environment points ``SLM_MESH_DATA_DIR`` at ``data_dir``."""
    wanted = f"SLM_MESH_DATA_DIR={data_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if wanted in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


def stop_pid(pid: int) -> None:
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            except (OSError, IndexError):
                return
            if state in (b"Z", b"X"):
                return
            time.sleep(0.01)


def stop_broker(data_dir: Path) -> None:
    with contextlib.suppress(OSError, ValueError):
        stop_pid(int((data_dir / "broker.pid").read_text()))
    with contextlib.suppress(FileNotFoundError):
        (data_dir / "broker.sock").unlink()


def wait_for_socket(path: Path) -> None:
    deadline = time.monotonic() + BOUND_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.connect(str(path))
            return
        time.sleep(0.01)
    raise TimeoutError(f"no broker at {path}")


@contextlib.contextmanager
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="smb-", dir="/tmp") as tmp:
        path = Path(tmp) / "d"
        path.mkdir(mode=0o700)
        try:
            yield path
        finally:
            while pids := processes_in(path):
                for pid in pids:
                    stop_pid(pid)


def environment(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLM_MESH_", "LISTEN_"))}
    env.pop("XDG_RUNTIME_DIR", None)
    env.update(SLM_MESH_DATA_DIR=str(data), SLM_MESH_PORT="0", **extra)
    return env


def time_start(argv: list[str], env: dict[str, str], log: Path) -> dict[str, float]:
    """One spawn: ms to the ``initialize`` result, the CPU ms the process had used by then
    (steadier than wall time on a busy machine), ms to the first ``tools/call`` result (our
    server only), and the RSS after them."""
    server = Server(argv, env, log)
    try:
        initialize_s = server.initialize()
        timing = {"initialize_ms": initialize_s * 1000, "cpu_ms": cpu_seconds(server.pid) * 1000}
        if argv == SERVER_ARGV:
            server.tool("mesh_status")
            timing["first_call_ms"] = (time.perf_counter() - server.started) * 1000
        timing["rss_kb"] = rss_kb(server.pid)
        return timing
    finally:
        server.stop()


def measure_starts(data: Path, starts: int, env: dict[str, str]) -> dict[str, Any]:
    """The floor and our server, started in turns (so load on the machine hits both alike);
    cold runs kill the broker first. ``cpu_ms`` and ``rss_kb`` are of the spawned process
    (with the launcher's fast path that is the launcher, not the server it hands off to)."""
    floor_argv = [sys.executable, "-c", FLOOR_SCRIPT]
    runs: dict[str, list[dict[str, float]]] = {"floor": [], "cold": [], "warm": []}
    for _ in range(starts):
        stop_broker(data)
        runs["cold"].append(time_start(SERVER_ARGV, env, data / "mcp.log"))
        runs["floor"].append(time_start(floor_argv, environment(data), data / "floor.log"))
        runs["warm"].append(time_start(SERVER_ARGV, env, data / "mcp.log"))
    figures: dict[str, Any] = {}
    for phase, timings in runs.items():
        figures[phase] = {
            key: percentiles([t[key] for t in timings])
            for key in ("initialize_ms", "cpu_ms", "first_call_ms")
            if key in timings[0]
        }
        figures[phase]["rss_kb"] = int(timings[-1]["rss_kb"])
    for key in ("initialize_ms", "cpu_ms"):
        extra = figures["warm"][key]["p50"] - figures["floor"][key]["p50"]
        figures[f"overhead_{key}"] = round(extra, 3)
    figures["within_budget"] = figures["overhead_initialize_ms"] <= 100
    return figures


def measure_calls(data: Path, calls: int, pushes: int, env: dict[str, str]) -> dict[str, Any]:
    sender = Server(SERVER_ARGV, {**env, "SLM_MESH_NAME": "bench-sender"}, data / "mcp.log")
    receiver = Server(SERVER_ARGV, {**env, "SLM_MESH_NAME": "bench-receiver"}, data / "mcp.log")
    try:
        for server in (sender, receiver):
            server.initialize()
            server.tool("mesh_status")  # registered
        figures: dict[str, Any] = {}
        for name, arguments in (
            ("mesh_status", {}),
            ("mesh_send", {"to": "bench-receiver", "message": "ping"}),
        ):
            times = []
            for _ in range(calls):
                start = time.perf_counter()
                sender.tool(name, **arguments)
                times.append((time.perf_counter() - start) * 1000)
            figures[name] = percentiles(times)
        for _ in range(calls):  # the sends above, pushed to the receiver
            receiver.wait_notification()
        receiver.tool("mesh_inbox", limit=500)

        broker = Broker(data / "broker.sock")
        latencies = []
        try:
            for i in range(pushes):
                start = time.perf_counter()
                broker.call("message.send", {"to": "bench-receiver", "body": f"push {i}"})
                arrived, message = receiver.wait_notification()
                assert message["method"] == CHANNEL, message
                latencies.append((arrived - start) * 1000)
        finally:
            broker.close()
        return {
            "tools_call_ms": figures,
            "push_ms": percentiles(latencies),
            "rss_kb": {"receiver": rss_kb(receiver.pid), "sender": rss_kb(sender.pid)},
        }
    finally:
        sender.stop()
        receiver.stop()


def launcher_has_fast_path() -> bool:
    """Whether ``slm-mesh mcp`` can hand the session to a warm process."""
    try:
        import slm_mesh.zygote.launcher  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="tools/call round trips per tool")
    parser.add_argument("--pushes", type=int, default=200, help="broker messages to time")
    parser.add_argument("--starts", type=int, default=9, help="process starts per figure")
    args = parser.parse_args()

    out: dict[str, Any] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    with data_dir() as data:
        in_process = environment(data, SLM_MESH_NO_ZYGOTE="1")
        out["start"] = {"in_process": measure_starts(data, args.starts, in_process)}
        if launcher_has_fast_path():
            out["start"]["launcher"] = measure_starts(data, args.starts, environment(data))
        wait_for_socket(data / "broker.sock")
        out.update(measure_calls(data, args.calls, args.pushes, in_process))
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
