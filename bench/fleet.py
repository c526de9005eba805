"""The fleet benchmark: many real MCP server sessions on one machine. Prints JSON.

    python bench/fleet.py                  # everything (about a minute)
    python bench/fleet.py --only cold50    # one part: single cold50 fresh10 channel throughput
    python bench/fleet.py --client raw     # sessions driven by hand-written lines, not the SDK
    python bench/fleet.py --mix read       # throughput of a read-only loop (mesh_state get)
    SLM_MESH_NO_ZYGOTE=1 python bench/fleet.py   # the same without the warm process
    # another stdio MCP server, with its tool surface (bench/fleet_adapters.py):
    python bench/fleet.py --adapter claude-peers --server "bun /path/to/server.ts"
    # both in one run, and the ratios (ours / theirs) of the figures they share:
    python bench/fleet.py --compare --server "bun /path/to/server.ts"
    # the throughput part 5 times each, the two servers taking turns (medians, ranges):
    python bench/fleet.py --compare --server "bun /path/to/server.ts" --only throughput --rounds 5

Each session is a real server process (for slm-mesh the installed ``slm-mesh mcp``, what
an agent's MCP config runs) driven over its stdin/stdout by the mcp SDK's
``ClientSession``, as an agent drives it (``bench/fleet_sessions.py``). Parts:

- ``single``: spawn → ``initialize`` answered → ``tools/list`` answered, for one session:
  warm (a session already running: broker up), broker cold (slm-mesh: warm process up, no
  broker), and fully cold (a fresh data dir, nothing running: the first session of the day).
- ``cold50``: 50 sessions spawned at once on a fresh data dir: until all answered
  ``initialize``, and until each sees the other 49; then the summed PSS.
- ``fresh10``: 10 sessions at once on a fresh data dir, repeated: did all 10 start.
- ``channel``: a message sent by one session → the channel notification at the receiver.
- ``throughput``: 10 sessions in a closed loop of tool calls, each a real ``tools/call``;
  ``--mix mixed`` (default) cycles through the adapter's writing and reading calls
  (slm-mesh: send, inbox, state set, state get, lock, unlock; claude-peers: its four
  tools), ``--mix read`` repeats one read. The load generator runs in a process of its own
  and reports its CPU time, and the CPU time of each kind of process of the cluster over
  the same run (``cpu_s``, ``cpu_ms_per_call``, from /proc).

``--compare`` runs every part for slm-mesh and then for the ``--server`` command as
claude-peers, in one invocation, and adds ``ratios``: slm-mesh's figure over the other's
(below 1 is faster for times; above 1 is better for calls/s). The throughput rounds of
the two take turns (ours, theirs, ours...), so a change in what else the host runs
weighs on both alike. Every process of a run lives
in a temp data dir and is killed by pid at the end of its part.

Before measuring, the package is byte-compiled, as ``pip install`` does for a regular
install (an editable one writes its ``.pyc`` files on first import, unless
``PYTHONDONTWRITEBYTECODE`` is set, as it is on some CI machines: then every start would
compile our modules from source and the figures would measure that).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.wire import cpu_seconds

import slm_mesh
from bench.fleet_adapters import ADAPTERS, Adapter
from bench.fleet_sessions import BOUND_S, CLIENTS, Session, end, fleet

# How often a session looks for its peers: as an agent might, not a busy loop that would
# itself eat the CPU the fifty sessions need to start.
POLL_S = 0.1
CHANNEL_BOUND_S = 20.0  # a server that pushes slowly gets fewer messages, not a longer run
LOAD_SESSIONS = 10
MIXES = ("mixed", "read")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_by_kind(adapter: Adapter, pids: list[int]) -> dict[str, float]:
    out: dict[str, float] = {}
    for pid in pids:
        kind = adapter.kind(pid)
        out[kind] = out.get(kind, 0.0) + cpu_seconds(pid)
    return out


class Bench:
    """The parts, for one adapter and one client kind."""

    def __init__(self, adapter: Adapter, client: str, root: Path) -> None:
        self.adapter = adapter
        self.client = client
        self.root = root / adapter.name

    def fleet(self, data_dir: Path) -> Any:
        return fleet(self.adapter, self.client, data_dir)

    async def part_single(self, repeats: int, cold_repeats: int) -> dict[str, Any]:
        data_dir = self.root / "single"
        out: dict[str, Any] = {}

        async def once(spawn: Any, name: str) -> tuple[float, float]:
            t0 = time.perf_counter()
            s = await spawn(name)
            await s.initialize()
            t1 = time.perf_counter()
            await s.list_tools()
            t2 = time.perf_counter()
            await end(self.adapter, s)
            return t1 - t0, t2 - t0

        def figures(runs: list[tuple[float, float]]) -> dict[str, Any]:
            init = [r[0] for r in runs]
            tools = [r[1] for r in runs]
            return {
                "initialize_p50_ms": ms(statistics.median(init)),
                "tools_list_p50_ms": ms(statistics.median(tools)),
                "tools_list_max_ms": ms(max(tools)),
                "runs": len(runs),
            }

        async with self.fleet(data_dir) as spawn:
            keeper = await spawn("keeper")  # brings the broker (and our warm process) up
            await keeper.initialize()
            await self.adapter.ready(keeper)
            out["warm"] = figures([await once(spawn, f"probe{i}") for i in range(repeats)])
            if self.adapter.name == "slm-mesh":
                cold_broker = []
                for i in range(max(3, repeats // 2)):
                    await self.adapter.ready(keeper)  # make sure it is up, then stop it
                    self.adapter.stop_broker(data_dir)
                    with trio.fail_after(BOUND_S):
                        while (data_dir / "broker.pid").exists():  # noqa: ASYNC110 - a file
                            await trio.sleep(0.01)
                    cold_broker.append(await once(spawn, f"cold{i}"))
                out["broker_cold"] = figures(cold_broker)
        fully = []
        for i in range(cold_repeats):
            async with self.fleet(self.root / f"cold{i}") as spawn:
                fully.append(await once(spawn, "first"))
        out["fully_cold"] = figures(fully)
        return out

    async def part_cold(self, n: int) -> dict[str, Any]:
        """``n`` sessions spawned at once on a fresh data dir: time until every one
        answered initialize, and until every one sees the other n-1."""
        data_dir = self.root / f"cold{n}"
        t0 = time.perf_counter()
        init_done: list[float] = []
        seen_all: list[float] = []
        pss: dict[str, int] = {}
        async with self.fleet(data_dir) as spawn:

            async def one(i: int) -> None:
                s = await spawn(f"s{i}")
                await s.initialize()
                init_done.append(time.perf_counter() - t0)
                while await self.adapter.peers_seen(s) < n - 1:  # noqa: ASYNC110 - polls a tool, as an agent would
                    await trio.sleep(POLL_S)
                seen_all.append(time.perf_counter() - t0)

            with trio.move_on_after(BOUND_S):
                async with trio.open_nursery() as nursery:
                    for i in range(n):
                        nursery.start_soon(one, i)
            await trio.sleep(0.5)
            pids = self.adapter.processes(data_dir)
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

    async def part_fresh10(self, trials: int) -> dict[str, Any]:
        ok = 0
        for t in range(trials):
            started = 0
            async with self.fleet(self.root / f"fresh{t}") as spawn:

                async def one(i: int) -> None:
                    nonlocal started
                    s = await spawn(f"f{i}")
                    await s.initialize()
                    await self.adapter.ready(s)
                    started += 1

                with trio.move_on_after(BOUND_S):
                    async with trio.open_nursery() as nursery:
                        for i in range(10):
                            nursery.start_soon(one, i)
            ok += started == 10
        return {"trials": trials, "all_10_started": ok}

    async def part_channel(self, n: int) -> dict[str, Any]:
        lat: list[float] = []
        async with self.fleet(self.root / "channel") as spawn:
            a, b = await spawn("a"), await spawn("b")
            for s in (a, b):
                await s.initialize()
                await self.adapter.ready(s)
            to_b = (await self.adapter.addresses([a, b]))[1]
            deadline = time.perf_counter() + CHANNEL_BOUND_S
            while len(lat) < n and time.perf_counter() < deadline:
                b.channel_event = trio.Event()
                t0 = time.perf_counter()
                await a.call(*self.adapter.send(to_b, f"ping {len(lat)}"))
                with trio.fail_after(BOUND_S):
                    while not b.channel:
                        await b.channel_event.wait()
                        b.channel_event = trio.Event()
                arrived, _ = b.channel.pop(0)
                lat.append(arrived - t0)
            await b.call(*self.adapter.read_inbox())
        return {"n": len(lat), "p50_ms": ms(percentile(lat, 50)), "p99_ms": ms(percentile(lat, 99))}

    def part_throughput(self, seconds: float, mix: str, round_: int = 0) -> dict[str, Any]:
        """Run the load generator in a process of its own, on a fresh cluster."""
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--loadgen",
                str(self.root / f"load{round_}"),
                "--seconds",
                str(seconds),
                "--client",
                self.client,
                "--adapter",
                self.adapter.name,
                "--server",
                shlex.join(self.adapter.command),
                "--mix",
                mix,
            ],
            capture_output=True,
            text=True,
        )
        if out.returncode:
            raise RuntimeError(f"the load generator failed:\n{out.stderr}")
        result: dict[str, Any] = json.loads(out.stdout)
        return result

    async def run(self, parts: list[str], args: argparse.Namespace) -> dict[str, Any]:
        out: dict[str, Any] = {"server": shlex.join(self.adapter.command)}
        if "single" in parts:
            out["single"] = await self.part_single(args.repeats, args.cold_repeats)
        if "cold50" in parts:
            out["cold50"] = await self.part_cold(50)
        if "fresh10" in parts:
            out["fresh10"] = await self.part_fresh10(args.trials)
        if "channel" in parts:
            out["channel"] = await self.part_channel(args.messages)
        if "throughput" in parts:
            runs = [
                await trio.to_thread.run_sync(self.part_throughput, args.seconds, args.mix, r)
                for r in range(args.rounds)
            ]
            out["throughput"] = throughput_rounds(runs)
        return out


def throughput_rounds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One throughput figure of several rounds: each figure's median, with its range and
    every round's headline figures (one round: that round, as it was)."""
    for run in runs:
        per_call = run["cpu_ms_per_call"]
        run["cpu_ms_per_call_total"] = round(sum(per_call.values()), 3)
    if len(runs) == 1:
        return runs[0]
    out: dict[str, Any] = {"sessions": runs[0]["sessions"], "mix": runs[0]["mix"]}
    for key in ("calls_per_s", "p50_ms", "p99_ms", "cpu_ms_per_call_total"):
        values = [run[key] for run in runs]
        out[key] = statistics.median(values)
        out[f"{key}_range"] = [min(values), max(values)]
    kinds = sorted({kind for run in runs for kind in run["cpu_ms_per_call"]})
    out["cpu_ms_per_call"] = {
        kind: round(statistics.median(run["cpu_ms_per_call"].get(kind, 0.0) for run in runs), 3)
        for kind in kinds
    }
    out["rounds"] = [
        {key: run[key] for key in ("calls_per_s", "p99_ms", "cpu_ms_per_call_total")}
        for run in runs
    ]
    return out


async def loadgen(
    adapter: Adapter, client: str, data_dir: Path, sessions: int, seconds: float, mix: str
) -> dict[str, Any]:
    lat: list[float] = []
    per_tool: dict[str, list[float]] = {}
    async with fleet(adapter, client, data_dir) as spawn:
        fleet_ = [await spawn(f"l{i}") for i in range(sessions)]
        for s in fleet_:
            await s.initialize()
            await s.list_tools()
            await adapter.ready(s)
        for i, s in enumerate(fleet_):
            for name, arguments in adapter.setup(i):
                await s.call(name, arguments)
        addresses = await adapter.addresses(fleet_)
        rounds = [
            adapter.mixed_round(i, addresses[(i + 1) % sessions])
            if mix == "mixed"
            else adapter.read_round(i)
            for i in range(sessions)
        ]
        for s, calls in zip(fleet_, rounds, strict=True):  # warm up every call once
            for name, arguments in calls:
                await s.call(name, arguments)
        ours = adapter.processes(data_dir)
        kinds0 = cpu_by_kind(adapter, ours)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        stop = t0 + seconds

        async def hammer(s: Session, calls: list[tuple[str, dict[str, Any]]]) -> None:
            n = 0
            while time.perf_counter() < stop:
                name, arguments = calls[n % len(calls)]
                n += 1
                c0 = time.perf_counter()
                await s.call(name, arguments)
                took = time.perf_counter() - c0
                lat.append(took)
                per_tool.setdefault(f"{name} {arguments.get('action', '')}".strip(), []).append(
                    took
                )

        async with trio.open_nursery() as nursery:
            for s, calls in zip(fleet_, rounds, strict=True):
                nursery.start_soon(hammer, s, calls)
        elapsed = time.perf_counter() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        kinds1 = cpu_by_kind(adapter, ours)
    loadgen_cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    cpu = {kind: kinds1[kind] - kinds0.get(kind, 0.0) for kind in kinds1}
    cpu["loadgen"] = loadgen_cpu
    n_calls = max(1, len(lat))
    return {
        "sessions": sessions,
        "mix": mix,
        "calls_per_s": round(len(lat) / elapsed),
        "p50_ms": ms(percentile(lat, 50)),
        "p99_ms": ms(percentile(lat, 99)),
        "per_tool_p50_ms": {k: ms(percentile(v, 50)) for k, v in sorted(per_tool.items())},
        "loadgen_cpu_s": round(loadgen_cpu, 2),
        # Per process kind over the run (/proc): where the 2 CPUs went, per call.
        "cpu_s": {kind: round(value, 2) for kind, value in sorted(cpu.items())},
        "cpu_ms_per_call": {kind: round(v * 1000 / n_calls, 3) for kind, v in sorted(cpu.items())},
        "seconds": round(elapsed, 2),
    }


# The figures --compare sets side by side: (part, path, better when "lower" or "higher").
COMPARED = [
    ("single", ("warm", "tools_list_p50_ms"), "lower"),
    ("single", ("fully_cold", "tools_list_p50_ms"), "lower"),
    ("cold50", ("all_see_all_s",), "lower"),
    ("channel", ("p50_ms",), "lower"),
    ("throughput", ("calls_per_s",), "higher"),
    ("throughput", ("p99_ms",), "lower"),
    ("throughput", ("cpu_ms_per_call_total",), "lower"),
]


def ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part, path, better in COMPARED:
        a, b = ours.get(part), theirs.get(part)
        for key in path:
            a = a.get(key) if isinstance(a, dict) else None
            b = b.get(key) if isinstance(b, dict) else None
        if isinstance(a, int | float) and isinstance(b, int | float) and b:
            out[".".join((part, *path))] = {
                "slm-mesh": a,
                "claude-peers": b,
                "ratio": round(a / b, 3),
                "better": better,
            }
    return out


async def main_async(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    parts = args.only.split(",") if args.only else list(PARTS)
    out: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "zygote": not os.environ.get("SLM_MESH_NO_ZYGOTE"),
        "client": args.client,
    }
    server = shlex.split(args.server) if args.server else None
    if not args.compare:
        adapter = ADAPTERS[args.adapter](server)
        out["adapter"] = adapter.name
        out.update(await Bench(adapter, args.client, root).run(parts, args))
        return out
    benches = {
        "slm-mesh": Bench(ADAPTERS["slm-mesh"](None), args.client, root),
        "claude-peers": Bench(ADAPTERS["claude-peers"](server), args.client, root),
    }
    others = [part for part in parts if part != "throughput"]
    for name, bench in benches.items():
        out[name] = await bench.run(others, args)
    if "throughput" in parts:  # the rounds take turns
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in benches}
        for r in range(args.rounds):
            for name, bench in benches.items():
                measure = bench.part_throughput
                runs[name].append(await trio.to_thread.run_sync(measure, args.seconds, args.mix, r))
        for name in benches:
            out[name]["throughput"] = throughput_rounds(runs[name])
    out["ratios"] = ratios(out["slm-mesh"], out["claude-peers"])
    return out


PARTS = ("single", "cold50", "fresh10", "channel", "throughput")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="", help="comma-separated parts to run")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--cold-repeats", type=int, default=5)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=1, help="throughput runs (medians)")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="sdk")
    parser.add_argument("--adapter", choices=sorted(ADAPTERS), default="slm-mesh")
    parser.add_argument("--server", default="", help="the server command (shell words)")
    parser.add_argument("--mix", choices=MIXES, default="mixed")
    parser.add_argument("--compare", action="store_true", help="slm-mesh and --server side by side")
    parser.add_argument("--loadgen", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        adapter = ADAPTERS[args.adapter](shlex.split(args.server) if args.server else None)
        result = trio.run(
            loadgen, adapter, args.client, Path(args.loadgen), LOAD_SESSIONS, args.seconds, args.mix
        )
        print(json.dumps(result))
        return
    compileall.compile_dir(Path(slm_mesh.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory(prefix="smf-", dir="/tmp") as tmp:
        try:
            print(json.dumps(trio.run(main_async, args, Path(tmp)), indent=2))
        finally:
            for name, make in ADAPTERS.items():
                if not (Path(tmp) / name).exists():
                    continue
                adapter = make(shlex.split(args.server) if name != "slm-mesh" else None)
                for sub in (Path(tmp) / name).iterdir():
                    adapter.kill_all(sub)


if __name__ == "__main__":
    main()
