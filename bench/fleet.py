"""The fleet benchmark: many real ``slm-mesh mcp`` sessions on one machine. Prints JSON.

    python bench/fleet.py                  # everything (about a minute)
    python bench/fleet.py --only cold50    # one part: cold50 fresh10 single pss throughput channel
    python bench/fleet.py --client raw     # sessions driven by hand-written lines, not the SDK
    SLM_MESH_NO_ZYGOTE=1 python bench/fleet.py   # the same without the warm process

Each session is a real launcher process (the installed ``slm-mesh mcp``) driven over its
stdin/stdout by the mcp SDK's ``ClientSession``, as an agent drives it: ``initialize`` at
2025-11-25, ``tools/list`` (the SDK lists the tools to check each result against its
output schema), then ``tools/call``; channel notifications arrive through a
``NotificationBinding``. ``--client raw`` drives them with the same JSON-RPC lines written
by hand instead, which costs the driving process far less CPU: the difference between the
two runs is the client's share of a 2-core machine. The load generator of the throughput
figure runs in a process of its own and reports its CPU time, and the CPU time of the
broker, the servers and the launchers over the same run (``cpu_s``, ``cpu_ms_per_call``,
from /proc). Every process of a run lives
in a temp data dir and is killed by pid at the end of its part.

Before measuring, the package is byte-compiled, as ``pip install`` does for a regular
install (an editable one writes its ``.pyc`` files on first import, unless
``PYTHONDONTWRITEBYTECODE`` is set, as it is on some CI machines: then every start would
compile our modules from source and the figures would measure that).
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.wire import cpu_seconds, processes_in

import slm_mesh

# What an agent's MCP config runs: the installed command, not ``python -m``.
LAUNCHER = [str(Path(sys.executable).parent / "slm-mesh"), "mcp"]
BOUND_S = 60.0
# How often a session looks for its peers: as an agent might, not a busy loop that would
# itself eat the CPU the fifty sessions need to start.
POLL_S = 0.1


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLM_MESH_")}
    env.pop("XDG_RUNTIME_DIR", None)
    if os.environ.get("SLM_MESH_NO_ZYGOTE"):
        env["SLM_MESH_NO_ZYGOTE"] = os.environ["SLM_MESH_NO_ZYGOTE"]
    env.update(SLM_MESH_DATA_DIR=str(data_dir), **extra)
    return env


def kill_all(data_dir: Path) -> None:
    for pid in processes_in(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_kind(pid: int) -> str:
    """broker, server (the warm process and the servers it forks) or launcher."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    if b"broker" in argv:
        return "broker"
    return "server" if b"slm_mesh.zygote" in argv else "launcher"


def cpu_by_kind(pids: list[int]) -> dict[str, float]:
    out: dict[str, float] = {}
    for pid in pids:
        kind = process_kind(pid)
        out[kind] = out.get(kind, 0.0) + cpu_seconds(pid)
    return out


class RawSession:
    """One agent session: a launcher process and MCP lines written by hand on its pipes."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.ids = 0
        self.waiting: dict[int, tuple[trio.Event, list[Any]]] = {}
        self.channel: list[tuple[float, dict[str, Any]]] = []
        self.channel_event = trio.Event()

    async def read_loop(self) -> None:
        assert self.proc.stdout is not None
        buf = b""
        async for chunk in self.proc.stdout:
            buf += chunk
            while b"\n" in buf:
                line, _, buf = buf.partition(b"\n")
                msg = json.loads(line)
                if "id" in msg and msg["id"] in self.waiting:
                    event, box = self.waiting.pop(msg["id"])
                    box.append(msg)
                    event.set()
                elif msg.get("method") == "notifications/claude/channel":
                    self.channel.append((time.perf_counter(), msg["params"]))
                    self.channel_event.set()

    async def send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send_all(json.dumps(msg).encode() + b"\n")

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.ids += 1
        event, box = trio.Event(), list[Any]()
        self.waiting[self.ids] = (event, box)
        await self.send({"jsonrpc": "2.0", "id": self.ids, "method": method, "params": params})
        with trio.fail_after(BOUND_S):
            await event.wait()
        answer: dict[str, Any] = box[0]
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    async def initialize(self) -> None:
        await self.request(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "claude-code", "version": "bench"},
            },
        )
        await self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def tool(self, name: str, **arguments: Any) -> dict[str, Any]:
        answer = await self.request("tools/call", {"name": name, "arguments": arguments})
        result: dict[str, Any] = answer["result"]
        if result.get("isError"):
            raise RuntimeError(result)
        return dict(result["structuredContent"])

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await self.read_loop()

    async def close(self) -> None:
        """End the session as an agent does: close the server's stdin."""
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            assert self.proc.stdin is not None
            await self.proc.stdin.aclose()


class SdkSession:
    """One agent session driven by the mcp SDK's ``ClientSession``."""

    def __init__(self, proc: trio.Process) -> None:
        self.proc = proc
        self.channel: list[tuple[float, dict[str, Any]]] = []
        self.channel_event = trio.Event()
        self._session: Any = None
        self._release = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        import mcp_types
        from mcp.client.extension import NotificationBinding
        from mcp.client.session import ClientSession
        from tests.mcp.harness import CHANNEL_METHOD, ChannelParams, process_streams

        async def on_channel(params: ChannelParams) -> None:
            self.channel.append((time.perf_counter(), params.model_dump()))
            self.channel_event.set()

        binding = NotificationBinding(
            method=CHANNEL_METHOD, params_type=ChannelParams, handler=on_channel
        )
        async with (
            process_streams(self.proc) as (read, write),
            ClientSession(
                read,
                write,
                client_info=mcp_types.Implementation(name="claude-code", version="bench"),
                notification_bindings=[binding],
            ) as session,
        ):
            self._session = session
            task_status.started()
            await self._release.wait()

    async def initialize(self) -> None:
        with trio.fail_after(BOUND_S):
            await self._session.initialize()

    async def tool(self, name: str, **arguments: Any) -> dict[str, Any]:
        with trio.fail_after(BOUND_S):
            result = await self._session.call_tool(name, arguments)
        if result.is_error or result.structured_content is None:
            raise RuntimeError(result)
        return dict(result.structured_content)

    async def close(self) -> None:
        self._release.set()


Session = RawSession | SdkSession


CLIENTS: dict[str, type[RawSession] | type[SdkSession]] = {"sdk": SdkSession, "raw": RawSession}
CLIENT = "sdk"  # --client


@contextlib.asynccontextmanager
async def fleet(data_dir: Path) -> AsyncIterator[Any]:
    """``spawn(name) -> Session``; at the end every session is closed (stdin EOF) and
    every process of the data dir killed."""
    sessions: list[Session] = []
    async with trio.open_nursery() as nursery:

        async def spawn(name: str) -> Session:
            proc = await trio.lowlevel.open_process(
                LAUNCHER,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env_for(data_dir, SLM_MESH_NAME=name),
            )
            session = CLIENTS[CLIENT](proc)
            sessions.append(session)
            await nursery.start(session.run)
            return session

        try:
            yield spawn
        finally:
            for s in sessions:
                await s.close()
            with trio.move_on_after(5):
                for s in sessions:
                    await s.proc.wait()
            kill_all(data_dir)
            for s in sessions:
                with contextlib.suppress(ProcessLookupError):
                    s.proc.kill()
            nursery.cancel_scope.cancel()


async def part_cold(n: int, data_dir: Path) -> dict[str, Any]:
    """``n`` sessions spawned at once on a fresh data dir (no broker, no warm process):
    time until every one answered initialize, and until every one sees the other n-1."""
    t0 = time.perf_counter()
    init_done: list[float] = []
    seen_all: list[float] = []
    pss: dict[str, int] = {}
    async with fleet(data_dir) as spawn:

        async def one(i: int) -> None:
            s = await spawn(f"s{i}")
            await s.initialize()
            init_done.append(time.perf_counter() - t0)
            while len((await s.tool("mesh_peers"))["peers"]) < n - 1:  # noqa: ASYNC110 - polls a tool, as an agent would
                await trio.sleep(POLL_S)
            seen_all.append(time.perf_counter() - t0)

        with trio.move_on_after(BOUND_S):
            async with trio.open_nursery() as nursery:
                for i in range(n):
                    nursery.start_soon(one, i)
        await trio.sleep(0.5)
        pids = processes_in(data_dir)
        pss["total_kb"] = sum(pss_kb(p) for p in pids)
        pss["processes"] = len(pids)
    return {
        "sessions": n,
        "initialized": len(init_done),
        "all_initialized_s": round(max(init_done), 3) if init_done else None,
        "saw_all_peers": len(seen_all),
        "all_see_all_s": round(max(seen_all), 3) if len(seen_all) == n else None,
        "pss_total_mb": round(pss["total_kb"] / 1024, 1),
        "pss_processes": pss["processes"],
    }


async def part_fresh10(trials: int, root: Path) -> dict[str, Any]:
    ok = 0
    for t in range(trials):
        data_dir = root / f"fresh{t}"
        started = 0
        async with fleet(data_dir) as spawn:

            async def one(i: int) -> None:
                nonlocal started
                s = await spawn(f"f{i}")
                await s.initialize()
                await s.tool("mesh_status")
                started += 1

            with trio.move_on_after(BOUND_S):
                async with trio.open_nursery() as nursery:
                    for i in range(10):
                        nursery.start_soon(one, i)
        ok += started == 10
    return {"trials": trials, "all_10_started": ok}


async def part_single(root: Path, repeats: int) -> dict[str, Any]:
    """Spawn → initialize answered, for one session: warm (broker and warm process up),
    broker cold (warm process up, no broker), and fully cold (fresh data dir)."""
    data_dir = root / "single"
    out: dict[str, Any] = {}
    async with fleet(data_dir) as spawn:
        keeper = await spawn("keeper")  # brings broker and warm process up
        await keeper.initialize()

        async def once() -> float:
            t0 = time.perf_counter()
            s = await spawn("probe")
            await s.initialize()
            dt = time.perf_counter() - t0
            await s.close()
            with trio.fail_after(BOUND_S):
                await s.proc.wait()
            return dt

        warm = [await once() for _ in range(repeats)]
        out["warm_ms"] = {"p50": ms(statistics.median(warm)), "max": ms(max(warm))}
        cold_broker = []
        for _ in range(max(3, repeats // 2)):
            await keeper.tool("mesh_status")  # make sure it is up, then stop it
            pid = int((data_dir / "broker.pid").read_text())
            os.kill(pid, signal.SIGTERM)
            with trio.fail_after(BOUND_S):
                while (data_dir / "broker.pid").exists():  # noqa: ASYNC110 - a file, no event
                    await trio.sleep(0.01)
            cold_broker.append(await once())
        out["broker_cold_ms"] = {
            "p50": ms(statistics.median(cold_broker)),
            "max": ms(max(cold_broker)),
        }
    fully = []
    for i in range(3):
        fresh = root / f"cold{i}"
        async with fleet(fresh) as spawn:
            t0 = time.perf_counter()
            s = await spawn("first")
            await s.initialize()
            fully.append(time.perf_counter() - t0)
    out["fully_cold_ms"] = {"p50": ms(statistics.median(fully)), "max": ms(max(fully))}
    return out


async def part_channel(root: Path, n: int) -> dict[str, Any]:
    data_dir = root / "channel"
    lat = []
    async with fleet(data_dir) as spawn:
        a, b = await spawn("a"), await spawn("b")
        await a.initialize()
        await b.initialize()
        await a.tool("mesh_status")
        await b.tool("mesh_status")
        for i in range(n):
            b.channel_event = trio.Event()
            t0 = time.perf_counter()
            await a.tool("mesh_send", to="b", message=f"ping {i}")
            with trio.fail_after(BOUND_S):
                while not b.channel:
                    await b.channel_event.wait()
                    b.channel_event = trio.Event()
            arrived, _ = b.channel.pop(0)
            lat.append(arrived - t0)
        await b.tool("mesh_inbox")
    return {"n": n, "p50_ms": ms(percentile(lat, 50)), "p99_ms": ms(percentile(lat, 99))}


async def loadgen(data_dir: Path, sessions: int, seconds: float) -> dict[str, Any]:
    lat: list[float] = []
    async with fleet(data_dir) as spawn:
        fleet_ = [await spawn(f"l{i}") for i in range(sessions)]
        for s in fleet_:
            await s.initialize()
        await fleet_[0].tool("mesh_state", action="set", key="k", value="v")
        ours = processes_in(data_dir)
        kinds0 = cpu_by_kind(ours)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        stop = t0 + seconds

        async def hammer(s: Session) -> None:
            while time.perf_counter() < stop:
                c0 = time.perf_counter()
                await s.tool("mesh_state", action="get", key="k")
                lat.append(time.perf_counter() - c0)

        async with trio.open_nursery() as nursery:
            for s in fleet_:
                nursery.start_soon(hammer, s)
        elapsed = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        kinds1 = cpu_by_kind(ours)
    loadgen_cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    cpu = {kind: kinds1[kind] - kinds0.get(kind, 0.0) for kind in kinds1}
    cpu["loadgen"] = loadgen_cpu
    calls = max(1, len(lat))
    return {
        "sessions": sessions,
        "calls_per_s": round(len(lat) / elapsed),
        "p50_ms": ms(percentile(lat, 50)),
        "p99_ms": ms(percentile(lat, 99)),
        "tool": "mesh_state get",
        "loadgen_cpu_s": round(loadgen_cpu, 2),
        # Per process kind over the run (/proc): where the 2 CPUs went, per call.
        "cpu_s": {kind: round(value, 2) for kind, value in sorted(cpu.items())},
        "cpu_ms_per_call": {kind: round(v * 1000 / calls, 3) for kind, v in sorted(cpu.items())},
        "seconds": round(elapsed, 2),
    }


def part_throughput(root: Path, seconds: float) -> dict[str, Any]:
    """Run the load generator in a process of its own."""
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--loadgen",
            str(root / "load"),
            "--seconds",
            str(seconds),
            "--client",
            CLIENT,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


async def main_async(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    parts = (
        args.only.split(",")
        if args.only
        else [
            "single",
            "cold50",
            "fresh10",
            "channel",
            "throughput",
        ]
    )
    out: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "zygote": not os.environ.get("SLM_MESH_NO_ZYGOTE"),
        "client": CLIENT,
    }
    if "single" in parts:
        out["single"] = await part_single(root, args.repeats)
    if "cold50" in parts:
        out["cold50"] = await part_cold(50, root / "cold50")
    if "fresh10" in parts:
        out["fresh10"] = await part_fresh10(args.trials, root)
    if "channel" in parts:
        out["channel"] = await part_channel(root, args.messages)
    if "throughput" in parts:
        out["throughput"] = await trio.to_thread.run_sync(part_throughput, root, args.seconds)
    return out


def main() -> None:
    global CLIENT
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="", help="comma-separated parts to run")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--client", choices=sorted(CLIENTS), default=CLIENT)
    parser.add_argument("--loadgen", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    CLIENT = args.client
    if args.loadgen:
        print(json.dumps(trio.run(loadgen, Path(args.loadgen), 10, args.seconds)))
        return
    compileall.compile_dir(Path(slm_mesh.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory(prefix="smf-", dir="/tmp") as tmp:
        try:
            print(json.dumps(trio.run(main_async, args, Path(tmp)), indent=2))
        finally:
            for sub in Path(tmp).iterdir():
                kill_all(sub)


if __name__ == "__main__":
    main()
