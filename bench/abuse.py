"""Abusive clients against a real broker process; prints one JSON object of figures.

    python bench/abuse.py [--seconds 3] [--only long_line,call_flood]

A well-behaved peer calls the broker all along (``mesh.ping``, ``state.set``,
``lock.acquire``/``lock.release``, ``peer.list`` in turn, one at a time) and its latency is
recorded per scenario, with a quiet baseline first. Each scenario then runs one abuser
against the broker's default limits and reports what the abuser got (the contract's error
code, or the disconnect), the broker's RSS before, at its peak during, and after the abuse,
and the good peer's p50/p99/max latency meanwhile:

- ``long_line``: 64 MiB without a newline (cut at 1 MiB with -32005, then skipped).
- ``never_reads_broadcasts``: a peer that never reads while broadcasts are pushed at it
  (disconnected when its outgoing queue is full; its messages stay queued for it).
- ``never_reads_answers``: a client that pipelines calls with large answers and never reads
  them (backpressure: the broker stops reading it).
- ``connection_flood``: connections until the per-uid cap (-32007).
- ``call_flood``: one connection sending calls as fast as it can (-32006 with retry_after).
- ``call_flood_8_connections``: the same from 8 connections at once (the limit is per
  connection: this shows what a runaway agent with many connections costs).
- ``stalled_subscriber``: subscribes to every event and stops reading (disconnected).

Latencies are in microseconds, RSS in MiB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class Conn:
    """A blocking NDJSON connection."""

    def __init__(self, path: Path, timeout: float | None = 30.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")
        self.next_id = 0

    def send(self, method: str, params: Any = None) -> None:
        self.next_id += 1
        msg: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params is not None:
            msg["params"] = params
        self.sock.sendall(json.dumps(msg).encode() + b"\n")

    def read(self) -> Any:
        line = self.file.readline()
        return json.loads(line) if line else None

    def answer(self) -> Any:
        while True:
            msg = self.read()
            if msg is None or "id" in msg:
                return msg

    def call(self, method: str, params: Any = None) -> Any:
        self.send(method, params)
        msg = self.answer()
        if msg is None:
            raise ConnectionError("closed")
        if "error" in msg:
            raise RuntimeError(msg["error"])
        return msg["result"]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.file.close()
            self.sock.close()


class GoodPeer(threading.Thread):
    """Calls the broker one call at a time, all along, tagging each latency with the
    scenario running at the time."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.conn = Conn(path)
        self.conn.call("peer.register", {"name": "good", "cwd": "/bench"})
        self.scenario = "warmup"
        self.samples: dict[str, list[float]] = {}
        self.failures: dict[str, list[str]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        calls: list[tuple[str, dict[str, Any]]] = [
            ("mesh.ping", {}),
            ("state.set", {"key": "good", "value": "x" * 100}),
            ("lock.acquire", {"path": "/bench/good.py", "ttl": 60}),
            ("lock.release", {"path": "/bench/good.py"}),
            ("peer.list", {}),
        ]
        i = 0
        while not self.stop.is_set():
            method, params = calls[i % len(calls)]
            i += 1
            scenario = self.scenario
            t0 = time.perf_counter_ns()
            try:
                self.conn.call(method, params)
            except Exception as exc:
                self.failures.setdefault(scenario, []).append(f"{method}: {exc}")
                continue
            self.samples.setdefault(scenario, []).append((time.perf_counter_ns() - t0) / 1000)
            time.sleep(0.002)  # a peer that works, not a load generator

    def figures(self, scenario: str) -> dict[str, Any]:
        lat = self.samples.get(scenario, [])
        return {
            "calls": len(lat),
            "failed": len(self.failures.get(scenario, [])),
            "p50_us": round(percentile(lat, 50), 1),
            "p99_us": round(percentile(lat, 99), 1),
            "max_us": round(max(lat, default=0.0), 1),
        }


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0.0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.01):
            self.peak = max(self.peak, rss_mib(self.pid))


class Bench:
    def __init__(self, sock: Path, pid: int, seconds: float) -> None:
        self.sock = sock
        self.pid = pid
        self.seconds = seconds
        self.good = GoodPeer(sock)
        self.good.start()

    @contextlib.contextmanager
    def scenario(self, name: str, out: dict[str, Any]) -> Iterator[dict[str, Any]]:
        got: dict[str, Any] = {}
        time.sleep(0.2)
        before = rss_mib(self.pid)
        sampler = RssSampler(self.pid)
        sampler.start()
        self.good.scenario = name
        t0 = time.monotonic()
        try:
            yield got
        finally:
            self.good.scenario = f"{name}:after"
            sampler.stop.set()
            sampler.join()
            time.sleep(0.3)
            got["seconds"] = round(time.monotonic() - t0, 2)
            got["rss_mib"] = {
                "before": before,
                "peak": max(sampler.peak, before),
                "after": rss_mib(self.pid),
            }
            got["good_peer"] = self.good.figures(name)
            out[name] = got

    def baseline(self, out: dict[str, Any]) -> None:
        with self.scenario("baseline", out):
            time.sleep(self.seconds)

    def long_line(self, out: dict[str, Any]) -> None:
        with self.scenario("long_line", out) as got:
            c = Conn(self.sock)
            chunk = b"x" * (64 * 1024)
            sent = 0
            while sent < 64 * MiB:
                c.sock.sendall(chunk)
                sent += len(chunk)
            c.sock.sendall(b'\n{"jsonrpc":"2.0","id":"after","method":"mesh.ping"}\n')
            first, second = c.read(), c.read()
            got["bytes_sent"] = sent
            got["answer"] = first["error"]
            got["next_call_on_same_connection"] = second.get("result")
            c.close()

    def never_reads_broadcasts(self, out: dict[str, Any]) -> None:
        with self.scenario("never_reads_broadcasts", out) as got:
            sink = Conn(self.sock)
            reg = sink.call("peer.register", {"name": "sink", "cwd": "/bench"})
            sender = Conn(self.sock)
            sender.call("peer.register", {"name": "broadcaster", "cwd": "/bench"})
            sent_to_sink = 0
            for i in range(20_000):
                res = sender.call("message.send", {"to": "all", "body": f"{i}:" + "b" * 2000})
                sent_to_sink += sum(1 for r in res["recipients"] if r["name"] == "sink")
                if i % 50 == 0 and not self._connected("sink", sender):
                    break
            got["broadcasts_until_disconnected"] = i + 1
            got["disconnected"] = not self._connected("sink", sender)
            sink.close()
            back = Conn(self.sock)
            back.call("peer.register", {"cwd": "/bench", "resume": reg["resume_token"]})
            left = back.call("message.inbox", {"limit": 1, "mark_read": False})["unread_left"]
            got["sent_to_sink"] = sent_to_sink
            got["still_queued_for_sink"] = left
            back.call("peer.unregister")
            back.close()
            sender.call("peer.unregister")
            sender.close()

    def _connected(self, name: str, via: Conn) -> bool:
        peers = via.call("peer.list", {"include_away": True})["peers"]
        return any(p["name"] == name and p["connected"] for p in peers)

    def never_reads_answers(self, out: dict[str, Any]) -> None:
        setup = Conn(self.sock)
        for i in range(16):
            setup.call("state.set", {"namespace": "big", "key": f"k{i}", "value": "v" * 60_000})
        with self.scenario("never_reads_answers", out) as got:
            c = Conn(self.sock, timeout=5.0)
            sent = 0
            with contextlib.suppress(TimeoutError):
                for _ in range(1_200):
                    c.send("state.list", {"namespace": "big"})
                    sent += 1
            got["calls_sent_before_the_broker_stopped_reading"] = sent
            got["answer_bytes_each"] = len(
                json.dumps(setup.call("state.list", {"namespace": "big"}))
            )
            c.close()
        for i in range(16):
            setup.call("state.delete", {"namespace": "big", "key": f"k{i}"})
        setup.close()

    def connection_flood(self, out: dict[str, Any]) -> None:
        with self.scenario("connection_flood", out) as got:
            held: list[Conn] = []
            refused: Any = None
            while refused is None and len(held) < 5000:
                c = Conn(self.sock)
                c.send("mesh.ping")
                answer = c.answer()
                if answer is not None and "error" in answer:
                    refused = answer["error"]
                    c.close()
                else:
                    held.append(c)
            got["connections_held"] = len(held)
            got["answer"] = refused
            time.sleep(self.seconds)
            for c in held:
                c.close()

    def call_flood(self, out: dict[str, Any], connections: int = 1) -> None:
        name = "call_flood" if connections == 1 else f"call_flood_{connections}_connections"
        with self.scenario(name, out) as got:
            counts: dict[str, int] = {"ok": 0, "rate_limited": 0, "sent": 0}
            retry: list[float] = []
            lock = threading.Lock()
            stop = time.monotonic() + self.seconds

            def flood() -> None:
                c = Conn(self.sock)
                line = b'{"jsonrpc":"2.0","id":1,"method":"mesh.ping"}\n' * 200

                def reader() -> None:
                    while (msg := c.read()) is not None:
                        with lock:
                            if "error" in msg:
                                counts["rate_limited"] += 1
                                retry.append(msg["error"]["data"]["retry_after"])
                            else:
                                counts["ok"] += 1

                t = threading.Thread(target=reader, daemon=True)
                t.start()
                while time.monotonic() < stop:
                    c.sock.sendall(line)
                    with lock:
                        counts["sent"] += 200
                c.sock.shutdown(socket.SHUT_WR)
                t.join(30)
                c.close()

            threads = [threading.Thread(target=flood) for _ in range(connections)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            got.update(counts)
            got["answered_ok_per_s"] = round(counts["ok"] / self.seconds)
            got["retry_after_max_s"] = max(retry, default=0.0)

    def stalled_subscriber(self, out: dict[str, Any]) -> None:
        with self.scenario("stalled_subscriber", out) as got:
            sub = Conn(self.sock)
            sub.call("event.subscribe", {"types": ["*"]})
            writer = Conn(self.sock)
            status = writer.call("mesh.status")["counts"]
            subscribers = status["subscribers"]
            writes = 0
            for i in range(50_000):
                writer.call("state.set", {"key": "churn", "value": f"{i}:" + "s" * 2000})
                writes += 1
                if (
                    i % 50 == 0
                    and writer.call("mesh.status")["counts"]["subscribers"] < subscribers
                ):
                    break
            got["events_until_disconnected"] = writes
            got["disconnected"] = writer.call("mesh.status")["counts"]["subscribers"] < subscribers
            sub.close()
            writer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0, help="length of timed scenarios")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    with tempfile.TemporaryDirectory(prefix="sma-", dir="/tmp") as tmp:
        data = Path(tmp) / "d"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLM_MESH_")}
        env.pop("XDG_RUNTIME_DIR", None)
        env.update(SLM_MESH_DATA_DIR=str(data), SLM_MESH_PORT="0")
        log = open(Path(tmp) / "broker.log", "wb")  # noqa: SIM115
        broker = subprocess.Popen(
            [sys.executable, "-m", "slm_mesh", "broker"], env=env, stdout=log, stderr=log
        )
        try:
            sock = data / "broker.sock"
            deadline = time.monotonic() + 20
            while True:
                try:
                    Conn(sock).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("broker did not start") from None
                    time.sleep(0.02)
            bench = Bench(sock, broker.pid, args.seconds)
            out: dict[str, Any] = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
            scenarios: dict[str, Callable[[dict[str, Any]], None]] = {
                "baseline": bench.baseline,
                "long_line": bench.long_line,
                "never_reads_broadcasts": bench.never_reads_broadcasts,
                "never_reads_answers": bench.never_reads_answers,
                "connection_flood": bench.connection_flood,
                "call_flood": bench.call_flood,
                "call_flood_8_connections": lambda o: bench.call_flood(o, connections=8),
                "stalled_subscriber": bench.stalled_subscriber,
            }
            only = [s for s in args.only.split(",") if s]
            for name, run in scenarios.items():
                if not only or name in only or name == "baseline":
                    run(out)
            bench.good.stop.set()
            bench.good.join(10)
            log.flush()
            text = (Path(tmp) / "broker.log").read_text(errors="replace")
            out["broker_log_errors"] = text.count(" ERROR ")
            out["broker_alive"] = broker.poll() is None
            print(json.dumps(out, indent=2))
        finally:
            broker.terminate()
            broker.wait(10)
            log.close()


if __name__ == "__main__":
    main()
