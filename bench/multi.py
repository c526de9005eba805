"""Benchmark of brokers of several "machines" sharing one mesh through PostgreSQL: prints
one JSON object of figures.

    python bench/multi.py [--brokers 3] [--sessions 30] [--n 300] [--seconds 5]
                          [--scale-brokers 10] [--scale-sessions 100] [--no-scale]
                          [--no-fsync]

A private PostgreSQL cluster (the system's server binaries, fsync and synchronous commit
on, as a real server) is made for the run and removed after it. Each broker is a real
``slm-mesh broker`` process with its own data dir and host name.

Figures:
- ``push``: a message sent by a session on one broker, until it is pushed at a session on
  another broker (ms, sequential, ``--n`` messages);
- ``calls_per_s``: every session of every broker in a closed loop (one call in flight
  each), alternating ``state.set`` and ``message.send`` to a session on another broker;
- ``scale``: ``--scale-brokers`` × ``--scale-sessions`` sessions: time for a broadcast
  to reach every other session, ``peer.list`` of them all, and the database connections
  each broker holds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests import outside, pg  # noqa: E402
from tests.wire import broker_env, make_settings, stop_process, wait_for_socket  # noqa: E402


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


class Session:
    """A registered session on a plain socket (pipelining, notifications kept)."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(str(path))
        self.buf = b""
        self.next_id = 0
        self.peer_id = ""

    def send(self, method: str, **params: Any) -> None:
        self.next_id += 1
        msg = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        self.sock.sendall(json.dumps(msg).encode() + b"\n")

    def lines(self) -> list[dict[str, Any]]:
        """What has arrived (blocks for the first bytes)."""
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("broker closed the connection")
        self.buf += chunk
        *complete, self.buf = self.buf.split(b"\n")
        return [json.loads(line) for line in complete if line]

    def call(self, method: str, **params: Any) -> Any:
        self.send(method, **params)
        while True:
            for msg in self.lines():
                if msg.get("id") == self.next_id:
                    assert "result" in msg, msg
                    return msg["result"]

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def brokers(root: Path, url: str, mesh: str, count: int) -> Iterator[list[Path]]:
    """``count`` broker processes on one mesh; their socket paths."""
    procs, sockets = [], []
    try:
        for i in range(count):
            (root / f"b{i}").mkdir(parents=True)
            settings = make_settings(root / f"b{i}", store_url=url, mesh_name=mesh)
            settings = replace(settings, host=f"host-{i}")
            log = open(root / f"b{i}" / "broker.log", "ab")  # noqa: SIM115
            proc = subprocess.Popen(
                [sys.executable, "-m", "slm_mesh", "broker"],
                env=broker_env(settings),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
            procs.append(proc)
            wait_for_socket(settings.socket_path, proc, timeout=60)
            sockets.append(settings.socket_path)
        yield sockets
    finally:
        for proc in procs:
            stop_process(proc, timeout=15)


def register(paths: list[Path], per_broker: int) -> list[list[Session]]:
    out = []
    for b, path in enumerate(paths):
        row = []
        for s in range(per_broker):
            session = Session(path)
            reg = session.call("peer.register", name=f"b{b}s{s}", cwd=f"/clones/{b}")
            session.peer_id = reg["peer_id"]
            row.append(session)
        out.append(row)
    return out


def push_latency(sender: Session, receiver: Session, n: int) -> dict[str, float]:
    took = []
    for i in range(n):
        started = time.perf_counter()
        sender.send("message.send", to=receiver.peer_id, body=f"ping {i}")
        pushed = False
        while not pushed:
            pushed = any(m.get("method") == "message" for m in receiver.lines())
        took.append((time.perf_counter() - started) * 1000)
        while not any(m.get("id") == sender.next_id for m in sender.lines()):
            pass
    return {
        "p50_ms": round(percentile(took, 50), 2),
        "p99_ms": round(percentile(took, 99), 2),
        "n": n,
    }


def calls_per_s(grid: list[list[Session]], seconds: float) -> dict[str, float]:
    """Closed loop: each session keeps one call in flight."""
    sel = selectors.DefaultSelector()
    everyone = [s for row in grid for s in row]
    rng = random.Random(1)
    targets = {
        id(s): [o.peer_id for r, row in enumerate(grid) if s not in row for o in row]
        for s in everyone
    }
    counts = {id(s): 0 for s in everyone}

    def fire(s: Session) -> None:
        if counts[id(s)] % 2:
            s.send("message.send", to=rng.choice(targets[id(s)]), body="load")
        else:
            s.send("state.set", key=f"k{rng.randrange(100)}", value=counts[id(s)])

    for s in everyone:
        sel.register(s.sock, selectors.EVENT_READ, s)
        fire(s)
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for key, _ in sel.select(timeout=1):
            s = key.data
            for msg in s.lines():
                if msg.get("id") == s.next_id:
                    assert "result" in msg, msg
                    done += 1
                    counts[id(s)] += 1
                    fire(s)
    elapsed = time.perf_counter() - started
    for s in everyone:  # let the last calls finish
        sel.unregister(s.sock)
        while not any(m.get("id") == s.next_id for m in s.lines()):
            pass
    return {"calls_per_s": round(done / elapsed), "seconds": round(elapsed, 1)}


def broadcast_fan_out(grid: list[list[Session]]) -> float:
    """ms from a broadcast until every other session has it pushed."""
    sender = grid[0][0]
    waiting = {id(s): s for row in grid for s in row if s is not sender}
    sel = selectors.DefaultSelector()
    for s in waiting.values():
        sel.register(s.sock, selectors.EVENT_READ, s)
    started = time.perf_counter()
    sender.send("message.send", to="all", body="everyone")
    while waiting:
        for key, _ in sel.select(timeout=30):
            s = key.data
            if any(m.get("method") == "message" for m in s.lines()):
                waiting.pop(id(s), None)
                sel.unregister(s.sock)
    took = (time.perf_counter() - started) * 1000
    while not any(m.get("id") == sender.next_id for m in sender.lines()):
        pass
    return round(took, 1)


def connections(url: str, brokers_: int) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE application_name LIKE 'slm-mesh%%' GROUP BY 1 ORDER BY 1"
        ).fetchall()
    by_role = {name: int(n) for name, n in rows}
    return {"per_broker": round(sum(by_role.values()) / brokers_, 2), "by_role": by_role}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--scale-brokers", type=int, default=10)
    parser.add_argument("--scale-sessions", type=int, default=100)
    parser.add_argument("--no-scale", action="store_true", help="skip the scale run")
    parser.add_argument(
        "--no-fsync",
        action="store_true",
        help="a server without fsync or synchronous commit (what the commits' disk costs)",
    )
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    bindir = outside.TOOLS["postgresql"].find()
    if bindir is None:
        sys.exit("PostgreSQL's server binaries are missing: apt-get install postgresql")
    durable = not args.no_fsync
    out: dict[str, Any] = {
        "postgresql": "private cluster, fsync and synchronous_commit "
        + ("on" if durable else "off")
    }
    with (
        pg.cluster(bindir, durable=durable) as cluster,
        tempfile.TemporaryDirectory(prefix="sm-", dir="/tmp") as tmp,
    ):
        root = Path(tmp)
        with brokers(root / "small", cluster.url, "small", args.brokers) as paths:
            grid = register(paths, args.sessions)
            push_latency(grid[0][0], grid[1][0], 20)  # warm up
            out["push"] = push_latency(grid[0][0], grid[1][0], args.n)
            out["push"]["setup"] = f"{args.brokers} brokers x {args.sessions} sessions"
            out["load"] = calls_per_s(grid, args.seconds)
            out["connections"] = connections(cluster.url, args.brokers)
            for row in grid:
                for s in row:
                    s.close()
        if args.no_scale:
            print(json.dumps(out, indent=2))
            return
        with brokers(root / "scale", cluster.url, "scale", args.scale_brokers) as paths:
            started = time.perf_counter()
            grid = register(paths, args.scale_sessions)
            peers = args.scale_brokers * args.scale_sessions
            scale: dict[str, Any] = {
                "setup": f"{args.scale_brokers} brokers x {args.scale_sessions} sessions",
                "register_all_s": round(time.perf_counter() - started, 1),
            }
            broadcast_fan_out(grid)  # warm up
            scale["broadcast_to_all_ms"] = [broadcast_fan_out(grid) for _ in range(3)]
            times = []
            for _ in range(10):
                started = time.perf_counter()
                listed = grid[-1][-1].call("peer.list")["peers"]
                times.append((time.perf_counter() - started) * 1000)
            assert len(listed) == peers - 1, len(listed)
            scale["peer_list_ms"] = {
                "p50": round(percentile(times, 50), 1),
                "max": round(max(times), 1),
                "peers": len(listed),
            }
            scale["connections"] = connections(cluster.url, args.scale_brokers)
            out["scale"] = scale
            for row in grid:
                for s in row:
                    s.close()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
